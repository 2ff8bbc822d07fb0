/**
 * What the test suite needs from the machine, checked before it runs (by .ci/run and the test
 * run's global setup), so that a missing tool fails with one line naming it rather than with
 * an obscure error in the middle of some test.
 *
 *     node scripts/check-environment.ts     exit 1 and one line per problem when something is missing
 */
import { spawnSync } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const repoRoot = resolve(import.meta.dirname, '..')

function run(command: string, args: string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' })
  if (result.error) {
    return { ok: false, output: (result.error as NodeJS.ErrnoException).code ?? result.error.message }
  }
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` }
}

function atLeast(version: string, minimum: number[]): boolean {
  const parts = version.split('.').map(Number)
  for (const [index, wanted] of minimum.entries()) {
    const found = parts[index] ?? 0
    if (found !== wanted) {
      return found > wanted
    }
  }
  return true
}

/** One sentence per requirement the machine does not meet; empty when the suite can run. */
export function environmentProblems(): string[] {
  const problems: string[] = []
  if (!atLeast(process.versions.node, [22, 22])) {
    problems.push(`Node ${process.versions.node} is older than 22.22: run \`source scripts/use-node.sh\``)
  }
  const java = run('java', ['-version'])
  const javaVersion = /version "(\d+)/.exec(java.output)?.[1]
  if (!java.ok || javaVersion === undefined || Number(javaVersion) < 17) {
    problems.push(
      `Java 17 or newer is needed to run the Kafka broker; \`java -version\` gave: ${java.output.split('\n')[0]}`
    )
  }
  const maven = run('mvn', ['--version'])
  if (!maven.ok) {
    problems.push(`Maven (mvn) is needed to resolve the Kafka jars; \`mvn --version\` gave: ${maven.output.trim()}`)
  }
  const go = run('go', ['env', 'GOVERSION'])
  if (!go.ok || !atLeast(go.output.trim().replace(/^go/, ''), [1, 26])) {
    problems.push(
      `Go 1.26 or newer is needed to build the S3 and GCS test servers; \`go env GOVERSION\` gave: ${go.output.trim()}`
    )
  }
  try {
    rmSync(mkdtempSync(join(tmpdir(), 'kb-check-')), { recursive: true })
  } catch (error) {
    problems.push(`the temporary folder ${tmpdir()} is not writable (${(error as Error).message}); set TMPDIR`)
  }
  if (process.getuid?.() === 0) {
    // Root ignores permission bits; the permission tests drop to nobody (test/helpers/unprivileged.ts).
    const drop = run(process.execPath, ['-e', 'process.setgroups([]); process.setgid(65534); process.setuid(65534)'])
    if (!drop.ok) {
      problems.push(
        `as root the permission tests switch to uid 65534 (nobody), which this machine refuses: ${drop.output.trim()}`
      )
    }
  }
  try {
    accessSync(repoRoot, constants.W_OK)
  } catch {
    problems.push(`the checkout ${repoRoot} is not writable: the tests keep the broker and servers in .cache/`)
  }
  return problems
}

if (import.meta.main) {
  const problems = environmentProblems()
  for (const problem of problems) {
    console.error(`check-environment: ${problem}`)
  }
  process.exitCode = problems.length === 0 ? 0 : 1
}
