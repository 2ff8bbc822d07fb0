/**
 * The OSO baseline: OSO kafka-backup's engines (the published `kafka-backup-core` crate, MIT)
 * run by our driver in bench/oso-driver from one of its YAML configs. OSO_BIN points at a
 * driver (or any binary that takes the config path as its one argument); otherwise the driver
 * is built with cargo into .cache/oso-driver at the lowest CPU priority, one job, so that it
 * does not starve a shared machine (the first build takes many minutes; later ones are cached).
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { backupYaml } from './configs.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const manifestPath = join(repoRoot, 'bench', 'oso-driver', 'Cargo.toml')
const targetDir = join(repoRoot, '.cache', 'oso-driver', 'target')

export type OsoLookup = { path: string; version: string } | { path: undefined; reason: string }

/** The version of kafka-backup-core the driver depends on, from its Cargo.toml. */
function crateVersion(): string {
  return /kafka-backup-core = "=?([^"]+)"/.exec(readFileSync(manifestPath, 'utf8'))?.[1] ?? 'unknown'
}

export function ensureOsoDriver(log: (line: string) => void): OsoLookup {
  if (process.env.BENCH_OSO === '0') {
    return { path: undefined, reason: 'BENCH_OSO=0' }
  }
  const given = process.env.OSO_BIN
  if (given) {
    return existsSync(given)
      ? { path: given, version: `OSO_BIN ${given}` }
      : { path: undefined, reason: `OSO_BIN ${given} does not exist` }
  }
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
  if (cargo.status !== 0) {
    return { path: undefined, reason: 'cargo is not installed (or set OSO_BIN to a built driver)' }
  }
  log('building the OSO driver (bench/oso-driver, cargo --release -j 1 at nice 19)')
  const build = spawnSync(
    'nice',
    ['-n', '19', 'cargo', 'build', '--release', '-j', '1', '--manifest-path', manifestPath],
    { encoding: 'utf8', env: { ...process.env, CARGO_TARGET_DIR: targetDir }, maxBuffer: 64 * 1024 * 1024 }
  )
  if (build.status !== 0) {
    return { path: undefined, reason: `cargo build failed: ${build.stderr.trim().split('\n').slice(-3).join(' / ')}` }
  }
  return { path: join(targetDir, 'release', 'oso-driver'), version: `kafka-backup-core ${crateVersion()}` }
}

export interface OsoRun {
  wallMs: number
  /** Largest VmHWM read from /proc while the process ran (sampled every 10 ms). */
  peakRssBytes: number
  /**
   * User + system CPU time of the process, all its threads, at the last sample before it exited
   * (at most 10 ms short): on a shared machine a steadier figure than wall time.
   */
  cpuMs: number
}

/** Clock ticks per second of /proc/PID/stat's times: 100 on Linux (USER_HZ). */
const TICKS_PER_SECOND = 100

/**
 * Runs the driver on a config file; throws with its stderr when it fails. It runs in the config's
 * folder: OSO keeps an offsets.db in its working directory whatever offset_storage says.
 */
export async function runOso(driverPath: string, configFile: string): Promise<OsoRun> {
  const startedAt = performance.now()
  const child = spawn(driverPath, [configFile], { cwd: dirname(configFile), stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  let peakRssBytes = 0
  let cpuMs = 0
  const sample = () => {
    try {
      const kiB = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]
      peakRssBytes = Math.max(peakRssBytes, Number(kiB ?? 0) * 1024)
      // Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      cpuMs = Math.max(cpuMs, ((Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND) * 1000)
    } catch {
      // The process has exited between two samples.
    }
  }
  const sampler = setInterval(sample, 10)
  const code = await new Promise<number | null>(done => child.on('exit', done))
  clearInterval(sampler)
  const wallMs = performance.now() - startedAt
  if (code !== 0) {
    throw new Error(`OSO driver failed on ${configFile} (exit ${code}):\n${stderr.slice(-2000)}`)
  }
  return { wallMs, peakRssBytes, cpuMs }
}

/** OSO's backup config for one topic, zstd at `level`, one pass up to the current end offsets. */
export function osoBackupYaml(
  bootstrapServers: string,
  topic: string,
  storagePath: string,
  backupId: string,
  level = 3
) {
  return backupYaml(bootstrapServers, topic, storagePath, backupId, [
    'backup:',
    '  compression: zstd',
    `  compression_level: ${level}`,
    '  stop_at_current_offsets: true',
    // Its default adds three headers to every record; off, both tools store the same records.
    '  include_offset_headers: false',
    'offset_storage:',
    '  backend: memory',
    'metrics:',
    '  enabled: false'
  ])
}

/** OSO's restore config: the backup of `topic` into `targetTopic`, created by the restore. */
export function osoRestoreYaml(
  bootstrapServers: string,
  topic: string,
  targetTopic: string,
  storagePath: string,
  backupId: string
) {
  return [
    'mode: restore',
    `backup_id: ${backupId}`,
    'target:',
    `  bootstrap_servers: [${bootstrapServers}]`,
    'storage:',
    '  backend: filesystem',
    `  path: ${storagePath}`,
    'restore:',
    '  create_topics: true',
    '  topic_mapping:',
    `    ${topic}: ${targetTopic}`,
    'metrics:',
    '  enabled: false',
    ''
  ].join('\n')
}

/** Bytes of every file under `path`: what a backup stored. */
export function storedBytes(path: string): number {
  let total = 0
  for (const entry of readdirSync(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) {
      total += statSync(join(entry.parentPath, entry.name)).size
    }
  }
  return total
}
