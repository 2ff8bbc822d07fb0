/**
 * CPU cost of backup and restore: CPU seconds (user + system of the CLI process, every thread)
 * per GB of payload, which a shared machine disturbs far less than wall time. One topic per
 * producer codec and partition count is loaded with ProducerPerformance (1 KiB JSON-like
 * values, as `npm run bench`), then each run backs it up with the CLI to a fresh folder and
 * restores that backup into a fresh topic.
 *
 *   node bench/cpu-cost.ts
 *
 * Env (defaults in brackets):
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_SIZE_MB [256]       payload MiB per topic
 *   BENCH_PARTITIONS [1,8]    partition counts
 *   BENCH_PRODUCER_COMPRESSION [none,lz4]
 *   BENCH_STORE_RECORDS [decompressed]   backup.store_records values to compare; `default` leaves
 *                             the key out (for a CLI that does not know it)
 *   BENCH_FRAME_MAX_BYTES     backup.frame_max_bytes (unset: the default)
 *   BENCH_RUNS [2]            runs per figure (median)
 *   BENCH_CLI [dist]          src, or a compiled main.js (e.g. another checkout's, for before/after)
 *   BENCH_CLI_BEFORE          a compiled CLI (another checkout's dist/kafka-backup.js) run in turn
 *                             with BENCH_CLI in every run: the table then gives before / after
 *   BENCH_PROFILE [0]         1: also --cpu-prof the first run of each and print the hottest functions
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { stopBroker } from '../scripts/broker.ts'
import { listOffsets } from '../src/kafka/admin.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { producerPerformance } from './baselines.ts'
import { benchBroker, createTopic } from './broker.ts'
import { buildCli, compiledPreload } from './build-cli.ts'
import { backupYaml, restoreYaml } from './configs.ts'
import { hotFunctions } from './cpu-profile.ts'
import { writePayloadFile } from './data.ts'
import type { PeakMemory } from './peak-rss.ts'
import { percentile } from './stats.ts'

const VALUE_BYTES = 1024
const MB = 1e6
const list = (name: string, fallback: string) =>
  (process.env[name] ?? fallback)
    .split(',')
    .map(item => item.trim())
    .filter(item => item !== '')
const sizeMiB = Number(process.env.BENCH_SIZE_MB ?? 256)
const partitionCounts = list('BENCH_PARTITIONS', '1,8').map(Number)
const producerCodecs = list('BENCH_PRODUCER_COMPRESSION', 'none,lz4') as Array<'none' | 'lz4'>
const storeRecordsValues = list('BENCH_STORE_RECORDS', 'decompressed')
const runs = Number(process.env.BENCH_RUNS ?? 2)
const frameMaxBytes = process.env.BENCH_FRAME_MAX_BYTES

/** The config's `backup:` section: only the keys this run sets. */
function backupSection(storeRecords: string): string {
  const keys = [
    ...(storeRecords === 'default' ? [] : [`  store_records: ${storeRecords}`]),
    ...(frameMaxBytes === undefined ? [] : [`  frame_max_bytes: ${frameMaxBytes}`])
  ]
  return keys.length === 0 ? '' : `backup:\n${keys.join('\n')}\n`
}
const profile = process.env.BENCH_PROFILE === '1'

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-cpu-'))
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 20_000, VALUE_BYTES)
const cli = buildCli('bench-cpu', log)
const preload = compiledPreload('bench-cpu', 'peak-rss.ts')
const cliBefore = process.env.BENCH_CLI_BEFORE ? resolve(process.env.BENCH_CLI_BEFORE) : undefined
log(`CLI: ${cli.how}${cliBefore ? `; before: ${cliBefore}` : ''}`)
const clis = cliBefore ? [cliBefore, cli.cliPath] : [cli.cliPath]

const { bootstrapServers, broker } = await benchBroker('bench-cpu')
const cluster = testCluster(bootstrapServers.split(','))

interface Run {
  cpuSeconds: number
  wallSeconds: number
  peakRssBytes: number
  storedBytes?: number
}

let configs = 0
function runCli(cliPath: string, command: 'backup' | 'restore', yaml: string, profileDir?: string): Run {
  const id = ++configs
  const configFile = join(workDir, `config-${id}.yaml`)
  const memoryFile = join(workDir, `memory-${id}.json`)
  writeFileSync(configFile, yaml)
  const startedAt = performance.now()
  const nodeArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []
  const result = spawnSync(
    process.execPath,
    [...nodeArgs, '--import', preload, cliPath, command, '--config', configFile, '--json', '--log-level', 'warn'],
    { encoding: 'utf8', env: { ...process.env, BENCH_PEAK_RSS_FILE: memoryFile }, maxBuffer: 64 * 1024 * 1024 }
  )
  if (result.status !== 0) {
    throw new Error(`kafka-backup ${command} failed (exit ${result.status ?? result.signal}):\n${result.stderr}`)
  }
  const memory = JSON.parse(readFileSync(memoryFile, 'utf8')) as PeakMemory
  const summary = JSON.parse(result.stdout) as { storedBytes?: number }
  return {
    cpuSeconds: memory.cpuMicros / 1e6,
    wallSeconds: (performance.now() - startedAt) / 1000,
    peakRssBytes: memory.peakRssBytes,
    storedBytes: summary.storedBytes
  }
}

function printProfile(dir: string, label: string): void {
  const file = readdirSync(dir).find(name => name.endsWith('.cpuprofile'))
  if (!file) {
    return
  }
  const { totalMs, functions } = hotFunctions(join(dir, file), 15)
  log(`${label}: ${totalMs.toFixed(0)} ms sampled on the main thread`)
  for (const f of functions) {
    log(`  ${f.selfPercent.toFixed(1).padStart(5)}%  ${f.name}  ${f.location}`)
  }
}

function folderBytes(path: string): number {
  let total = 0
  for (const entry of readdirSync(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.seg')) {
      total += statSync(join(entry.parentPath, entry.name)).size
    }
  }
  return total
}

const rows: string[] = []
const records = Math.round((sizeMiB * 1024 * 1024) / VALUE_BYTES)
const payloadGB = (records * VALUE_BYTES) / 1e9
for (const compression of producerCodecs) {
  for (const partitions of partitionCounts) {
    const topic = `cpu-${compression}-${partitions}p-${Date.now()}`
    log(`loading ${records} records into ${topic}`)
    await createTopic(cluster, topic, partitions)
    producerPerformance(bootstrapServers, topic, records, payloadFile, { compression, batchBytes: 65536, lingerMs: 10 })
    const ends = await listOffsets(
      cluster,
      Array.from({ length: partitions }, (_, partition) => ({ topic, partition })),
      'latest'
    )
    if ([...ends.values()].reduce((sum, end) => sum + Number(end), 0) !== records) {
      throw new Error(`${topic} does not hold ${records} records`)
    }
    for (const storeRecords of storeRecordsValues) {
      // Per CLI (before, after): its runs, interleaved with the other's.
      const backups: Run[][] = clis.map(() => [])
      const restores: Run[][] = clis.map(() => [])
      let stored = 0
      for (let run = 1; run <= runs; run++) {
        for (const [which, cliPath] of clis.entries()) {
          const label = clis.length > 1 ? (which === 0 ? ' (before)' : ' (after)') : ''
          const path = mkdtempSync(join(workDir, 'backup-'))
          const profileDir = profile && run === 1 ? mkdtempSync(join(workDir, 'prof-')) : undefined
          log(`${topic} store_records ${storeRecords}: backup ${run}/${runs}${label}`)
          const backup = `${backupYaml(bootstrapServers, topic, path, 'b')}${backupSection(storeRecords)}`
          backups[which]!.push(runCli(cliPath, 'backup', backup, profileDir))
          stored = folderBytes(path)
          if (profileDir) {
            printProfile(profileDir, `backup ${topic} ${storeRecords}${label}`)
          }
          const target = `${topic}-r${storeRecords}${run}${which}`
          const restoreProfileDir = profile && run === 1 ? mkdtempSync(join(workDir, 'prof-')) : undefined
          log(`${topic} store_records ${storeRecords}: restore ${run}/${runs}${label}`)
          const restore = restoreYaml(bootstrapServers, topic, target, path, 'b', [
            '  kafka_config:',
            '    batch.size: 524288'
          ])
          restores[which]!.push(runCli(cliPath, 'restore', restore, restoreProfileDir))
          if (restoreProfileDir) {
            printProfile(restoreProfileDir, `restore ${topic} ${storeRecords}${label}`)
          }
          await cluster.admin.deleteTopics({ topics: [target] }).catch(() => {})
          rmSync(path, { recursive: true, force: true })
        }
      }
      const median = (values: number[]) => percentile(values, 50)
      const each = (lists: Run[][], figure: (list: Run[]) => string) => lists.map(figure).join(' / ')
      const perGB = (list: Run[]) => (median(list.map(r => r.cpuSeconds)) / payloadGB).toFixed(1)
      const wall = (list: Run[]) => `${median(list.map(r => r.wallSeconds)).toFixed(1)} s`
      const rss = (list: Run[]) => `${(Math.max(...list.map(r => r.peakRssBytes)) / 2 ** 20).toFixed(0)} MiB`
      rows.push(
        `| ${compression}, ${partitions}p | ${storeRecords} | ${each(backups, perGB)} | ${each(restores, perGB)} | ${each(backups, wall)} | ${each(restores, wall)} | ${each(backups, rss)} | ${each(restores, rss)} | ${(stored / MB).toFixed(1)} MB |`
      )
    }
    await cluster.admin.deleteTopics({ topics: [topic] }).catch(() => {})
  }
}

process.stdout.write(
  [
    `${sizeMiB} MiB of payload per topic (${records} records of ${VALUE_BYTES} bytes), ${runs} runs each (median${cliBefore ? ', before and after in turn' : ''}); CLI: ${cli.how}${cliBefore ? `; before: ${cliBefore}` : ''}; 1-minute load average ${os.loadavg()[0]!.toFixed(1)} at the end.`,
    '',
    `| topic | store_records | backup CPU s per GB${cliBefore ? ', before / after' : ''} | restore CPU s per GB | backup wall | restore wall | backup peak RSS | restore peak RSS | stored |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    ''
  ].join('\n')
)
await cluster.close()
if (broker) {
  await stopBroker(broker)
}
