/**
 * Cost of segment encryption (`npm run bench:encryption`), printed as the tables of
 * docs/benchmarks.md, "Encryption cost":
 *
 * 1. AES-256-GCM on one core: FrameCipher seal and open of 1 MiB frames (incompressible bytes,
 *    as compressed frames are), MB/s of frame bytes.
 * 2. Segment write and read in memory per frame codec, with and without encryption: MB/s of
 *    batch bytes and CPU (user + system, every thread of the process) per MB.
 * 3. End to end against a broker (started here unless KAFKA_BOOTSTRAP_SERVERS is set): the
 *    backup engine to the filesystem and the restore engine into a fresh topic, in process,
 *    with and without a keyring, runs alternating; CPU per MB and wall time.
 *
 * Env: BENCH_MB (data set MiB, default 64), BENCH_RUNS (runs per figure, median, default 3),
 * BENCH_BROKER=0 (skip part 3).
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import os, { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Producer } from '@platformatic/kafka'
import { stopBroker } from '../scripts/broker.ts'
import { BackupEngine } from '../src/backup/engine.ts'
import { FrameCipher, newSegmentKey } from '../src/crypto/frames.ts'
import { type KeyProvider, parseKeyring } from '../src/crypto/keys.ts'
import { RestoreEngine } from '../src/restore/engine.ts'
import type { SegmentCodecName } from '../src/segment/format.ts'
import { bufferSource, readSegmentBatches } from '../src/segment/reader.ts'
import { SegmentWriter } from '../src/segment/writer.ts'
import { FilesystemStorage } from '../src/storage/filesystem.ts'
import { testCluster } from '../test/helpers/kafka.ts'
import { benchBroker } from './broker.ts'
import { buildDataset, jsonEvent, mulberry32 } from './data.ts'

const DATA_MIB = Number(process.env.BENCH_MB ?? 64)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const MB = 1e6
const MiB = 1024 * 1024
const keys: KeyProvider = parseKeyring(`bench ${randomBytes(32).toString('hex')}`, 'bench keyring')

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

interface Measured {
  seconds: number
  cpuSeconds: number
}

async function measure(run: () => Promise<void> | void): Promise<Measured> {
  const cpu = process.cpuUsage()
  const start = performance.now()
  await run()
  const used = process.cpuUsage(cpu)
  return { seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6 }
}

async function medianOf(run: () => Promise<void> | void): Promise<Measured> {
  await run()
  const results: Measured[] = []
  for (let i = 0; i < RUNS; i++) {
    results.push(await measure(run))
  }
  return { seconds: median(results.map(r => r.seconds)), cpuSeconds: median(results.map(r => r.cpuSeconds)) }
}

console.log(
  `# ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, Node ${process.version}, load ${os.loadavg()[0]!.toFixed(1)}, BENCH_MB=${DATA_MIB}, BENCH_RUNS=${RUNS}`
)

// --- 1. the cipher alone --------------------------------------------------------------------------
const frame = randomBytes(MiB)
const cipher = new FrameCipher(randomBytes(32), 'bench', 0, 'bench')
const frames = Math.max(64, DATA_MIB)
const place = (i: number) => ({
  frame: i,
  segmentFirstOffset: 0n,
  firstOffset: BigInt(i),
  lastOffset: BigInt(i),
  uncompressedLength: MiB
})
const sealed = Array.from({ length: frames }, (_, i) => Buffer.concat(cipher.seal(frame, place(i))))
const seal = await medianOf(() => {
  for (let i = 0; i < frames; i++) {
    cipher.seal(frame, place(i))
  }
})
const open = await medianOf(() => {
  for (let i = 0; i < frames; i++) {
    cipher.open(sealed[i]!, place(i), 'bench.seg')
  }
})
console.log('\n| AES-256-GCM, 1 MiB frames, one core | MB/s |')
console.log('| --- | --- |')
console.log(`| seal (encrypt + tag) | ${((frames * MiB) / seal.seconds / MB).toFixed(0)} |`)
console.log(`| open (check tag + decrypt) | ${((frames * MiB) / open.seconds / MB).toFixed(0)} |`)

// --- 2. segment write and read -----------------------------------------------------------------------
const { batches, totalBytes } = buildDataset(DATA_MIB)

async function writeSegment(codec: SegmentCodecName, encrypted: boolean): Promise<Buffer> {
  const writer = new SegmentWriter({
    topic: 'bench',
    partition: 0,
    name: 'bench.seg',
    codec,
    frameMaxBytes: MiB,
    encryption: encrypted ? await newSegmentKey(keys, 'bench', 0) : undefined
  })
  const chunks: Buffer[] = []
  const drained = pipeline(
    writer.readable,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      }
    })
  )
  for (const batch of batches) {
    await writer.append(batch)
  }
  await writer.finish()
  await drained
  return Buffer.concat(chunks)
}

console.log(
  '\n| frame codec | write MB/s plain / encrypted | write CPU ms per MB plain / encrypted | read MB/s plain / encrypted | read CPU ms per MB plain / encrypted | stored bytes plain / encrypted |'
)
console.log('| --- | --- | --- | --- | --- | --- |')
for (const codec of ['zstd', 'lz4', 'none'] as const) {
  const row: Record<'plain' | 'encrypted', { write: Measured; read: Measured; size: number }> = {} as never
  for (const mode of ['plain', 'encrypted'] as const) {
    const bytes = await writeSegment(codec, mode === 'encrypted')
    const write = await medianOf(async () => {
      await writeSegment(codec, mode === 'encrypted')
    })
    const read = await medianOf(async () => {
      for await (const _ of readSegmentBatches(bufferSource(bytes), 'bench.seg', { keys })) {
        // every batch is handed over, as a restore consumes them
      }
    })
    row[mode] = { write, read, size: bytes.length }
  }
  const mbps = (m: Measured) => (totalBytes / m.seconds / MB).toFixed(0)
  const cpu = (m: Measured) => ((m.cpuSeconds * 1000) / (totalBytes / MB)).toFixed(2)
  const { plain, encrypted } = row
  console.log(
    `| ${codec} | ${mbps(plain.write)} / ${mbps(encrypted.write)} | ${cpu(plain.write)} / ${cpu(encrypted.write)} | ` +
      `${mbps(plain.read)} / ${mbps(encrypted.read)} | ${cpu(plain.read)} / ${cpu(encrypted.read)} | ${plain.size} / ${encrypted.size} (+${encrypted.size - plain.size}) |`
  )
}

// --- 3. end to end ----------------------------------------------------------------------------------
if (process.env.BENCH_BROKER !== '0') {
  const { bootstrapServers, broker } = await benchBroker('bench-encryption')
  const cluster = testCluster(bootstrapServers.split(','))
  const topic = `bench-encryption-${Date.now()}`
  const partitions = 4
  await cluster.admin.createTopics({ topics: [topic], partitions, replicas: 1 })
  const producer = new Producer({ clientId: 'kafka-backup-bench', bootstrapBrokers: bootstrapServers.split(',') })
  const random = mulberry32(7)
  let loaded = 0
  for (let offset = 0; loaded < DATA_MIB * MiB; offset += 500) {
    const messages = Array.from({ length: 500 }, (_, i) => {
      const value = jsonEvent(random, offset + i, 1024)
      loaded += value.length
      return { topic, partition: i % partitions, key: Buffer.from(`user-${offset + i}`), value }
    })
    await producer.send({ messages })
  }
  await producer.close()

  const root = mkdtempSync(join(tmpdir(), 'kb-bench-encryption-'))
  const results: Record<'plain' | 'encrypted', { backup: Measured[]; restore: Measured[] }> = {
    plain: { backup: [], restore: [] },
    encrypted: { backup: [], restore: [] }
  }
  for (let run = 0; run <= RUNS; run++) {
    for (const mode of ['plain', 'encrypted'] as const) {
      const storage = new FilesystemStorage({ path: join(root, `${mode}-${run}`) })
      const withKeys = mode === 'encrypted' ? { keys } : {}
      const backup = await measure(async () => {
        await new BackupEngine({
          backupId: 'bench',
          storage,
          cluster,
          bootstrapServers: bootstrapServers.split(','),
          topics: { include: [topic], exclude: [] },
          includeInternalTopics: false,
          compression: 'zstd',
          compressionLevel: 3,
          frameMaxBytes: MiB,
          // The producer here does not compress, so either choice stores the same bytes.
          storeRecords: 'as_fetched',
          segmentMaxBytes: 128 * MiB,
          segmentMaxIntervalMs: 60_000,
          checkpointIntervalMs: 5000,
          continuous: false,
          startOffset: 'earliest',
          maxBytesInFlight: 64 * MiB,
          fetch: { maxWaitMs: 500, minBytes: 1, maxBytes: 50 * MiB, partitionMaxBytes: 8 * MiB },
          ...withKeys
        }).run()
      })
      const restore = await measure(async () => {
        await new RestoreEngine({
          backupId: 'bench',
          storage,
          cluster,
          bootstrapServers: bootstrapServers.split(','),
          topics: { include: ['*'], exclude: [] },
          sourcePartitions: {},
          topicMapping: { [topic]: `${topic}-${mode}-${run}` },
          partitionMapping: {},
          window: {},
          createTopics: true,
          defaultReplicationFactor: 1,
          dryRun: false,
          maxConcurrentPartitions: 8,
          resetConsumerOffsets: false,
          consumerGroups: [],
          allowNonEmptyTarget: false,
          allowLogAppendTimeTarget: false,
          maxInFlightPerPartition: 5,
          coalesceMaxBytes: 512 * 1024,
          maxRequestBytes: 8 * MiB,
          checkpointIntervalMs: 5000,
          ...withKeys
        }).run()
      })
      await storage.close()
      // The first round warms the JIT and the broker's page cache; it is not counted.
      if (run > 0) {
        results[mode].backup.push(backup)
        results[mode].restore.push(restore)
      }
    }
  }
  rmSync(root, { recursive: true, force: true })
  await cluster.close()
  if (broker) {
    await stopBroker(broker)
  }
  const cpuPerMB = (ms: Measured[]) => ((median(ms.map(m => m.cpuSeconds)) * 1000) / (loaded / MB)).toFixed(2)
  const wall = (ms: Measured[]) => median(ms.map(m => m.seconds)).toFixed(2)
  console.log(
    `\n| end to end, ${(loaded / MB).toFixed(0)} MB of 1 KiB JSON values, ${partitions} partitions, zstd 3 | plain | encrypted |`
  )
  console.log('| --- | --- | --- |')
  console.log(`| backup CPU ms per MB | ${cpuPerMB(results.plain.backup)} | ${cpuPerMB(results.encrypted.backup)} |`)
  console.log(`| backup wall s | ${wall(results.plain.backup)} | ${wall(results.encrypted.backup)} |`)
  console.log(`| restore CPU ms per MB | ${cpuPerMB(results.plain.restore)} | ${cpuPerMB(results.encrypted.restore)} |`)
  console.log(`| restore wall s | ${wall(results.plain.restore)} | ${wall(results.encrypted.restore)} |`)
}
