/**
 * Runs an ES module in a child Node process that is subject to file permissions, for tests of
 * real EACCES errors. Root ignores permission bits, so as root the child drops to `nobody`
 * (uid/gid 65534); as anyone else it runs as that user.
 *
 * The child starts with the caller's identity and drops privileges only after its static
 * imports are loaded: the Node binary and the sources may live where `nobody` cannot go (a
 * checkout in a 0700 `mktemp -d` folder or under /root, Node in the checkout's .tools/).
 * So the script must not import anything dynamically.
 */
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'

const nobody = 65534
/** The child's exit code when it could not drop privileges: the machine cannot run the test. */
const cannotDrop = 97

export interface UnprivilegedRun {
  /** True when the child ran as nobody (the caller is root). */
  droppedRoot: boolean
  stdout: string
}

export function runUnprivileged(script: string): UnprivilegedRun {
  const droppedRoot = process.getuid?.() === 0
  // Static imports are evaluated before the module body, so this runs after them wherever it is.
  const drop = `
    if (process.getuid() === 0) {
      try {
        process.setgroups([])
        process.setgid(${nobody})
        process.setuid(${nobody})
      } catch (error) {
        console.error(error.message)
        process.exit(${cannotDrop})
      }
    }
  `
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', `${drop}\n${script}`], {
    encoding: 'utf8',
    cwd: tmpdir()
  })
  if (child.error) {
    throw new Error(`could not start ${process.execPath} for a permission test: ${child.error.message}`)
  }
  if (child.status === cannotDrop) {
    throw new Error(
      `this machine cannot run the permission test: as root it must switch to uid ${nobody} (nobody) to see ` +
        `permission errors, and setuid/setgid failed (${child.stderr.trim()}); run the tests as an ordinary ` +
        'user or in a container that allows setuid'
    )
  }
  if (child.status !== 0) {
    throw new Error(
      `the permission test's child process failed (exit ${child.status ?? child.signal}): ${child.stderr.trim()}`
    )
  }
  return { droppedRoot, stdout: child.stdout }
}
