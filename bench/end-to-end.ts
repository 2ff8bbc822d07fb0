/**
 * End-to-end benchmark (`npm run bench`): backup to the filesystem and restore into a fresh
 * topic against a real broker, side by side with the broker's own limits measured in the same
 * run on the same data (ConsumerPerformance, ProducerPerformance, kcat). Ratios to those
 * baselines are the headline because this machine is shared and noisy; absolute MB/s second.
 * Prints the tables and writes them into docs/benchmarks.md under "End to end".
 *
 * Per data size, producer compression (none, lz4) and partition count (1, 8): a topic is loaded
 * with ProducerPerformance, then each run measures, in this order so that noise hits all alike:
 * ConsumerPerformance, kcat to a file, and one `kafka-backup backup` per frame codec (the CLI in
 * a child process, whose peak RSS is read from /proc at its exit, see bench/peak-rss.ts). Then
 * restore runs alternate ProducerPerformance into a fresh topic with `kafka-backup restore` of
 * the zstd-3 backup into a fresh topic. Latency comes from one extra in-process run of each
 * engine with its hooks (onFetch, onSegmentDurable, onRequest).
 *
 * Env (defaults in brackets):
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_SIZE_MB [256]       payload MiB per topic; a list runs each size (e.g. 1024,4096)
 *   BENCH_RUNS [3]            runs per figure (median and spread)
 *   BENCH_PARTITIONS [1,8]    partition counts
 *   BENCH_PRODUCER_COMPRESSION [none,lz4]
 *   BENCH_CODECS [zstd-1,zstd-3,lz4,none]   backup frame codecs
 *   BENCH_RESTORE [1]         0: backup side only (e.g. for the large size)
 *   BENCH_LOAD_BATCH_BYTES [65536], BENCH_LINGER_MS [10]   the data's producer batches
 *   BENCH_RESTORE_BATCH_BYTES [524288]  restore's target batch.size (its coalescing limit) and
 *                             the batch.size of the ProducerPerformance write baseline
 *   BENCH_PROFILE [0]         1: also profile one backup and one restore (--cpu-prof) per topic
 *   BENCH_CLI [dist]          src: run the CLI from its .ts sources instead of a fresh tsc build
 *   BENCH_NO_DOCS [0]         1: print only
 *   BENCH_OSO [1], OSO_BIN    0: skip the OSO baseline; its driver binary (bench/oso.ts)
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { runKafkaTool, stopBroker } from '../scripts/broker.ts'
import { ensureKcat } from '../scripts/kcat.ts'
import { BackupEngine } from '../src/backup/engine.ts'
import { readPartitionIndex } from '../src/catalog/manifest.ts'
import { parseConfig } from '../src/config/load.ts'
import { listOffsets } from '../src/kafka/admin.ts'
import { connectCluster } from '../src/kafka/connect.ts'
import { backupOptionsFromConfig, restoreOptionsFromConfig } from '../src/options.ts'
import { RestoreEngine } from '../src/restore/engine.ts'
import { FilesystemStorage } from '../src/storage/filesystem.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { consumerPerformance, kcatToFile, type ProducerSettings, producerPerformance } from './baselines.ts'
import { publishSection } from './benchmarks-doc.ts'
import { benchBroker, createTopic } from './broker.ts'
import { buildCli, compiledPreload } from './build-cli.ts'
import * as configs from './configs.ts'
import { hotFunctions } from './cpu-profile.ts'
import { writePayloadFile } from './data.ts'
import { ensureOsoDriver, osoBackupYaml, osoRestoreYaml, runOso, storedBytes } from './oso.ts'
import type { PeakMemory } from './peak-rss.ts'
import { type Figure, figure, percentile, spreadPercent } from './stats.ts'

const VALUE_BYTES = 1024
const PAYLOAD_LINES = 20_000
const MB = 1e6

function list(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback)
    .split(',')
    .map(item => item.trim())
    .filter(item => item !== '')
}

const sizesMiB = list('BENCH_SIZE_MB', '256').map(Number)
const runs = Number(process.env.BENCH_RUNS ?? 3)
const partitionCounts = list('BENCH_PARTITIONS', '1,8').map(Number)
const producerCodecs = list('BENCH_PRODUCER_COMPRESSION', 'none,lz4') as Array<'none' | 'lz4'>
const backupCodecs = list('BENCH_CODECS', 'zstd-1,zstd-3,lz4,none').map(name => {
  const [codec, level] = name.split('-')
  return { name, codec: codec!, level: level === undefined ? undefined : Number(level) }
})
const restoreEnabled = process.env.BENCH_RESTORE !== '0'
const loadBatchBytes = Number(process.env.BENCH_LOAD_BATCH_BYTES ?? 65536)
const lingerMs = Number(process.env.BENCH_LINGER_MS ?? 10)
const restoreBatchBytes = Number(process.env.BENCH_RESTORE_BATCH_BYTES ?? 524288)
const profileEnabled = process.env.BENCH_PROFILE === '1'
/** The backup that restores read: the default codec when it is measured. */
const restoreSourceCodec = backupCodecs.find(c => c.name === 'zstd-3') ?? backupCodecs[0]!

for (const [name, value] of [
  ['BENCH_SIZE_MB', sizesMiB],
  ['BENCH_PARTITIONS', partitionCounts]
] as const) {
  if (value.length === 0 || value.some(v => !Number.isInteger(v) || v <= 0)) {
    throw new Error(`${name} must be a comma-separated list of positive integers (found ${process.env[name]})`)
  }
}
if (!Number.isInteger(runs) || runs < 1) {
  throw new Error(`BENCH_RUNS must be a positive integer (found ${process.env.BENCH_RUNS})`)
}
for (const codec of producerCodecs) {
  if (codec !== 'none' && codec !== 'lz4') {
    throw new Error(`BENCH_PRODUCER_COMPRESSION takes none and lz4 (found ${codec})`)
  }
}

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

// ---- Setup -------------------------------------------------------------------------------------

const benchStartedAt = performance.now()
const loadAtStart = os.loadavg()[0]!
const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-bench-'))
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, PAYLOAD_LINES, VALUE_BYTES)

const cli = buildCli('bench', log)
const cliPath = cli.cliPath
const peakRssPath = compiledPreload('bench', 'peak-rss.ts')
log(`CLI: ${cli.how}`)

if (!process.env.KAFKA_BOOTSTRAP_SERVERS) {
  log('starting a broker (scripts/broker.ts)')
}
const { bootstrapServers, broker } = await benchBroker('bench')
log(`broker ${bootstrapServers}; work folder ${workDir}`)
const kcat = ensureKcat(log)
if (kcat.path === undefined) {
  log(`SKIPPING the kcat baseline: ${kcat.reason}`)
}
const oso = ensureOsoDriver(log)
if (oso.path === undefined) {
  log(`SKIPPING the OSO baseline: ${oso.reason}`)
}
const kafkaVersion = runKafkaTool('org.apache.kafka.tools.ConsumerPerformance', ['--version']).trim().split('\n').at(-1)
const cluster = testCluster(bootstrapServers.split(','))

async function deleteTopic(topic: string): Promise<void> {
  await cluster.admin.deleteTopics({ topics: [topic] }).catch(error => log(`could not delete ${topic}: ${error}`))
}

async function topicRecords(topic: string, partitions: number): Promise<number> {
  const ends = await listOffsets(
    cluster,
    Array.from({ length: partitions }, (_, partition) => ({ topic, partition })),
    'latest'
  )
  return [...ends.values()].reduce((sum, end) => sum + Number(end), 0)
}

// ---- Runs of our CLI ----------------------------------------------------------------------------

interface CliRun {
  summary: { records: number; bytes: number; storedBytes?: number; durationMs: number }
  memory: PeakMemory
  wallMs: number
}

let configCount = 0

function runCli(command: 'backup' | 'restore', yaml: string, nodeArgs: string[] = []): CliRun {
  const id = ++configCount
  const configFile = join(workDir, `config-${id}.yaml`)
  const rssFile = join(workDir, `memory-${id}.json`)
  writeFileSync(configFile, yaml)
  const startedAt = performance.now()
  const result = spawnSync(
    process.execPath,
    [...nodeArgs, '--import', peakRssPath, cliPath, command, '--config', configFile, '--json', '--log-level', 'warn'],
    { encoding: 'utf8', env: { ...process.env, BENCH_PEAK_RSS_FILE: rssFile }, maxBuffer: 64 * 1024 * 1024 }
  )
  const wallMs = performance.now() - startedAt
  if (result.status !== 0) {
    throw new Error(`kafka-backup ${command} failed (exit ${result.status ?? result.signal}):\n${result.stderr}`)
  }
  const memory = JSON.parse(readFileSync(rssFile, 'utf8')) as PeakMemory
  return { summary: JSON.parse(result.stdout), memory, wallMs }
}

function backupYaml(topic: string, storagePath: string, backupId: string, codec: (typeof backupCodecs)[number]) {
  return configs.backupYaml(bootstrapServers, topic, storagePath, backupId, [
    'backup:',
    `  compression: ${codec.codec}`,
    ...(codec.level === undefined ? [] : [`  compression_level: ${codec.level}`])
  ])
}

function restoreYaml(topic: string, targetTopic: string, storagePath: string, backupId: string) {
  return configs.restoreYaml(bootstrapServers, topic, targetTopic, storagePath, backupId, [
    '  kafka_config:',
    `    batch.size: ${restoreBatchBytes}`
  ])
}

// ---- In-process runs with the engines' latency hooks -----------------------------------------

/** The engines' options as the CLI builds them from the same YAML (src/cli/backup.ts, restore.ts). */
async function backupLatency(topic: string, storagePath: string, backupId: string, partitions: number) {
  const config = parseConfig(backupYaml(topic, storagePath, backupId, restoreSourceCodec), 'bench.yaml')
  if (config.mode !== 'backup') {
    throw new Error('unreachable')
  }
  const source = connectCluster(config.source)
  const storage = new FilesystemStorage({ path: storagePath })
  const fetches: Array<{ startedAt: number; durationMs: number; cumulativeBytes: number }> = []
  const durable: Array<{ at: number; cumulativeBytes: number }> = []
  const written: Array<{ at: number; durationMs: number }> = []
  let fetched = 0
  let madeDurable = 0
  const engine = new BackupEngine({
    ...backupOptionsFromConfig(config, { storage, cluster: source }),
    backupId,
    continuous: false,
    onFetch: (durationMs, bytes) => {
      if (bytes > 0) {
        fetched += bytes
        fetches.push({ startedAt: performance.now() - durationMs, durationMs, cumulativeBytes: fetched })
      }
    },
    onBatchesWritten: (_records, _bytes, durationMs) => {
      written.push({ at: performance.now(), durationMs })
    },
    onSegmentDurable: segment => {
      madeDurable += segment.bytes
      durable.push({ at: performance.now(), cumulativeBytes: madeDurable })
    }
  })
  try {
    await engine.run()
  } finally {
    await source.close()
    await storage.close()
  }
  // With one partition, a Fetch's bytes are durable once that partition's durable bytes reach
  // the bytes fetched through it; with several, the per-partition split is not reported.
  const fetchToDurableMs: number[] = []
  const fetchToSegmentMs: number[] = []
  if (partitions === 1) {
    // One record set per Fetch, appended in fetch order.
    for (let i = 0; i < Math.min(fetches.length, written.length); i++) {
      fetchToSegmentMs.push(written[i]!.at - fetches[i]!.startedAt)
    }
    let next = 0
    for (const fetch of fetches) {
      while (next < durable.length && durable[next]!.cumulativeBytes < fetch.cumulativeBytes) {
        next++
      }
      if (next < durable.length) {
        fetchToDurableMs.push(durable[next]!.at - fetch.startedAt)
      }
    }
  }
  return {
    fetchMs: fetches.map(f => f.durationMs),
    handOverToSegmentMs: written.map(w => w.durationMs),
    fetchToSegmentMs,
    fetchToDurableMs
  }
}

async function restoreLatency(topic: string, targetTopic: string, storagePath: string, backupId: string) {
  const config = parseConfig(restoreYaml(topic, targetTopic, storagePath, backupId), 'bench.yaml')
  if (config.mode !== 'restore') {
    throw new Error('unreachable')
  }
  const target = connectCluster(config.target)
  const storage = new FilesystemStorage({ path: storagePath })
  const requestMs: number[] = []
  const engine = new RestoreEngine({
    ...restoreOptionsFromConfig(config, { storage, cluster: target }),
    backupId,
    window: {},
    dryRun: false,
    resetConsumerOffsets: false,
    onRequest: durationMs => requestMs.push(durationMs)
  })
  try {
    await engine.run()
  } finally {
    await target.close()
    await storage.close()
  }
  return { requestMs }
}

// ---- Measurements per topic ---------------------------------------------------------------------

interface Row {
  what: string
  baseline: boolean
  recordsPerSec: Figure
  /** Name of the row this one is compared with. */
  against?: string
  peakRssBytes?: Figure
  peakHeapBytes?: Figure
  peakArrayBuffersBytes?: Figure
  storedRatio?: number
}

interface TopicResult {
  sizeMiB: number
  producerCodec: 'none' | 'lz4'
  partitions: number
  records: number
  topicBytes: number
  batchCount: number
  rows: Row[]
  latency?: {
    fetchMs: number[]
    handOverToSegmentMs: number[]
    fetchToSegmentMs: number[]
    fetchToDurableMs: number[]
    requestMs: number[]
  }
  profiles: Array<{ what: string; totalMs: number; functions: ReturnType<typeof hotFunctions>['functions'] }>
  skipped: string[]
  /** Wall-clock, peak RSS and stored bytes of ours (zstd-3) and OSO's, from the same rounds. */
  sideBySide?: Record<'oursBackup' | 'osoBackup' | 'oursRestore' | 'osoRestore', SideRun[]>
}

interface SideRun {
  wallMs: number
  /** User + system CPU time of the whole process (every thread). */
  cpuMs: number
  peakRssBytes: number
  storedBytes?: number
}

const CONSUMER = 'ConsumerPerformance (read limit)'
const KCAT = 'kcat → file'
const PRODUCER = 'ProducerPerformance (write limit)'
const backupLabel = (name: string) => `backup ${name}`
const RESTORE = 'restore'

async function measureTopic(sizeMiB: number, producerCodec: 'none' | 'lz4', partitions: number): Promise<TopicResult> {
  const records = sizeMiB * 1024
  const token = randomUUID().slice(0, 6)
  const topic = `bench-${sizeMiB}m-${producerCodec}-p${partitions}-${token}`
  const label = `${sizeMiB} MiB, ${producerCodec}, ${partitions} partition${partitions === 1 ? '' : 's'}`
  const loadSettings: ProducerSettings = { compression: producerCodec, batchBytes: loadBatchBytes, lingerMs }
  const writeSettings: ProducerSettings = { compression: producerCodec, batchBytes: restoreBatchBytes, lingerMs }
  const storagePath = join(workDir, 'backups', topic)
  mkdirSync(storagePath, { recursive: true })
  const result: TopicResult = {
    sizeMiB,
    producerCodec,
    partitions,
    records,
    topicBytes: 0,
    batchCount: 0,
    rows: [],
    profiles: [],
    skipped: []
  }
  const samples = new Map<string, { recordsPerSec: number[]; rss: number[]; heap: number[]; buffers: number[] }>()
  const sample = (what: string) => {
    let entry = samples.get(what)
    if (!entry) {
      entry = { recordsPerSec: [], rss: [], heap: [], buffers: [] }
      samples.set(what, entry)
    }
    return entry
  }
  const sampleRun = (what: string, run: CliRun) => {
    const entry = sample(what)
    entry.recordsPerSec.push(run.summary.records / (run.summary.durationMs / 1000))
    entry.rss.push(run.memory.peakRssBytes)
    entry.heap.push(run.memory.peakHeapUsedBytes)
    entry.buffers.push(run.memory.peakArrayBuffersBytes)
  }
  const storedRatios = new Map<string, number>()
  const side: NonNullable<TopicResult['sideBySide']> = {
    oursBackup: [],
    osoBackup: [],
    oursRestore: [],
    osoRestore: []
  }
  if (oso.path !== undefined) {
    result.sideBySide = side
  }

  log(`[${label}] loading ${records} records into ${topic}`)
  await createTopic(cluster, topic, partitions)
  producerPerformance(bootstrapServers!, topic, records, payloadFile, loadSettings)
  const loaded = await topicRecords(topic, partitions)
  if (loaded !== records) {
    throw new Error(`${topic} holds ${loaded} records after loading ${records}`)
  }

  const restoreBackupId = `restore-source`
  for (let run = 1; run <= runs; run++) {
    log(`[${label}] run ${run}/${runs}: ConsumerPerformance`)
    sample(CONSUMER).recordsPerSec.push(consumerPerformance(bootstrapServers!, topic, records).recordsPerSec)
    if (kcat.path !== undefined) {
      log(`[${label}] run ${run}/${runs}: kcat`)
      const out = kcatToFile(kcat.path, bootstrapServers!, topic, records, join(workDir, 'kcat.out'))
      if (out.fileBytes < records * VALUE_BYTES) {
        throw new Error(`kcat wrote ${out.fileBytes} bytes for ${records} records of ${VALUE_BYTES} bytes`)
      }
      sample(KCAT).recordsPerSec.push(out.recordsPerSec)
    }
    for (const codec of backupCodecs) {
      const keep = run === 1 && codec === restoreSourceCodec
      const backupId = keep ? restoreBackupId : `backup-${codec.name}-${run}`
      log(`[${label}] run ${run}/${runs}: backup ${codec.name}`)
      const backup = runCli('backup', backupYaml(topic, storagePath, backupId, codec))
      if (backup.summary.records !== records) {
        throw new Error(`backup of ${topic} wrote ${backup.summary.records} of ${records} records`)
      }
      sampleRun(backupLabel(codec.name), backup)
      storedRatios.set(codec.name, backup.summary.bytes / (backup.summary.storedBytes ?? backup.summary.bytes))
      result.topicBytes = backup.summary.bytes
      if (codec === restoreSourceCodec) {
        side.oursBackup.push({
          wallMs: backup.wallMs,
          cpuMs: backup.memory.cpuMicros / 1000,
          peakRssBytes: backup.memory.peakRssBytes,
          storedBytes: backup.summary.storedBytes
        })
      }
      if (!keep) {
        rmSync(join(storagePath, backupId), { recursive: true, force: true })
      }
    }
    if (oso.path !== undefined) {
      log(`[${label}] run ${run}/${runs}: OSO backup zstd-3`)
      const osoPath = join(storagePath, 'oso', String(run))
      const configFile = join(workDir, `oso-backup-${run}.yaml`)
      // A new backup_id per run: OSO continues a backup_id from where its last run stopped.
      writeFileSync(configFile, osoBackupYaml(bootstrapServers!, topic, osoPath, `oso-${run}`))
      const osoRun = await runOso(oso.path, configFile)
      side.osoBackup.push({ ...osoRun, storedBytes: storedBytes(osoPath) })
      if (run > 1) {
        rmSync(osoPath, { recursive: true, force: true })
      }
    }
  }
  for (let partition = 0; partition < partitions; partition++) {
    const index = await readPartitionIndex(
      new FilesystemStorage({ path: storagePath }),
      restoreBackupId,
      topic,
      partition
    )
    result.batchCount += index?.segments.reduce((sum, s) => sum + s.batchCount, 0) ?? 0
  }

  log(`[${label}] backup latency (in-process, ${restoreSourceCodec.name})`)
  const latency = await backupLatency(topic, storagePath, 'latency', partitions)
  rmSync(join(storagePath, 'latency'), { recursive: true, force: true })
  result.latency = { ...latency, requestMs: [] }

  if (profileEnabled) {
    const dir = join(workDir, 'profiles', topic)
    log(`[${label}] profiling a backup`)
    runCli('backup', backupYaml(topic, storagePath, 'profile', restoreSourceCodec), [
      '--cpu-prof',
      '--cpu-prof-dir',
      join(dir, 'backup')
    ])
    rmSync(join(storagePath, 'profile'), { recursive: true, force: true })
    const file = readdirSync(join(dir, 'backup'))[0]!
    result.profiles.push({ what: `backup ${restoreSourceCodec.name}`, ...hotFunctions(join(dir, 'backup', file)) })
  }

  if (restoreEnabled) {
    for (let run = 1; run <= runs; run++) {
      const writeTopic = `${topic}-pp${run}`
      log(`[${label}] run ${run}/${runs}: ProducerPerformance`)
      await createTopic(cluster, writeTopic, partitions)
      sample(PRODUCER).recordsPerSec.push(
        producerPerformance(bootstrapServers!, writeTopic, records, payloadFile, writeSettings).recordsPerSec
      )
      await deleteTopic(writeTopic)
      const targetTopic = `${topic}-restore${run}`
      log(`[${label}] run ${run}/${runs}: restore`)
      const restore = runCli('restore', restoreYaml(topic, targetTopic, storagePath, restoreBackupId))
      if (restore.summary.records !== records) {
        throw new Error(`restore of ${topic} wrote ${restore.summary.records} of ${records} records`)
      }
      sampleRun(RESTORE, restore)
      side.oursRestore.push({
        wallMs: restore.wallMs,
        cpuMs: restore.memory.cpuMicros / 1000,
        peakRssBytes: restore.memory.peakRssBytes
      })
      await deleteTopic(targetTopic)
      if (oso.path !== undefined) {
        const osoTarget = `${topic}-oso-restore${run}`
        log(`[${label}] run ${run}/${runs}: OSO restore`)
        const configFile = join(workDir, `oso-restore-${run}.yaml`)
        writeFileSync(
          configFile,
          osoRestoreYaml(bootstrapServers!, topic, osoTarget, join(storagePath, 'oso', '1'), 'oso-1')
        )
        side.osoRestore.push(await runOso(oso.path, configFile))
        const restored = await topicRecords(osoTarget, partitions)
        if (restored !== records) {
          throw new Error(`OSO restored ${restored} of ${records} records into ${osoTarget}`)
        }
        await deleteTopic(osoTarget)
      }
    }
    log(`[${label}] restore latency (in-process)`)
    const latencyTopic = `${topic}-restore-latency`
    const { requestMs } = await restoreLatency(topic, latencyTopic, storagePath, restoreBackupId)
    result.latency.requestMs = requestMs
    await deleteTopic(latencyTopic)
    if (profileEnabled) {
      const dir = join(workDir, 'profiles', topic, 'restore')
      const profileTopic = `${topic}-restore-profile`
      log(`[${label}] profiling a restore`)
      runCli('restore', restoreYaml(topic, profileTopic, storagePath, restoreBackupId), [
        '--cpu-prof',
        '--cpu-prof-dir',
        dir
      ])
      await deleteTopic(profileTopic)
      result.profiles.push({ what: 'restore', ...hotFunctions(join(dir, readdirSync(dir)[0]!)) })
    }
  }
  await deleteTopic(topic)
  rmSync(storagePath, { recursive: true, force: true })

  const rowOf = (what: string, baseline: boolean, against?: string, codec?: string): Row | undefined => {
    const entry = samples.get(what)
    if (!entry) {
      return undefined
    }
    return {
      what,
      baseline,
      against,
      recordsPerSec: figure(entry.recordsPerSec),
      peakRssBytes: entry.rss.length ? figure(entry.rss) : undefined,
      peakHeapBytes: entry.heap.length ? figure(entry.heap) : undefined,
      peakArrayBuffersBytes: entry.buffers.length ? figure(entry.buffers) : undefined,
      storedRatio: codec === undefined ? undefined : storedRatios.get(codec)
    }
  }
  result.rows = [
    rowOf(CONSUMER, true),
    rowOf(KCAT, true),
    ...backupCodecs.map(codec => rowOf(backupLabel(codec.name), false, CONSUMER, codec.name)),
    rowOf(PRODUCER, true),
    rowOf(RESTORE, false, PRODUCER)
  ].filter(row => row !== undefined)
  if (kcat.path === undefined) {
    result.skipped.push(`kcat baseline skipped: ${kcat.reason}`)
  }
  return result
}

// ---- Run everything ------------------------------------------------------------------------------

const results: TopicResult[] = []
try {
  for (const sizeMiB of sizesMiB) {
    for (const producerCodec of producerCodecs) {
      for (const partitions of partitionCounts) {
        results.push(await measureTopic(sizeMiB, producerCodec, partitions))
      }
    }
  }
} finally {
  await cluster.close()
  if (broker) {
    log('stopping the broker')
    await stopBroker(broker)
  }
  rmSync(workDir, { recursive: true, force: true })
}

// ---- Report --------------------------------------------------------------------------------------

const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '-')
const fmtMiB = (bytes: number | undefined) => (bytes === undefined ? '' : `${fmt(bytes / 2 ** 20)} MiB`)
const mbps = (recordsPerSec: number) => (recordsPerSec * VALUE_BYTES) / MB
const topicLabel = (r: TopicResult) => `${r.producerCodec}, ${r.partitions}p`
const rowIn = (r: TopicResult, what: string) => r.rows.find(row => row.what === what)
const ratioOf = (r: TopicResult, what: string, against: string) => {
  const row = rowIn(r, what)
  const base = rowIn(r, against)
  return row && base ? row.recordsPerSec.median / base.recordsPerSec.median : Number.NaN
}
const ratioCell = (value: number, goal?: number) =>
  Number.isFinite(value) ? `${fmt(value, 2)}×${goal === undefined ? '' : value >= goal ? '' : ' ✗'}` : '-'

const defaultBackup = backupLabel(restoreSourceCodec.name)
const bestBackup = (r: TopicResult) =>
  r.rows
    .filter(row => row.what.startsWith('backup '))
    .sort((a, b) => b.recordsPerSec.median - a.recordsPerSec.median)[0]

function headlineTable(sizeResults: TopicResult[]): string[] {
  const lines = [
    `| topic (producer codec, partitions) | ${defaultBackup} ÷ ConsumerPerf (goal ≥ 0.8) | fastest backup ÷ ConsumerPerf | ${defaultBackup} ÷ kcat | restore ÷ ProducerPerf (goal ≥ 0.7) | peak RSS backup / restore (goal ≤ 150 MiB) | backup p99 Fetch / hand-over → in segment (goal < 8 ms) |`,
    '|---|---|---|---|---|---|---|'
  ]
  for (const r of sizeResults) {
    const best = bestBackup(r)
    const backupRss = Math.max(
      ...r.rows.filter(row => row.what.startsWith('backup ')).map(row => row.peakRssBytes?.max ?? 0)
    )
    const restoreRss = rowIn(r, RESTORE)?.peakRssBytes?.max
    const p99 = percentile(r.latency?.fetchMs ?? [], 99)
    const p99Segment = percentile(r.latency?.handOverToSegmentMs ?? [], 99)
    lines.push(
      `| ${topicLabel(r)} | ${ratioCell(ratioOf(r, defaultBackup, CONSUMER), 0.8)} | ${best ? `${ratioCell(ratioOf(r, best.what, CONSUMER))} (${best.what.slice(7)})` : '-'} | ${ratioCell(ratioOf(r, defaultBackup, KCAT))} | ${ratioCell(ratioOf(r, RESTORE, PRODUCER), 0.7)} | ${fmtMiB(backupRss)}${backupRss > 150 * 2 ** 20 ? ' ✗' : ''} / ${restoreRss === undefined ? '-' : `${fmtMiB(restoreRss)}${restoreRss > 150 * 2 ** 20 ? ' ✗' : ''}`} | ${fmt(p99, 1)}${p99 >= 8 ? ' ✗' : ''} / ${fmt(p99Segment, 1)}${p99Segment >= 8 ? ' ✗' : ''} ms |`
    )
  }
  return lines
}

function detailTable(sizeResults: TopicResult[]): string[] {
  const lines = [
    '| topic | what | records/s | payload MB/s | spread | ÷ baseline | peak RSS (heap, buffers) | stored ratio |',
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const r of sizeResults) {
    for (const row of r.rows) {
      const ratio = row.against ? ratioOf(r, row.what, row.against) : Number.NaN
      const memory = row.peakRssBytes
        ? `${fmtMiB(row.peakRssBytes.median)} (${fmtMiB(row.peakHeapBytes?.median)}, ${fmtMiB(row.peakArrayBuffersBytes?.median)})`
        : ''
      lines.push(
        `| ${topicLabel(r)} | ${row.what} | ${fmt(row.recordsPerSec.median)} | ${fmt(mbps(row.recordsPerSec.median), 1)} | ±${fmt(spreadPercent(row.recordsPerSec) / 2)}% | ${row.against ? `${ratioCell(ratio)} ${row.against.startsWith('Consumer') ? 'CP' : 'PP'}` : ''} | ${memory} | ${row.storedRatio === undefined ? '' : fmt(row.storedRatio, 2)} |`
      )
    }
  }
  return lines
}

function latencyTable(sizeResults: TopicResult[]): string[] {
  const lines = [
    '| topic | backup Fetch | backup hand-over → in segment | backup Fetch → in segment | backup Fetch → durable (p50 / p99 / max) | restore Produce |',
    '|---|---|---|---|---|---|'
  ]
  const triple = (values: number[], top = 99.9) =>
    values.length === 0
      ? '-'
      : `${fmt(percentile(values, 50), 1)} / ${fmt(percentile(values, 99), 1)} / ${fmt(percentile(values, top), 1)} ms (${values.length})`
  const single = (r: TopicResult, cell: string) => (r.partitions === 1 ? cell : 'n/a (several partitions)')
  for (const r of sizeResults) {
    const latency = r.latency
    lines.push(
      `| ${topicLabel(r)} | ${triple(latency?.fetchMs ?? [])} | ${triple(latency?.handOverToSegmentMs ?? [])} | ${single(r, triple(latency?.fetchToSegmentMs ?? []))} | ${single(r, triple(latency?.fetchToDurableMs ?? [], 100))} | ${triple(latency?.requestMs ?? [])} |`
    )
  }
  return lines
}

/** Ours (zstd-3, the default) beside OSO's engines, wall-clock from the same interleaved runs. */
function osoTable(sizeResults: TopicResult[]): string[] {
  const lines = [
    '| topic | backup wall ours / OSO | OSO ÷ ours (goal ≥ 1.5) | restore wall ours / OSO | OSO ÷ ours (goal ≥ 1.5) | CPU backup ours / OSO | CPU restore ours / OSO | peak RSS backup ours / OSO | peak RSS restore ours / OSO | stored bytes ours / OSO |',
    '|---|---|---|---|---|---|---|---|---|---|'
  ]
  const med = (runs: SideRun[], pick: (run: SideRun) => number | undefined) =>
    figure(runs.flatMap(run => pick(run) ?? [])).median
  const seconds = (ms: number) => `${fmt(ms / 1000, 2)} s`
  for (const r of sizeResults) {
    const side = r.sideBySide
    if (!side) {
      continue
    }
    const wall = (runs: SideRun[]) => med(runs, run => run.wallMs)
    const cpu = (runs: SideRun[]) => med(runs, run => run.cpuMs)
    const rss = (runs: SideRun[]) => med(runs, run => run.peakRssBytes)
    const stored = (runs: SideRun[]) => med(runs, run => run.storedBytes)
    lines.push(
      `| ${topicLabel(r)} | ${seconds(wall(side.oursBackup))} / ${seconds(wall(side.osoBackup))} | ${ratioCell(wall(side.osoBackup) / wall(side.oursBackup), 1.5)} | ${seconds(wall(side.oursRestore))} / ${seconds(wall(side.osoRestore))} | ${ratioCell(wall(side.osoRestore) / wall(side.oursRestore), 1.5)} | ${seconds(cpu(side.oursBackup))} / ${seconds(cpu(side.osoBackup))} | ${seconds(cpu(side.oursRestore))} / ${seconds(cpu(side.osoRestore))} | ${fmtMiB(rss(side.oursBackup))} / ${fmtMiB(rss(side.osoBackup))} | ${fmtMiB(rss(side.oursRestore))} / ${fmtMiB(rss(side.osoRestore))} | ${fmt(stored(side.oursBackup) / MB, 1)} / ${fmt(stored(side.osoBackup) / MB, 1)} MB |`
    )
  }
  return lines.length > 2 ? lines : []
}

const cpus = os.cpus()
const machine = `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.platform()} ${os.release()}, Node ${process.version}, Apache Kafka ${kafkaVersion} (one KRaft broker on loopback, scripts/broker.ts), Java ${
  /version "([^"]+)"/.exec(spawnSync('java', ['-version'], { encoding: 'utf8' }).stderr)?.[1] ?? '?'
}, ${kcat.path === undefined ? 'kcat not available' : kcat.version}`
const envUsed = [
  'BENCH_SIZE_MB',
  'BENCH_RUNS',
  'BENCH_PARTITIONS',
  'BENCH_PRODUCER_COMPRESSION',
  'BENCH_CODECS',
  'BENCH_RESTORE',
  'BENCH_LOAD_BATCH_BYTES',
  'BENCH_LINGER_MS',
  'BENCH_RESTORE_BATCH_BYTES',
  'BENCH_PROFILE',
  'BENCH_CLI',
  'BENCH_OSO',
  'OSO_BIN'
]
  .filter(name => process.env[name] !== undefined)
  .map(name => `${name}=${process.env[name]}`)
const command = `${envUsed.length ? `${envUsed.join(' ')} ` : ''}npm run bench`
const minutes = (performance.now() - benchStartedAt) / 60_000

const lines = [
  '## End to end: backup and restore against the broker',
  '',
  `Command: \`${command}\` (bench/end-to-end.ts; ${runs} runs per figure, median; took ${fmt(minutes, 1)} min).`,
  `Machine: ${machine}; 1-minute load average ${fmt(loadAtStart, 1)} at start, ${fmt(os.loadavg()[0]!, 1)} at the end (the machine is shared: read the ratios, not the absolute figures).`,
  `Data: per topic ${sizesMiB.join(' and ')} MiB of payload, ${VALUE_BYTES}-byte JSON-like values (${PAYLOAD_LINES} distinct lines from bench/data.ts, picked at random per record by ProducerPerformance \`--payload-file\`), no keys and no headers (ProducerPerformance has no option for them; our data path copies batches without decoding records, so they would only change bytes per record). Loaded with ProducerPerformance, acks=all, batch.size ${loadBatchBytes}, linger.ms ${lingerMs}, compression.type none or lz4.`,
  '',
  'How each figure is measured:',
  `- **backup**: \`kafka-backup backup --config FILE --json\` in a child process (${cli.how}) (CLI defaults: 1 MiB frames, 128 MiB segments, fetch.max.bytes 16 MiB, max.partition.fetch.bytes 2 MiB, max_bytes_in_flight 32 MiB), to a fresh backup in a folder on local disk; records/s = records ÷ the summary's durationMs (the run from metadata to the final manifest, without Node's start-up).`,
  `- **restore**: \`kafka-backup restore\` of the ${restoreSourceCodec.name} backup into a fresh topic (topic_mapping; created by the restore), target batch.size ${restoreBatchBytes} (runs of smaller batches are merged up to it), acks=all, idempotent.`,
  '- **ConsumerPerformance**: fetch.nMsg.sec (records over the fetch time, without the JVM start and the group join), a fresh group per run.',
  '- **kcat → file**: `kcat -C -o beginning -e -q` of all partitions into a file; records ÷ wall time of the process.',
  `- **ProducerPerformance**: records/sec it reports, into a fresh topic with the same partitions and compression, acks=all, batch.size ${restoreBatchBytes} (the batch size restore sends), linger.ms ${lingerMs}.`,
  '- **payload MB/s** = records/s × 1024 bytes (value bytes, 10^6 per MB), the same for every tool; **spread** = half the range of the runs, relative to the median; **stored ratio** = batch bytes ÷ segment bytes.',
  '- **peak RSS** = VmHWM of the CLI process at exit (bench/peak-rss.ts, preloaded as JavaScript); heap and buffers are the largest `process.memoryUsage()` heapUsed and arrayBuffers seen by a 500 ms sampler. Medians over runs; the headline shows the largest run.',
  `- **latency** (one in-process run of each engine, ${restoreSourceCodec.name}, same options as the CLI; p50 / p99 / p99.9 and the number of samples): backup Fetch = onFetch, from sending a Fetch to its response split and CRC-checked (one Fetch per leader, up to fetch.max.bytes); hand-over → in segment = onBatchesWritten, from a partition's record set leaving the fetcher to its last batch appended to the segment (queueing, framing, compression, write backpressure); Fetch → in segment = the two together, paired per Fetch (one partition only); Fetch → durable = until the segment holding the Fetch's last byte is durable (fsynced, renamed, index written), bounded by the segment size (128 MiB), so it measures checkpoint lag, not per-batch work; restore Produce = onRequest, from sending a Produce request to its acks=all response.`,
  ''
]
for (const sizeMiB of sizesMiB) {
  const sizeResults = results.filter(r => r.sizeMiB === sizeMiB)
  const example = sizeResults[0]
  lines.push(
    `### ${sizeMiB} MiB per topic`,
    '',
    `Headline (✗ = goal missed in this run). Topic batches: ${sizeResults.map(r => `${topicLabel(r)} ${fmt(r.topicBytes / Math.max(r.batchCount, 1) / 1024, 1)} KiB × ${r.batchCount}`).join('; ')}.`,
    '',
    ...headlineTable(sizeResults),
    '',
    ...detailTable(sizeResults),
    '',
    'Latency:',
    '',
    ...latencyTable(sizeResults),
    ''
  )
  const besideOso = osoTable(sizeResults)
  if (besideOso.length > 0) {
    lines.push(
      `Beside OSO (${oso.path === undefined ? '' : oso.version}, zstd level 3, one pass to the current end offsets, offset headers off, run by bench/oso-driver; its wall, VmHWM and CPU time sampled from /proc every 10 ms; ours: wall and CPU of the CLI process, start-up included; medians):`,
      '',
      ...besideOso,
      ''
    )
  }
  for (const r of sizeResults) {
    for (const profile of r.profiles) {
      lines.push(
        `CPU profile, ${topicLabel(r)}, ${profile.what} (${fmt(profile.totalMs)} ms sampled; top self time):`,
        '',
        '| self | function | where |',
        '|---|---|---|',
        ...profile.functions.map(f => `| ${fmt(f.selfPercent, 1)}% | \`${f.name}\` | ${f.location} |`),
        ''
      )
    }
  }
  if (example?.skipped.length) {
    lines.push(...example.skipped.map(line => `Note: ${line}.`), '')
  }
}
if (sizesMiB.length > 1) {
  lines.push('Peak RSS across sizes (goal: the largest within 10% of the smallest):', '')
  lines.push(`| topic | what | ${sizesMiB.map(s => `${s} MiB`).join(' | ')} | largest ÷ smallest |`)
  lines.push(`|---|---|${sizesMiB.map(() => '---|').join('')}---|`)
  const layouts = results.filter(r => r.sizeMiB === sizesMiB[0])
  for (const layout of layouts) {
    for (const what of [defaultBackup, RESTORE]) {
      const values = sizesMiB.map(
        size =>
          results
            .find(
              r => r.sizeMiB === size && r.producerCodec === layout.producerCodec && r.partitions === layout.partitions
            )
            ?.rows.find(row => row.what === what)?.peakRssBytes?.median
      )
      if (values.some(v => v === undefined)) {
        continue
      }
      const ratio = values.at(-1)! / values[0]!
      lines.push(
        `| ${topicLabel(layout)} | ${what} | ${values.map(v => fmtMiB(v)).join(' | ')} | ${fmt(ratio, 2)}${ratio > 1.1 ? ' ✗' : ''} |`
      )
    }
  }
  lines.push('')
}

publishSection(lines[0]!, lines.join('\n'), log)
