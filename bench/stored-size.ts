/**
 * Goal 4 of the benchmarks (stored bytes no larger than OSO's on the same data): one topic per
 * producer codec (none, gzip, snappy, lz4, zstd) and data set, backed up by our CLI at several
 * frame sizes (`backup.frame_max_bytes`) and by OSO's engine (bench/oso.ts), all with zstd-3;
 * prints the bytes each backup folder holds (segments and catalogue).
 *
 * Data sets, one partition each:
 * - keyed events: 1 KiB JSON events with keys (bench/data.ts, every value different), sent by
 *   @platformatic/kafka's producer in batches of BENCH_RECORDS_PER_BATCH records;
 * - payload lines: what the end-to-end benchmark loads, ProducerPerformance sending one of 20,000
 *   distinct 1 KiB lines per record (no keys), so a value recurs about every 20 MB.
 *
 * `node bench/stored-size.ts`. Env: KAFKA_BOOTSTRAP_SERVERS (else a broker is started),
 * BENCH_MB [32] per topic, BENCH_FRAMES [1,4] frame sizes in MiB, BENCH_CODECS
 * [none,gzip,snappy,lz4,zstd], BENCH_RECORDS_PER_BATCH [50], OSO_BIN or BENCH_OSO=0 (bench/oso.ts).
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Admin, type CompressionAlgorithmValue, Producer } from '@platformatic/kafka'
import { stopBroker } from '../scripts/broker.ts'
import { producerPerformance } from './baselines.ts'
import { benchBroker } from './broker.ts'
import { buildCli } from './build-cli.ts'
import { backupYaml } from './configs.ts'
import { jsonEvent, mulberry32, writePayloadFile } from './data.ts'
import { ensureOsoDriver, osoBackupYaml, runOso, storedBytes } from './oso.ts'
import { markdownTable } from './stats.ts'

const totalMiB = Number(process.env.BENCH_MB ?? 32)
const frameMiBs = (process.env.BENCH_FRAMES ?? '1,4').split(',').map(Number)
const codecs = (process.env.BENCH_CODECS ?? 'none,gzip,snappy,lz4,zstd').split(',') as CompressionAlgorithmValue[]
const recordsPerBatch = Number(process.env.BENCH_RECORDS_PER_BATCH ?? 50)
const records = totalMiB * 1024
const MB = 1e6

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const loadAtStart = os.loadavg()[0]!
const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-stored-'))
const cli = buildCli('bench-stored', log)
const oso = ensureOsoDriver(log)
const { bootstrapServers, broker } = await benchBroker('bench-stored')
const admin = new Admin({ bootstrapBrokers: [bootstrapServers], clientId: 'kafka-backup-bench' })

async function produceKeyedEvents(topic: string, compression: CompressionAlgorithmValue): Promise<void> {
  const producer = new Producer({ clientId: 'kafka-backup-bench', bootstrapBrokers: [bootstrapServers], compression })
  const random = mulberry32(42)
  try {
    for (let offset = 0; offset < records; offset += recordsPerBatch) {
      await producer.send({
        messages: Array.from({ length: Math.min(recordsPerBatch, records - offset) }, (_, i) => ({
          topic,
          partition: 0,
          key: Buffer.from(`user-${Math.floor(random() * 100000)}`),
          value: jsonEvent(random, offset + i, 1024),
          timestamp: BigInt(Date.now())
        }))
      })
    }
  } finally {
    await producer.close()
  }
}

/** Bytes our CLI stores for `topic` with frames of `frameMiB`. */
function oursStored(topic: string, frameMiB: number): number {
  const path = join(workDir, `ours-${topic}-${frameMiB}`)
  const config = join(workDir, `ours-${topic}-${frameMiB}.yaml`)
  writeFileSync(
    config,
    backupYaml(bootstrapServers, topic, path, 'stored', [
      'backup:',
      '  compression: zstd',
      '  compression_level: 3',
      `  frame_max_bytes: ${frameMiB * 1024 * 1024}`
    ])
  )
  const run = spawnSync(
    process.execPath,
    [cli.cliPath, '--log-level', 'warn', 'backup', '--config', config, '--json'],
    {
      encoding: 'utf8'
    }
  )
  if (run.status !== 0) {
    throw new Error(`backup of ${topic} failed (exit ${run.status}):\n${run.stderr}`)
  }
  const summary = JSON.parse(run.stdout) as { records: number }
  if (summary.records !== records) {
    throw new Error(`backup of ${topic} holds ${summary.records} of ${records} records`)
  }
  return storedBytes(path)
}

async function osoStored(topic: string): Promise<number | undefined> {
  if (oso.path === undefined) {
    return undefined
  }
  const path = join(workDir, `oso-${topic}`)
  mkdirSync(path, { recursive: true })
  const config = join(workDir, `oso-${topic}.yaml`)
  writeFileSync(config, osoBackupYaml(bootstrapServers, topic, path, 'stored'))
  await runOso(oso.path, config)
  return storedBytes(path)
}

const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 20_000)
const token = randomUUID().slice(0, 6)
const rows: string[][] = []
const topics: string[] = []
try {
  for (const data of ['keyed events', 'payload lines'] as const) {
    for (const codec of codecs) {
      const topic = `stored-${data === 'keyed events' ? 'keyed' : 'lines'}-${codec}-${token}`
      topics.push(topic)
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 })
      log(`loading ${records} records into ${topic}`)
      if (data === 'keyed events') {
        await produceKeyedEvents(topic, codec)
      } else {
        producerPerformance(bootstrapServers, topic, records, payloadFile, {
          compression: codec,
          batchBytes: 65536,
          lingerMs: 10
        })
      }
      const ours = frameMiBs.map(frameMiB => oursStored(topic, frameMiB))
      const theirs = await osoStored(topic)
      const cells = ours.map(bytes => {
        const versus =
          theirs === undefined ? '' : ` (${bytes <= theirs ? '' : '+'}${((bytes / theirs - 1) * 100).toFixed(1)}%)`
        return `${(bytes / MB).toFixed(2)} MB${versus}`
      })
      rows.push([data, codec, ...cells, theirs === undefined ? '-' : `${(theirs / MB).toFixed(2)} MB`])
      log(rows.at(-1)!.join(' | '))
    }
  }
  await admin.deleteTopics({ topics }).catch(error => log(`could not delete the topics: ${error}`))
} finally {
  await admin.close()
  if (broker) {
    await stopBroker(broker)
  }
  rmSync(workDir, { recursive: true, force: true })
}

process.stdout.write(
  [
    `Data: one partition per topic, ${records} records of 1 KiB (${totalMiB} MiB of values); 1-minute load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at the end; OSO: ${oso.path === undefined ? `not run (${oso.reason})` : oso.version}.`,
    '',
    ...markdownTable(
      ['data', 'producer codec', ...frameMiBs.map(frameMiB => `ours, ${frameMiB} MiB frames (vs OSO)`), 'OSO'],
      rows
    ),
    ''
  ].join('\n')
)
