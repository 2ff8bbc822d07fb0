/**
 * Many partitions with little data each (goal 5): backup and restore of one topic of
 * BENCH_PARTITIONS partitions, wall time, CPU and peak RSS of our CLI beside OSO's engine
 * (bench/oso.ts) on the same topic.
 *
 *   node bench/many-partitions.ts
 *
 * Env (defaults in brackets):
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_PARTITIONS [2000]
 *   BENCH_RECORDS_PER_PARTITION [5]   1 KiB records, spread by ProducerPerformance's round-robin partitioner
 *   BENCH_RUNS [2]            runs per figure (median; peak RSS: the largest)
 *   BENCH_CLI [dist]          src, or a compiled main.js
 *   BENCH_OSO [1], OSO_BIN    0: skip OSO; its driver binary
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { stopBroker } from '../scripts/broker.ts'
import { listOffsets } from '../src/kafka/admin.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { ROUND_ROBIN, runProducerPerformance } from './baselines.ts'
import { benchBroker, createTopic } from './broker.ts'
import { buildCli, compiledPreload } from './build-cli.ts'
import { backupYaml, restoreYaml } from './configs.ts'
import { writePayloadFile } from './data.ts'
import { ensureOsoDriver, osoBackupYaml, osoRestoreYaml, runOso, storedBytes } from './oso.ts'
import type { PeakMemory } from './peak-rss.ts'
import { percentile } from './stats.ts'

const partitions = Number(process.env.BENCH_PARTITIONS ?? 2000)
const perPartition = Number(process.env.BENCH_RECORDS_PER_PARTITION ?? 5)
const runs = Number(process.env.BENCH_RUNS ?? 2)

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-many-'))
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 20_000, 1024)
const cli = buildCli('bench-many', log)
const preload = compiledPreload('bench-many', 'peak-rss.ts')
const oso = ensureOsoDriver(log)
if (oso.path === undefined) {
  log(`SKIPPING OSO: ${oso.reason}`)
}
const { bootstrapServers, broker } = await benchBroker('bench-many')
const cluster = testCluster(bootstrapServers.split(','))

interface Run {
  wallSeconds: number
  cpuSeconds?: number
  peakRssBytes: number
  storedBytes: number
}

let configs = 0
function runCli(command: 'backup' | 'restore', yaml: string, storagePath: string): Run {
  const id = ++configs
  const configFile = join(workDir, `config-${id}.yaml`)
  const memoryFile = join(workDir, `memory-${id}.json`)
  writeFileSync(configFile, yaml)
  const startedAt = performance.now()
  const result = spawnSync(
    process.execPath,
    ['--import', preload, cli.cliPath, command, '--config', configFile, '--json', '--log-level', 'warn'],
    { encoding: 'utf8', env: { ...process.env, BENCH_PEAK_RSS_FILE: memoryFile }, maxBuffer: 64 * 1024 * 1024 }
  )
  if (result.status !== 0) {
    throw new Error(`kafka-backup ${command} failed (exit ${result.status ?? result.signal}):\n${result.stderr}`)
  }
  const memory = JSON.parse(readFileSync(memoryFile, 'utf8')) as PeakMemory
  return {
    wallSeconds: (performance.now() - startedAt) / 1000,
    cpuSeconds: memory.cpuMicros / 1e6,
    peakRssBytes: memory.peakRssBytes,
    // A restore adds its state to the folder: only a backup's size is what it stored.
    storedBytes: command === 'backup' ? storedBytes(storagePath) : 0
  }
}

const topic = `many-${partitions}p-${Date.now()}`
log(`creating ${topic} with ${partitions} partitions`)
await createTopic(cluster, topic, partitions)
const records = partitions * perPartition
runProducerPerformance(bootstrapServers, topic, records, payloadFile, ['linger.ms=0', ROUND_ROBIN])
const ends = await listOffsets(
  cluster,
  Array.from({ length: partitions }, (_, partition) => ({ topic, partition })),
  'latest'
)
const withData = [...ends.values()].filter(end => end > 0n).length
log(`${records} records in ${withData} of ${partitions} partitions`)

const results: Record<string, Run[]> = { ours: [], oursRestore: [], oso: [], osoRestore: [] }
const failures: string[] = []
for (let run = 1; run <= runs; run++) {
  const path = mkdtempSync(join(workDir, 'ours-'))
  log(`run ${run}/${runs}: backup`)
  results.ours!.push(runCli('backup', backupYaml(bootstrapServers, topic, path, 'b'), path))
  log(`run ${run}/${runs}: restore`)
  try {
    results.oursRestore!.push(
      runCli('restore', restoreYaml(bootstrapServers, topic, `${topic}-r${run}`, path, 'b'), path)
    )
  } catch (error) {
    // Reported below instead of ending the benchmark: a failure is a result too.
    const message = (error as Error).message.split('\n').find(line => line.startsWith('kafka-backup:')) ?? ''
    failures.push(`restore run ${run}: ${message}`)
    log(`run ${run}/${runs}: restore FAILED ${message}`)
  }
  await cluster.admin.deleteTopics({ topics: [`${topic}-r${run}`] }).catch(() => {})
  rmSync(path, { recursive: true, force: true })
  if (oso.path !== undefined) {
    const osoPath = mkdtempSync(join(workDir, 'oso-'))
    const backupFile = join(osoPath, 'backup.yaml')
    writeFileSync(backupFile, osoBackupYaml(bootstrapServers, topic, join(osoPath, 'data'), `oso-${run}`))
    log(`run ${run}/${runs}: OSO backup`)
    const backup = await runOso(oso.path, backupFile)
    results.oso!.push({
      wallSeconds: backup.wallMs / 1000,
      cpuSeconds: backup.cpuMs / 1000,
      peakRssBytes: backup.peakRssBytes,
      storedBytes: storedBytes(join(osoPath, 'data'))
    })
    const restoreFile = join(osoPath, 'restore.yaml')
    writeFileSync(
      restoreFile,
      osoRestoreYaml(bootstrapServers, topic, `${topic}-oso${run}`, join(osoPath, 'data'), `oso-${run}`)
    )
    log(`run ${run}/${runs}: OSO restore`)
    const restore = await runOso(oso.path, restoreFile)
    results.osoRestore!.push({
      wallSeconds: restore.wallMs / 1000,
      cpuSeconds: restore.cpuMs / 1000,
      peakRssBytes: restore.peakRssBytes,
      storedBytes: 0
    })
    const restored = await listOffsets(
      cluster,
      Array.from({ length: partitions }, (_, partition) => ({ topic: `${topic}-oso${run}`, partition })),
      'latest'
    ).catch(() => new Map<string, bigint>())
    const osoRestored = [...restored.values()].reduce((sum, end) => sum + end, 0n)
    log(`OSO restored ${osoRestored} of ${records} records`)
    if (osoRestored !== BigInt(records)) {
      failures.push(`OSO restore run ${run}: ${osoRestored} of ${records} records in the target when it exited`)
    }
    await cluster.admin.deleteTopics({ topics: [`${topic}-oso${run}`] }).catch(() => {})
    rmSync(osoPath, { recursive: true, force: true })
  }
}

const median = (values: number[]) => percentile(values, 50)
const row = (label: string, list: Run[]) =>
  list.length === 0
    ? undefined
    : `| ${label} | ${median(list.map(r => r.wallSeconds)).toFixed(1)} s | ${list[0]!.cpuSeconds === undefined ? '-' : `${median(list.map(r => r.cpuSeconds!)).toFixed(1)} s`} | ${(Math.max(...list.map(r => r.peakRssBytes)) / 2 ** 20).toFixed(0)} MiB | ${list[0]!.storedBytes > 0 ? `${(median(list.map(r => r.storedBytes)) / 1e6).toFixed(1)} MB` : '-'} |`
process.stdout.write(
  [
    `${partitions} partitions, ${records} records of 1 KiB in ${withData} of them; ${runs} runs (median, peak RSS the largest); CLI: ${cli.how}; OSO: ${oso.path === undefined ? `not run (${oso.reason})` : oso.version}; 1-minute load average ${os.loadavg()[0]!.toFixed(1)} at the end.`,
    '',
    '| what | wall | CPU | peak RSS | stored |',
    '| --- | --- | --- | --- | --- |',
    row('kafka-backup backup', results.ours!),
    row('OSO backup', results.oso!),
    row('kafka-backup restore', results.oursRestore!),
    row('OSO restore', results.osoRestore!),
    ...(failures.length > 0 ? ['', 'Failed or incomplete runs:', '', ...failures.map(f => `- ${f}`)] : []),
    ''
  ]
    .filter(line => line !== undefined)
    .join('\n')
    .concat('\n')
)
await cluster.close()
if (broker) {
  await stopBroker(broker)
}
