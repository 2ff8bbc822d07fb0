/**
 * The limits the end-to-end benchmark compares against, run on the same broker and data:
 * Kafka's own ProducerPerformance (write limit; also loads the data) and ConsumerPerformance
 * (read limit), from the Maven-resolved jars (scripts/broker.ts), and kcat consuming a topic
 * into a file (a C client doing what a backup does at its simplest).
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { closeSync, openSync, rmSync, statSync } from 'node:fs'
import { runKafkaTool } from '../scripts/broker.ts'

export interface ProducerSettings {
  compression: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd'
  batchBytes: number
  lingerMs: number
}

export interface ProducerResult {
  records: number
  recordsPerSec: number
  avgLatencyMs: number
  p99LatencyMs: number
}

/** Spreads records evenly over the partitions, so that every partition gets its share. */
export const ROUND_ROBIN = 'partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner'

/**
 * Kafka's ProducerPerformance with acks=all (as restore) and no throughput cap, sending lines of
 * `payloadFile` as values, with the producer `properties` (`name=value`) besides; returns what it
 * printed.
 */
export function runProducerPerformance(
  bootstrapServers: string,
  topic: string,
  records: number,
  payloadFile: string,
  properties: readonly string[]
): string {
  return runKafkaTool('org.apache.kafka.tools.ProducerPerformance', [
    '--bootstrap-server',
    bootstrapServers,
    '--topic',
    topic,
    '--num-records',
    String(records),
    '--throughput',
    '-1',
    '--payload-file',
    payloadFile,
    '--command-property',
    'acks=all',
    ...properties
  ])
}

/** runProducerPerformance with `settings`, checking that it sent every record and reading its figures. */
export function producerPerformance(
  bootstrapServers: string,
  topic: string,
  records: number,
  payloadFile: string,
  settings: ProducerSettings
): ProducerResult {
  const output = runProducerPerformance(bootstrapServers, topic, records, payloadFile, [
    `batch.size=${settings.batchBytes}`,
    `linger.ms=${settings.lingerMs}`,
    `compression.type=${settings.compression}`
  ])
  // The last line: "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, p50, p95, p99, p99.9".
  const match =
    /(\d+) records sent, ([\d.]+) records\/sec \([\d.]+ MB\/sec\), ([\d.]+) ms avg latency, [\d.]+ ms max latency, \d+ ms 50th, \d+ ms 95th, (\d+) ms 99th/.exec(
      output
    )
  if (!match) {
    throw new Error(`ProducerPerformance printed no summary line:\n${output.slice(-2000)}`)
  }
  const sent = Number(match[1])
  if (sent !== records) {
    throw new Error(`ProducerPerformance sent ${sent} of ${records} records to ${topic}`)
  }
  return {
    records: sent,
    recordsPerSec: Number(match[2]),
    avgLatencyMs: Number(match[3]),
    p99LatencyMs: Number(match[4])
  }
}

export interface ConsumerResult {
  records: number
  /** fetch.nMsg.sec: records over the time spent fetching, without the JVM start and the group join. */
  recordsPerSec: number
  fetchTimeMs: number
}

/** ConsumerPerformance reading `records` records of `topic` from the beginning, in a fresh group. */
export function consumerPerformance(bootstrapServers: string, topic: string, records: number): ConsumerResult {
  const output = runKafkaTool('org.apache.kafka.tools.ConsumerPerformance', [
    '--bootstrap-server',
    bootstrapServers,
    '--topic',
    topic,
    '--num-records',
    String(records),
    '--group',
    `kafka-backup-bench-${randomUUID().slice(0, 8)}`,
    '--timeout',
    '120000',
    '--hide-header'
  ])
  // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  const line = output
    .trim()
    .split('\n')
    .filter(l => l.split(',').length >= 10)
    .at(-1)
  const fields = line?.split(',').map(field => field.trim())
  if (!fields) {
    throw new Error(`ConsumerPerformance printed no result line:\n${output.slice(-2000)}`)
  }
  const consumed = Number(fields[4])
  if (consumed < records) {
    throw new Error(`ConsumerPerformance read ${consumed} of ${records} records of ${topic} before its timeout`)
  }
  return { records: consumed, recordsPerSec: Number(fields[9]), fetchTimeMs: Number(fields[7]) }
}

export interface KcatResult {
  records: number
  recordsPerSec: number
  seconds: number
  fileBytes: number
}

/** kcat consuming every partition of `topic` from the beginning to its end, values into a file. */
export function kcatToFile(
  kcat: string,
  bootstrapServers: string,
  topic: string,
  records: number,
  file: string
): KcatResult {
  const fd = openSync(file, 'w')
  const startedAt = performance.now()
  let result: ReturnType<typeof spawnSync>
  try {
    result = spawnSync(kcat, ['-C', '-b', bootstrapServers, '-t', topic, '-o', 'beginning', '-e', '-q'], {
      stdio: ['ignore', fd, 'pipe'],
      encoding: 'utf8'
    })
  } finally {
    closeSync(fd)
  }
  const seconds = (performance.now() - startedAt) / 1000
  const fileBytes = statSync(file).size
  rmSync(file, { force: true })
  if (result.status !== 0) {
    throw new Error(`kcat failed on ${topic} (exit ${result.status ?? result.signal}): ${String(result.stderr)}`)
  }
  return { records, recordsPerSec: records / seconds, seconds, fileBytes }
}
