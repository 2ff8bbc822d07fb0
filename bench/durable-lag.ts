/**
 * Continuous backup: how long after the broker appends a record it is durable in the backup
 * (in a segment that the partition's index lists, so a restore would read it).
 *
 *   node bench/durable-lag.ts
 *
 * A topic with message.timestamp.type=LogAppendTime gets every batch stamped with the broker's
 * append time. ProducerPerformance writes to it at a steady rate while a continuous backup
 * (the engine in this process, options from a YAML config as the CLI builds them) follows it;
 * the partition indexes are polled every 20 ms, and a record is durable at the first poll whose
 * index has moved past its offset. Lag = that time - its append time (same host clock).
 *
 * Env (defaults in brackets):
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_RATE [500]          records per second (1 KiB values)
 *   BENCH_SECONDS [60]        how long the producer writes
 *   BENCH_PARTITIONS [1]
 *   BENCH_BACKUP_YAML ['']    extra lines for the `backup:` section, e.g. "checkpoint_interval_secs: 1";
 *                             a list separated by `;` runs each (an empty item = the defaults)
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { kafkaJavaArgs, stopBroker } from '../scripts/broker.ts'
import { BackupEngine } from '../src/backup/engine.ts'
import { readPartitionIndex } from '../src/catalog/manifest.ts'
import { parseConfig } from '../src/config/load.ts'
import { connectCluster } from '../src/kafka/connect.ts'
import { backupOptionsFromConfig } from '../src/options.ts'
import { readPartitionBatches } from '../src/restore/source.ts'
import { FilesystemStorage } from '../src/storage/filesystem.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { benchBroker } from './broker.ts'
import { backupYaml } from './configs.ts'
import { writePayloadFile } from './data.ts'
import { percentile } from './stats.ts'

const rate = Number(process.env.BENCH_RATE ?? 500)
const seconds = Number(process.env.BENCH_SECONDS ?? 60)
const partitions = Number(process.env.BENCH_PARTITIONS ?? 1)
const variants = (process.env.BENCH_BACKUP_YAML ?? '').split(';').map(item => item.trim())

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-lag-'))
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 20_000, 1024)
const { bootstrapServers, broker } = await benchBroker('bench-lag')
const cluster = testCluster(bootstrapServers.split(','))

function producer(topic: string): Promise<void> {
  const args = kafkaJavaArgs(
    'org.apache.kafka.tools.ProducerPerformance',
    [
      '--bootstrap-server',
      bootstrapServers!,
      '--topic',
      topic,
      '--num-records',
      String(rate * seconds),
      '--throughput',
      String(rate),
      '--payload-file',
      payloadFile,
      '--command-property',
      'acks=all',
      'linger.ms=5'
    ],
    ['-Xmx512m']
  )
  const child = spawn('java', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  return new Promise((resolve, reject) =>
    child.on('exit', code => (code === 0 ? resolve() : reject(new Error(`ProducerPerformance failed: ${stderr}`))))
  )
}

const rows: string[] = []
for (const extra of variants) {
  const topic = `lag-${Date.now()}`
  await cluster.admin.createTopics({
    topics: [topic],
    partitions,
    replicas: 1,
    configs: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }]
  })
  const path = mkdtempSync(join(workDir, 'backup-'))
  const yaml = backupYaml(bootstrapServers, topic, path, 'lag', [
    'backup:',
    '  continuous: true',
    ...(extra ? [`  ${extra}`] : [])
  ])
  const config = parseConfig(yaml, 'bench.yaml')
  if (config.mode !== 'backup') {
    throw new Error('unreachable')
  }
  const storage = new FilesystemStorage({ path })
  const source = connectCluster(config.source)
  const stop = new AbortController()
  const engine = new BackupEngine({
    ...backupOptionsFromConfig(config, { storage, cluster: source }),
    signal: stop.signal,
    metadataRefreshIntervalMs: 1000
  })
  log(`${topic}: continuous backup (${extra || 'defaults'}), ${rate} records/s for ${seconds} s`)
  const running = engine.run()
  // Durable through offset (exclusive) per partition, with the first time each value was seen.
  const durable: Array<Array<{ at: number; nextOffset: bigint }>> = Array.from({ length: partitions }, () => [])
  let polling = true
  const poller = (async () => {
    while (polling) {
      for (let partition = 0; partition < partitions; partition++) {
        const index = await readPartitionIndex(storage, 'lag', topic, partition).catch(() => undefined)
        const seen = durable[partition]!
        const nextOffset = index ? BigInt(index.nextOffset) : 0n
        if (index && index.segments.length > 0 && nextOffset > (seen.at(-1)?.nextOffset ?? -1n)) {
          seen.push({ at: Date.now(), nextOffset })
        }
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()
  await producer(topic)
  const total = BigInt(rate * seconds)
  const produced = () => durable.reduce((sum, seen) => sum + (seen.at(-1)?.nextOffset ?? 0n), 0n)
  const deadline = Date.now() + 10 * 60_000
  while (produced() < total && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  polling = false
  await poller
  stop.abort()
  await running
  const lags: number[] = []
  for (let partition = 0; partition < partitions; partition++) {
    const index = await readPartitionIndex(storage, 'lag', topic, partition)
    const seen = durable[partition]!
    let next = 0
    for await (const batch of readPartitionBatches(storage, 'lag', index!)) {
      while (next < seen.length && seen[next]!.nextOffset <= batch.lastOffset) {
        next++
      }
      if (next === seen.length) {
        break
      }
      // LogAppendTime: maxTimestamp is when the broker appended every record of the batch.
      const lag = seen[next]!.at - Number(batch.maxTimestamp)
      for (let i = 0; i < batch.recordCount; i++) {
        lags.push(lag)
      }
    }
  }
  await source.close()
  await storage.close()
  await cluster.admin.deleteTopics({ topics: [topic] }).catch(() => {})
  const ms = (p: number) => `${(percentile(lags, p) / 1000).toFixed(2)} s`
  rows.push(
    `| ${extra || 'defaults'} | ${lags.length} | ${ms(50)} | ${ms(99)} | ${(Math.max(...lags) / 1000).toFixed(2)} s |`
  )
}

process.stdout.write(
  [
    `${partitions} partition(s), ${rate} records/s of 1 KiB for ${seconds} s (ProducerPerformance, acks=all, linger.ms 5); 1-minute load average ${os.loadavg()[0]!.toFixed(1)} at the end.`,
    '',
    '| backup settings | records | append → durable p50 | p99 | max |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    ''
  ].join('\n')
)
await cluster.close()
if (broker) {
  await stopBroker(broker)
}
