/**
 * kcat (the librdkafka command-line client, Debian package `kcat`) for the benchmark's
 * "consume the topic to a file" baseline. A fresh machine does not have it: as root on a
 * Debian-like system it is installed with apt-get; anywhere else the caller is told why it is
 * missing, so the benchmark can say that it skipped the baseline instead of failing or hiding it.
 *
 * `node scripts/kcat.ts` installs it (if needed) and prints its path.
 */
import { spawnSync } from 'node:child_process'

export type KcatLookup = { path: string; version: string } | { path: undefined; reason: string }

function which(name: string): string | undefined {
  const result = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  const path = result.stdout.trim()
  return result.status === 0 && path !== '' ? path : undefined
}

function versionOf(path: string): string {
  // `kcat -V` prints "kcat - Apache Kafka producer and consumer tool ... Version 1.7.1 (...) (librdkafka 2.x ...)".
  const result = spawnSync(path, ['-V'], { encoding: 'utf8' })
  const text = `${result.stdout}${result.stderr}`
  const tool = /Version\s+(\S+)/.exec(text)?.[1]
  const librdkafka = /librdkafka\s+([\d.]+)/.exec(text)?.[1]
  return [tool ? `kcat ${tool}` : 'kcat', librdkafka ? `librdkafka ${librdkafka}` : undefined]
    .filter(Boolean)
    .join(', ')
}

function aptInstall(log: (line: string) => void): { ok: boolean; output: string } {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-q', 'kcat'], { encoding: 'utf8', env, maxBuffer: 16 * 1024 * 1024 })
  let result = install()
  if (result.status !== 0) {
    // A fresh image often has no package lists yet.
    log('apt-get install kcat failed; running apt-get update and trying again')
    spawnSync('apt-get', ['update', '-q'], { encoding: 'utf8', env, maxBuffer: 16 * 1024 * 1024 })
    result = install()
  }
  return {
    ok: result.status === 0,
    output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ')
  }
}

/** kcat's path, installing the Debian package when possible; otherwise why it is unavailable. */
export function ensureKcat(log: (line: string) => void = line => process.stderr.write(`${line}\n`)): KcatLookup {
  const found = which('kcat') ?? which('kafkacat')
  if (found) {
    return { path: found, version: versionOf(found) }
  }
  if (process.getuid?.() !== 0) {
    return {
      path: undefined,
      reason: 'kcat is not installed and this user is not root (install it with: apt-get install kcat)'
    }
  }
  if (!which('apt-get')) {
    return { path: undefined, reason: 'kcat is not installed and there is no apt-get to install it with' }
  }
  log('kcat is not installed: installing the Debian package with apt-get')
  const { ok, output } = aptInstall(log)
  const installed = which('kcat') ?? which('kafkacat')
  if (!ok || !installed) {
    return { path: undefined, reason: `apt-get could not install kcat: ${output}` }
  }
  return { path: installed, version: versionOf(installed) }
}

if (import.meta.main) {
  const kcat = ensureKcat()
  if (kcat.path === undefined) {
    console.error(kcat.reason)
    process.exitCode = 1
  } else {
    console.log(`${kcat.path} (${kcat.version})`)
  }
}
