/**
 * Backup and restore workers (backup.workers, restore.workers; docs/architecture.md "Workers"
 * and "Sharded restore"):
 *
 * 1. Aggregate backup and restore throughput with 1, 2, 3 workers, each capped by
 *    backup.rate_limit_bytes_per_sec or restore.rate_limit_bytes_per_sec, so that the scaling is
 *    measurable on a machine with fewer cores than workers: wall time from starting the workers
 *    to the last one's exit, over the bytes backed up or restored, and its ratio to one worker's.
 * 2. Peak RSS of one worker of BENCH_RSS_WORKERS sharing the backup, then the restore, of a topic
 *    of BENCH_RSS_PARTITIONS partitions (2,000 and 20: each owns 100), beside one process doing
 *    all of it.
 *
 *   node bench/workers.ts        (npm run bench:workers)
 *
 * Env (defaults in brackets):
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_WORKERS [1,2,3]     worker counts of part 1; 0 skips it
 *   BENCH_RATE_MIB [1]        each worker's rate limit, MiB/s
 *   BENCH_DATA_MIB [60]       data of part 1 (1 KiB records in 24 partitions)
 *   BENCH_RUNS [1]            runs per worker count (median)
 *   BENCH_RSS_PARTITIONS [2000], BENCH_RSS_WORKERS [20]   part 2; BENCH_RSS_WORKERS=0 skips it
 *   BENCH_CLI [dist]          src, or a compiled main.js (bench/build-cli.ts)
 *   BENCH_LOG_DIR             keep each CLI run's log there (level info), e.g. to see rebalances
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { stopBroker } from '../scripts/broker.ts'
import { groupState, listOffsets } from '../src/kafka/admin.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { ROUND_ROBIN, runProducerPerformance } from './baselines.ts'
import { benchBroker, createTopic } from './broker.ts'
import { buildCli, compiledPreload } from './build-cli.ts'
import { backupYaml, restoreYaml } from './configs.ts'
import { writePayloadFile } from './data.ts'
import type { PeakMemory } from './peak-rss.ts'
import { median } from './stats.ts'

const MiB = 2 ** 20
const workerCounts = (process.env.BENCH_WORKERS ?? '1,2,3')
  .split(',')
  .map(Number)
  .filter(n => n > 0)
const rateMiB = Number(process.env.BENCH_RATE_MIB ?? 1)
const dataMiB = Number(process.env.BENCH_DATA_MIB ?? 60)
const runs = Number(process.env.BENCH_RUNS ?? 1)
const rssPartitions = Number(process.env.BENCH_RSS_PARTITIONS ?? 2000)
const rssWorkers = Number(process.env.BENCH_RSS_WORKERS ?? 20)
const logDir = process.env.BENCH_LOG_DIR
const THROUGHPUT_PARTITIONS = 24

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-workers-'))
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 20_000, 1024)
const cli = buildCli('bench-workers', log)
const preload = compiledPreload('bench-workers', 'peak-rss.ts')
const { bootstrapServers, broker } = await benchBroker('bench-workers')
const cluster = testCluster(bootstrapServers.split(','))
// A fresh broker creates its group coordinator's topic on the first FindCoordinator and answers
// COORDINATOR_NOT_AVAILABLE until it is there: done before measuring, so that the first run's
// wall time does not include it (the workers would wait for it).
for (let attempt = 0; ; attempt++) {
  try {
    await groupState(cluster, 'kafka-backup-bench-warm-up')
    break
  } catch (error) {
    if (attempt === 600) {
      throw error
    }
    await new Promise(done => setTimeout(done, 100))
  }
}

/** `records` 1 KiB records spread round-robin over `topic`'s partitions. */
function produce(topic: string, records: number): void {
  runProducerPerformance(bootstrapServers, topic, records, payloadFile, [ROUND_ROBIN])
}

interface CliRun {
  summary: {
    status: string
    bytes: number
    records: number
    worker?: { partitions: string[] }
  }
  memory: PeakMemory
}

let configs = 0
/** Runs the CLI with `yaml`, resolving once it exits 0 with its --json summary and peak memory. */
function runCli(command: 'backup' | 'restore', yaml: string): Promise<CliRun> {
  const id = ++configs
  const configFile = join(workDir, `config-${id}.yaml`)
  const memoryFile = join(workDir, `memory-${id}.json`)
  writeFileSync(configFile, yaml)
  const child = spawn(
    process.execPath,
    [
      '--import',
      preload,
      cli.cliPath,
      command,
      '--config',
      configFile,
      '--json',
      '--log-level',
      logDir ? 'info' : 'warn'
    ],
    { env: { ...process.env, BENCH_PEAK_RSS_FILE: memoryFile }, stdio: ['ignore', 'pipe', 'pipe'] }
  )
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', chunk => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  return new Promise((resolve, reject) =>
    child.on('close', code => {
      if (code !== 0) {
        reject(new Error(`kafka-backup ${command} failed (exit ${code}):\n${stderr}`))
        return
      }
      if (logDir) {
        writeFileSync(join(logDir, `${command}-${id}.log`), stderr)
      }
      resolve({
        summary: JSON.parse(stdout),
        memory: JSON.parse(readFileSync(memoryFile, 'utf8')) as PeakMemory
      })
    })
  )
}

const WORKERS = '  workers:\n    enabled: true\n    session_timeout_ms: 6000\n    heartbeat_interval_ms: 1000\n'

/**
 * `workers` backup workers of `topic` into a new backup at `path`; the backup must then hold
 * `produced` records (describe), each exactly once.
 */
async function backupWithWorkers(topic: string, path: string, workers: number, backup: string, produced: bigint) {
  const yaml = `${backupYaml(bootstrapServers, topic, path, 'b')}backup:\n${WORKERS}${backup}`
  const startedAt = performance.now()
  const results = await Promise.all(Array.from({ length: workers }, () => runCli('backup', yaml)))
  const wallSeconds = (performance.now() - startedAt) / 1000
  const configFile = join(workDir, `describe-${++configs}.yaml`)
  writeFileSync(configFile, yaml)
  const described = JSON.parse(
    execFileSync(process.execPath, [cli.cliPath, 'describe', '--config', configFile, '--json'], { encoding: 'utf8' })
  ) as { records: number }
  if (BigInt(described.records) !== produced) {
    throw new Error(`the backup of ${topic} by ${workers} workers holds ${described.records} records, not ${produced}`)
  }
  const bytes = results.reduce((sum, r) => sum + (r.summary.bytes as number), 0)
  return { wallSeconds, results, bytes }
}

/** `workers` workers restoring `topic` from `path` into `target`; every one must report the whole restore complete. */
async function restoreWithWorkers(
  topic: string,
  target: string,
  path: string,
  workers: number,
  restore: string,
  targetKeys: readonly string[] = []
) {
  const startedAt = performance.now()
  const results = await Promise.all(
    Array.from({ length: workers }, () =>
      runCli('restore', `${restoreYaml(bootstrapServers, topic, target, path, 'b', targetKeys)}${WORKERS}${restore}`)
    )
  )
  const wallSeconds = (performance.now() - startedAt) / 1000
  for (const { summary } of results) {
    if (summary.status !== 'complete') {
      throw new Error(`a worker reported the restore ${summary.status}`)
    }
  }
  return { wallSeconds, results }
}

async function endOffsetsSum(topic: string, partitions: number): Promise<bigint> {
  const ends = await listOffsets(
    cluster,
    Array.from({ length: partitions }, (_, partition) => ({ topic, partition })),
    'latest'
  )
  return [...ends.values()].reduce((sum, end) => sum + end, 0n)
}

function throughputTable(
  what: 'backup' | 'restore',
  rows: Array<{ workers: number; wall: number; mbPerSec: number; shares?: string }>,
  records: number
): string[] {
  const single = rows.find(r => r.workers === 1)
  const how =
    what === 'backup'
      ? 'backed up into a new filesystem backup'
      : `restored from a filesystem backup (partitions per worker: ${rows.map(r => r.shares).join('; ')})`
  return [
    `### Aggregate ${what} throughput, each worker capped at ${rateMiB} MiB/s`,
    '',
    `${records} records of 1 KiB (${dataMiB} MiB) in ${THROUGHPUT_PARTITIONS} partitions, ${how} by N workers started together; wall time from their start to the last exit (process start-up, joining the group and the end included); ${runs} run(s) per N, median.`,
    '',
    '| workers | wall | aggregate | vs 1 worker | ratio / N |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(r => {
      const speedup = single ? r.mbPerSec / single.mbPerSec : Number.NaN
      return `| ${r.workers} | ${r.wall.toFixed(1)} s | ${r.mbPerSec.toFixed(2)} MiB/s | ${speedup.toFixed(2)} x | ${(speedup / r.workers).toFixed(2)} |`
    }),
    ''
  ]
}

/** Prints a section as soon as it is measured, so that a later failure does not lose it. */
function printSection(lines: string[]): void {
  process.stdout.write(
    `${lines.join('\n')}\n1-minute load average ${os.loadavg()[0]!.toFixed(1)} at the end of this part.\n\n`
  )
}

process.stdout.write(`CLI: ${cli.how}; ${os.cpus().length} cores.\n\n`)

// A failed run stops the broker it started too.
try {
  // ---- 1. aggregate throughput -------------------------------------------------------------
  if (workerCounts.length > 0) {
    const topic = `workers-${Date.now()}`
    const records = Math.round((dataMiB * MiB) / 1024)
    log(`creating ${topic}: ${THROUGHPUT_PARTITIONS} partitions, ${records} records of 1 KiB`)
    await createTopic(cluster, topic, THROUGHPUT_PARTITIONS)
    produce(topic, records)
    // What the producer got in (it may lose a few on a loaded broker), which the restore must equal.
    const produced = await endOffsetsSum(topic, THROUGHPUT_PARTITIONS)
    const backupRows: Array<{ workers: number; wall: number; mbPerSec: number }> = []
    for (const workers of workerCounts) {
      const walls: number[] = []
      const rates: number[] = []
      for (let run = 1; run <= runs; run++) {
        log(`backup with ${workers} workers (run ${run}/${runs}), each at most ${rateMiB} MiB/s`)
        const path = mkdtempSync(join(workDir, 'backup-'))
        const { wallSeconds, bytes } = await backupWithWorkers(
          topic,
          path,
          workers,
          `  rate_limit_bytes_per_sec: ${Math.round(rateMiB * MiB)}\n`,
          produced
        )
        walls.push(wallSeconds)
        rates.push(bytes / MiB / wallSeconds)
        rmSync(path, { recursive: true, force: true })
      }
      backupRows.push({ workers, wall: median(walls), mbPerSec: median(rates) })
    }
    printSection(throughputTable('backup', backupRows, records))
    const backupPath = mkdtempSync(join(workDir, 'backup-'))
    await runCli('backup', backupYaml(bootstrapServers, topic, backupPath, 'b'))
    const rows: Array<{ workers: number; wall: number; mbPerSec: number; shares: string }> = []
    for (const workers of workerCounts) {
      const walls: number[] = []
      const rates: number[] = []
      let shares = ''
      for (let run = 1; run <= runs; run++) {
        const target = `${topic}-w${workers}-r${run}`
        log(`restore with ${workers} workers (run ${run}/${runs}), each at most ${rateMiB} MiB/s`)
        const { wallSeconds, results } = await restoreWithWorkers(
          topic,
          target,
          backupPath,
          workers,
          `  rate_limit_bytes_per_sec: ${Math.round(rateMiB * MiB)}\n`,
          // The producer's 16 KiB batches are not merged into larger ones, so that a Produce request
          // stays small beside the rate limit: its token bucket lets one request and one second of
          // bytes through at once, which would flatter short runs of several workers.
          ['  kafka_config:', '    batch.size: 16384']
        )
        const restored = await endOffsetsSum(target, THROUGHPUT_PARTITIONS)
        if (restored !== produced) {
          throw new Error(`${target} holds ${restored} records, not the ${produced} of ${topic}`)
        }
        walls.push(wallSeconds)
        rates.push(results[0]!.summary.bytes / MiB / wallSeconds)
        shares = results.map(r => r.summary.worker?.partitions.length ?? 0).join(' + ')
        await cluster.admin.deleteTopics({ topics: [target] }).catch(() => {})
        rmSync(join(backupPath, 'b', 'restores'), { recursive: true, force: true })
      }
      rows.push({ workers, wall: median(walls), mbPerSec: median(rates), shares })
    }
    printSection(throughputTable('restore', rows, records))
    await cluster.admin.deleteTopics({ topics: [topic] }).catch(() => {})
  }

  // ---- 2. peak RSS of one worker owning 100 of 2,000 partitions ----------------------------
  if (rssWorkers > 0) {
    const manyTopic = `workers-many-${Date.now()}`
    log(`creating ${manyTopic}: ${rssPartitions} partitions, 5 records each`)
    await createTopic(cluster, manyTopic, rssPartitions)
    produce(manyTopic, rssPartitions * 5)
    const manyProduced = await endOffsetsSum(manyTopic, rssPartitions)
    log(`backup with ${rssWorkers} workers`)
    const backupPath = mkdtempSync(join(workDir, 'many-workers-'))
    const shardedBackup = await backupWithWorkers(manyTopic, backupPath, rssWorkers, '', manyProduced)
    rmSync(backupPath, { recursive: true, force: true })
    log('backup with one process')
    const manyPath = mkdtempSync(join(workDir, 'many-'))
    const backupStartedAt = performance.now()
    const backupAlone = await runCli('backup', backupYaml(bootstrapServers, manyTopic, manyPath, 'b'))
    const backupAloneSeconds = (performance.now() - backupStartedAt) / 1000
    const backupRss = shardedBackup.results.map(r => r.memory.peakRssBytes / MiB)
    printSection([
      `### Peak RSS of one backup worker of ${rssWorkers} sharing ${rssPartitions} partitions`,
      '',
      `${manyProduced} records of 1 KiB in ${rssPartitions} partitions; ${rssWorkers} backup workers started together, beside one process backing up all of them.`,
      '',
      '| what | wall | peak RSS |',
      '| --- | --- | --- |',
      `| one worker of ${rssWorkers} (median) | ${shardedBackup.wallSeconds.toFixed(1)} s (all) | ${median(backupRss).toFixed(0)} MiB |`,
      `| one worker of ${rssWorkers} (largest) | | ${Math.max(...backupRss).toFixed(0)} MiB |`,
      `| one process, all ${rssPartitions} partitions | ${backupAloneSeconds.toFixed(1)} s | ${(backupAlone.memory.peakRssBytes / MiB).toFixed(0)} MiB |`,
      ''
    ])
    // The target topics exist before the restores: creating 2,000 partitions while 20 workers ask
    // for their offsets is a measurement of the broker's leader elections, not of the workers.
    await createTopic(cluster, `${manyTopic}-w`, rssPartitions)
    await createTopic(cluster, `${manyTopic}-1`, rssPartitions)
    log(`restore with ${rssWorkers} workers`)
    const sharded = await restoreWithWorkers(manyTopic, `${manyTopic}-w`, manyPath, rssWorkers, '')
    const produced = await endOffsetsSum(manyTopic, rssPartitions)
    const restored = await endOffsetsSum(`${manyTopic}-w`, rssPartitions)
    if (restored !== produced) {
      throw new Error(`${manyTopic}-w holds ${restored} records, not the ${produced} of ${manyTopic}`)
    }
    log('restore with one process')
    const startedAt = performance.now()
    const alone = await runCli('restore', restoreYaml(bootstrapServers, manyTopic, `${manyTopic}-1`, manyPath, 'b'))
    const aloneSeconds = (performance.now() - startedAt) / 1000
    const rss = sharded.results.map(r => r.memory.peakRssBytes / MiB)
    const owned = sharded.results.map(r => r.summary.worker?.partitions.length ?? 0)
    printSection([
      `### Peak RSS of one restore worker of ${rssWorkers} sharing ${rssPartitions} partitions`,
      '',
      `${produced} records of 1 KiB in ${rssPartitions} partitions; ${rssWorkers} workers started together (${Math.min(...owned)} to ${Math.max(...owned)} partitions restored by each), beside one process restoring all of them; the target topics created beforehand.`,
      '',
      '| what | wall | peak RSS |',
      '| --- | --- | --- |',
      `| one worker of ${rssWorkers} (median) | ${sharded.wallSeconds.toFixed(1)} s (all) | ${median(rss).toFixed(0)} MiB |`,
      `| one worker of ${rssWorkers} (largest) | | ${Math.max(...rss).toFixed(0)} MiB |`,
      `| one process, all ${rssPartitions} partitions | ${aloneSeconds.toFixed(1)} s | ${(alone.memory.peakRssBytes / MiB).toFixed(0)} MiB |`,
      ''
    ])
    await cluster.admin.deleteTopics({ topics: [manyTopic, `${manyTopic}-w`, `${manyTopic}-1`] }).catch(() => {})
  }
} finally {
  await cluster.close()
  rmSync(workDir, { recursive: true, force: true })
  if (broker) {
    await stopBroker(broker)
  }
}
