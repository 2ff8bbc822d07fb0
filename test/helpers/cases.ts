/**
 * The data cases of the backup and restore issues, produced into real topics: shared by the
 * backup tests (backup equals the topic) and the restore tests (restored topic equals the
 * source). Timestamps lie a few minutes in the past, so the data also survives on a broker
 * with default retention (7 days) and a fast retention check, and is never "from the future"
 * for message.timestamp.after.max.ms.
 */
import { randomBytes } from 'node:crypto'
import { type CompressionAlgorithmValue, type MessageToProduce, Producer } from '@platformatic/kafka'
import type { StoredRecord } from './backup.ts'
import { type AdminCluster, bootstrapServers, createTopic } from './kafka.ts'
import { readTopicRecords } from './topic.ts'
import { until } from './wait.ts'

/** A base time for explicit timestamps: recent enough for default retention, not in the future. */
export const BASE_TIMESTAMP = BigInt(Date.now()) - 10n * 60_000n

/**
 * Idempotent, so that a produce retried under load (CI's loaded machine) never writes a record
 * twice: tests count exact records, and a duplicate from the test's own producer would look
 * like one from the tool.
 */
export function newProducer(
  options: { transactionalId?: string; bootstrapBrokers?: string[]; compression?: CompressionAlgorithmValue } = {}
): Producer {
  return new Producer({
    clientId: 'kafka-backup-test',
    bootstrapBrokers: options.bootstrapBrokers ?? [bootstrapServers()],
    idempotent: true,
    ...(options.compression ? { compression: options.compression } : {}),
    ...(options.transactionalId ? { transactionalId: options.transactionalId } : {})
  })
}

const text = (value: string) => Buffer.from(value, 'latin1')

/** Header values may be null on the wire; platformatic's types do not say so. */
function headers(entries: Array<[string, string | null]>): Map<Buffer, Buffer> {
  return new Map(entries.map(([key, value]) => [text(key), (value === null ? null : text(value)) as Buffer]))
}

export const DATA_KINDS_CODECS: CompressionAlgorithmValue[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd']

/**
 * One partition per producer codec, each with three batches mixing null keys, empty keys,
 * tombstones (null values), empty values, headers (several, a repeated key, a null value, an
 * empty value) and explicit timestamps (also out of order and older than the batch's first).
 */
export async function produceDataKinds(producer: Producer, topic: string): Promise<number> {
  let count = 0
  for (const [partition, compression] of DATA_KINDS_CODECS.entries()) {
    for (let round = 0; round < 3; round++) {
      const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = Array.from({ length: 12 }, (_, i) => ({
        topic,
        partition,
        key: i % 4 === 0 ? undefined : i % 4 === 1 ? Buffer.alloc(0) : text(`key-${round}-${i}`),
        value: i % 3 === 0 ? undefined : i % 3 === 1 ? Buffer.alloc(0) : text(`${compression} value ${round}/${i}`),
        headers:
          i % 2 === 0
            ? undefined
            : headers([
                ['trace', `${round}-${i}`],
                ['nullable', null],
                ['empty', ''],
                ['trace', 'repeated key']
              ]),
        // Out of order on purpose: every fifth record is older than the first of its batch.
        timestamp: BASE_TIMESTAMP + BigInt(round * 1000 + (i % 5 === 4 ? -500 + i : i))
      }))
      await producer.send({ compression, messages })
      count += messages.length
    }
  }
  return count
}

/** Random printable text (hex), so that compression does not shrink a large record. */
export function largeText(bytes: number): string {
  return randomBytes(Math.ceil(bytes / 2))
    .toString('hex')
    .slice(0, bytes)
}

export const LARGE_TOPIC_CONFIGS = { 'max.message.bytes': String(3 * 1024 * 1024) }

/** Small records around records of 1 MB, 1.5 MB and 2.5 MB, one batch each, uncompressed. */
export async function produceLarge(producer: Producer, topic: string): Promise<number> {
  const sizes = [100, 1024 * 1024, 200, 1536 * 1024, 2560 * 1024, 50]
  for (const [i, size] of sizes.entries()) {
    await producer.send({
      compression: 'none',
      messages: [
        {
          topic,
          partition: 0,
          key: text(`large-${i}`),
          value: text(largeText(size)),
          timestamp: BASE_TIMESTAMP + BigInt(i)
        }
      ]
    })
  }
  return sizes.length
}

/**
 * Committed and aborted transactions on two partitions, interleaved with plain writes, and a
 * second transactional producer whose aborted transaction is open while the others write.
 * Values say what they are: `plain-`, `committed-`, `aborted-`. Returns the committed count.
 * `compression` applies to every batch (default: the producers' own, none).
 */
export async function produceTransactional(
  topic: string,
  plain: Producer,
  compression?: CompressionAlgorithmValue
): Promise<number> {
  const suffix = topic.slice(-8)
  const first = newProducer({ transactionalId: `tx-a-${suffix}`, compression })
  const second = newProducer({ transactionalId: `tx-b-${suffix}`, compression })
  const codec = compression ? { compression } : {}
  let timestamp = BASE_TIMESTAMP
  const messages = (label: string, partition: number, count: number) =>
    Array.from({ length: count }, (_, i) => ({
      topic,
      partition,
      key: text(`${label}-${partition}-${i}`),
      value: text(`${label}-${partition}-${i}`),
      timestamp: timestamp++
    }))
  let committed = 0
  try {
    await plain.send({ ...codec, messages: messages('plain-1', 0, 5) })
    committed += 5

    let transaction = await first.beginTransaction()
    await transaction.send({ messages: [...messages('committed-1', 0, 5), ...messages('committed-1', 1, 5)] })
    await transaction.commit()
    committed += 10

    await plain.send({ ...codec, messages: messages('plain-2', 1, 3) })
    committed += 3

    // Aborted data interleaved with committed data from others, in both partitions.
    const open = await second.beginTransaction()
    await open.send({ messages: [...messages('aborted-open', 0, 4), ...messages('aborted-open', 1, 4)] })
    await plain.send({ ...codec, messages: messages('plain-3', 0, 2) })
    committed += 2
    transaction = await first.beginTransaction()
    await transaction.send({ messages: [...messages('aborted-1', 0, 3), ...messages('aborted-1', 1, 3)] })
    await transaction.abort()
    await plain.send({ ...codec, messages: messages('plain-4', 1, 2) })
    committed += 2
    await open.send({ messages: messages('aborted-open-late', 0, 2) })
    await open.abort()

    transaction = await first.beginTransaction()
    await transaction.send({ messages: [...messages('committed-2', 0, 3), ...messages('committed-2', 1, 1)] })
    await transaction.commit()
    committed += 4
  } finally {
    await Promise.all([first.close(), second.close()])
  }
  return committed
}

export const COMPACTED_TOPIC_CONFIGS = {
  'cleanup.policy': 'compact',
  'segment.ms': '100',
  'min.cleanable.dirty.ratio': '0.01',
  'min.compaction.lag.ms': '0'
}

/**
 * Four batches, each in its own segment (their timestamps lie further apart than segment.ms):
 *   offsets 0-9   k0..k9             -> k0 k2 k4 k6 k9 survive: a batch with holes inside
 *   offsets 10-12 k1 k3 k5           -> all overwritten: a gap between batches
 *   offsets 13-17 k1 k3 k5 k7, k8=null -> survive (the tombstone stays for delete.retention.ms)
 *   offset  18    roll               -> the active segment, never cleaned
 * Then waits until the log cleaner ran and returns the surviving records.
 */
export const COMPACTED_SURVIVING_OFFSETS = [0n, 2n, 4n, 6n, 9n, 13n, 14n, 15n, 16n, 17n, 18n]

export async function produceCompacted(
  producer: Producer,
  cluster: AdminCluster,
  topic: string
): Promise<StoredRecord[]> {
  const rounds: Array<Array<[string, string | null]>> = [
    Array.from({ length: 10 }, (_, i) => [`k${i}`, `round0-${i}`]),
    [
      ['k1', 'round1-1'],
      ['k3', 'round1-3'],
      ['k5', 'round1-5']
    ],
    [
      ['k1', 'round2-1'],
      ['k3', 'round2-3'],
      ['k5', 'round2-5'],
      ['k7', 'round2-7'],
      ['k8', null]
    ],
    [['roll', 'roll']]
  ]
  for (const [round, records] of rounds.entries()) {
    await producer.send({
      messages: records.map(([key, value], i) => ({
        topic,
        partition: 0,
        key: text(key),
        value: value === null ? undefined : text(value),
        timestamp: BASE_TIMESTAMP + BigInt(round * 10_000 + i)
      }))
    })
  }
  return waitForCompaction(cluster, topic, COMPACTED_SURVIVING_OFFSETS)
}

async function waitForCompaction(cluster: AdminCluster, topic: string, survivors: bigint[]): Promise<StoredRecord[]> {
  let records: StoredRecord[] = []
  await until(
    async () => {
      records = await readTopicRecords(cluster, topic)
      return records.map(r => r.offset).join() === survivors.join()
    },
    `the log cleaner to compact ${topic} to offsets ${survivors}`,
    { intervalMs: 200 }
  )
  return records
}

export async function createCompactedTopic(cluster: AdminCluster, topic: string): Promise<void> {
  await createTopic(cluster, topic, 1, COMPACTED_TOPIC_CONFIGS)
}
