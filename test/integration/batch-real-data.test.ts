/**
 * The batch module against real data: batches written by @platformatic/kafka and by Kafka's
 * own Java producer, in every codec, fetched raw, split with CRC checks and decoded; a
 * READ_COMMITTED fetch of committed and aborted transactions filtered; and rebuilt batches
 * that the broker accepts.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, test } from 'node:test'
import { type CompressionAlgorithmValue, Producer } from '@platformatic/kafka'
import { kafkaJavaArgs } from '../../scripts/broker.ts'
import { Codec, type CodecId, type RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords, encodeBatch, type KafkaRecord, recordOffset, recordTimestamp } from '../../src/batch/records.ts'
import { coalesce, hasOffsetHoles, prepareForRestore, rewriteForRestore } from '../../src/batch/rewrite.ts'
import { splitRecordSet } from '../../src/batch/split.ts'
import { type AbortedTransaction, TransactionFilter } from '../../src/batch/transactions.ts'
import { IsolationLevel, rawFetch } from '../../src/kafka/raw-fetch.ts'
import { initProducerId, rawProduce } from '../../src/kafka/raw-produce.ts'
import { errorName } from '../../src/kafka/wire/errors.ts'
import { type AdminCluster, bootstrapServers, createTopic, testCluster, uniqueTopic } from '../helpers/kafka.ts'

const codecs: Array<{ name: CompressionAlgorithmValue & keyof typeof Codec; id: CodecId }> = [
  { name: 'none', id: Codec.none },
  { name: 'gzip', id: Codec.gzip },
  { name: 'snappy', id: Codec.snappy },
  { name: 'lz4', id: Codec.lz4 },
  { name: 'zstd', id: Codec.zstd }
]

let cluster: AdminCluster
before(() => {
  cluster = testCluster()
})
after(() => cluster.close())

interface FetchedResponse {
  fetchOffset: bigint
  batches: RecordBatchView[]
  abortedTransactions: AbortedTransaction[]
  truncatedBytes: number
}

/** A connection to the leader of `topic`'s partition 0 and an idempotent producer id from it. */
async function idempotentProducerOn(topic: string) {
  const metadata = await cluster.metadata([topic])
  const connection = await cluster.connection(metadata, metadata.topics.get(topic)!.partitions[0]!.leader)
  return { connection, identity: await initProducerId(connection) }
}

/** Fetches a partition from offset 0 to its high watermark (or last stable offset) with raw Fetch. */
async function fetchPartition(
  topic: string,
  partition: number,
  options: { isolationLevel?: 0 | 1; partitionMaxBytes?: number } = {}
): Promise<FetchedResponse[]> {
  const isolationLevel = options.isolationLevel ?? IsolationLevel.READ_UNCOMMITTED
  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)!
  const connection = await cluster.connection(metadata, topicMetadata.partitions[partition]!.leader)
  const responses: FetchedResponse[] = []
  let fetchOffset = 0n
  for (let round = 0; round < 10_000; round++) {
    const response = await rawFetch(connection, {
      maxWaitMs: 100,
      minBytes: 1,
      maxBytes: 16 * 1024 * 1024,
      isolationLevel,
      topics: [
        {
          topicId: topicMetadata.id,
          partitions: [
            {
              partition,
              fetchOffset,
              currentLeaderEpoch: -1,
              partitionMaxBytes: options.partitionMaxBytes ?? 8 * 1024 * 1024
            }
          ]
        }
      ]
    })
    const fetched = response.topics[0]!.partitions[0]!
    assert.equal(fetched.errorCode, 0, `fetch ${topic}/${partition} at ${fetchOffset}`)
    const end = isolationLevel === IsolationLevel.READ_COMMITTED ? fetched.lastStableOffset : fetched.highWatermark
    if (fetchOffset >= end) {
      return responses
    }
    const { batches, truncatedBytes } = splitRecordSet(fetched.records ?? Buffer.alloc(0), { verifyCrc: true })
    assert.ok(batches.length > 0, `fetch ${topic}/${partition} at ${fetchOffset} returned a whole batch`)
    responses.push({ fetchOffset, batches, abortedTransactions: fetched.abortedTransactions, truncatedBytes })
    fetchOffset = batches.at(-1)!.nextOffset
  }
  throw new Error('fetch loop did not end')
}

interface Expected {
  key: string | null
  value: string | null
  headers: Array<[string, string | null]>
  timestamp?: bigint
}

function decoded(batches: RecordBatchView[]): Array<Expected & { offset: bigint; timestamp: bigint }> {
  return batches.flatMap(batch =>
    decodeRecords(batch).map((record: KafkaRecord) => ({
      offset: recordOffset(batch, record),
      timestamp: recordTimestamp(batch, record),
      key: record.key?.toString() ?? null,
      value: record.value?.toString() ?? null,
      headers: record.headers.map(([k, v]): [string, string | null] => [k.toString(), v?.toString() ?? null])
    }))
  )
}

function assertSameRecords(actual: ReturnType<typeof decoded>, expected: Expected[], label: string): void {
  assert.equal(actual.length, expected.length, `${label}: record count`)
  for (const [i, record] of actual.entries()) {
    const want = expected[i]!
    assert.equal(record.offset, BigInt(i), `${label}: offset of record ${i}`)
    assert.equal(record.key, want.key, `${label}: key of record ${i}`)
    assert.equal(record.value, want.value, `${label}: value of record ${i}`)
    assert.deepEqual(record.headers, want.headers, `${label}: headers of record ${i}`)
    if (want.timestamp !== undefined) {
      assert.equal(record.timestamp, want.timestamp, `${label}: timestamp of record ${i}`)
    }
  }
}

function platformaticMessages(codec: string): Expected[] {
  return Array.from({ length: 30 }, (_, i) => ({
    key: i % 5 === 0 ? null : `key-${i}`,
    value: i % 7 === 3 ? null : i % 11 === 4 ? '' : JSON.stringify({ codec, i, pad: 'p'.repeat(i * 13) }),
    headers:
      i % 4 === 0 ? [] : [['trace', `t-${i}`], ...(i % 3 === 0 ? [['second', `s-${i}`] as [string, string]] : [])],
    // Out of order on purpose: negative timestamp deltas inside a batch.
    timestamp: 1_700_000_000_000n + BigInt((i * 7919) % 1000) - 500n
  }))
}

test('splits, CRC-checks and decodes batches @platformatic/kafka produced in every codec', async () => {
  const topic = uniqueTopic('batch-platformatic')
  await createTopic(cluster, topic, codecs.length)
  const producer = new Producer({ clientId: 'kafka-backup-test', bootstrapBrokers: [bootstrapServers()] })
  try {
    for (const [partition, codec] of codecs.entries()) {
      const messages = platformaticMessages(codec.name)
      // Three sends: several batches per partition.
      for (const chunk of [messages.slice(0, 1), messages.slice(1, 12), messages.slice(12)]) {
        await producer.send({
          compression: codec.name,
          messages: chunk.map(m => ({
            topic,
            partition,
            key: m.key === null ? undefined : Buffer.from(m.key),
            value: m.value === null ? undefined : Buffer.from(m.value),
            headers: new Map(m.headers.map(([k, v]) => [Buffer.from(k), Buffer.from(v ?? '')])),
            timestamp: m.timestamp
          }))
        })
      }
    }
  } finally {
    await producer.close()
  }
  for (const [partition, codec] of codecs.entries()) {
    const batches = (await fetchPartition(topic, partition)).flatMap(r => r.batches)
    assert.equal(batches.length, 3, `${codec.name}: one batch per send`)
    for (const batch of batches) {
      assert.equal(batch.codec, codec.id, `${codec.name}: codec bits`)
      assert.equal(batch.isCrcValid(), true)
    }
    assertSameRecords(decoded(batches), platformaticMessages(codec.name), codec.name)
  }
})

function runJava(mainClass: string, args: string[], input: string): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>()
  const child = spawn('java', kafkaJavaArgs(mainClass, args, ['-Xmx256m']), { stdio: ['pipe', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', chunk => {
    stderr += chunk
  })
  child.on('error', reject)
  child.on('close', code => (code === 0 ? resolve() : reject(new Error(`${mainClass} exited ${code}: ${stderr}`))))
  child.stdin.end(input)
  return promise
}

function javaMessages(codec: string): Expected[] {
  return Array.from({ length: 400 }, (_, i) => ({
    key: i % 9 === 0 ? null : `key-${i}`,
    value: i % 13 === 5 ? null : `${codec} value ${i} ${'v'.repeat(i % 50)}`,
    // The console producer's line format cannot say "no headers" once parse.headers is on.
    headers: [['trace', `t-${i}`], ...(i % 4 === 1 ? [['maybe', null] as [string, null]] : [])]
  }))
}

test("splits, CRC-checks and decodes batches Kafka's Java producer wrote in every codec (xerial snappy, Java lz4)", async () => {
  const topics = codecs.map(codec => uniqueTopic(`batch-java-${codec.name}`))
  await Promise.all(topics.map(topic => createTopic(cluster, topic, 1)))
  const startedAt = BigInt(Date.now())
  // One JVM per codec, in parallel: a topic each, so that one producer's order is the log's.
  await Promise.all(
    codecs.map((codec, i) => {
      const lines = javaMessages(codec.name).map(m => {
        const headers = m.headers.map(([k, v]) => `${k}:${v ?? 'NULL'}`).join(',')
        return `${headers}\t${m.key ?? 'NULL'}\t${m.value ?? 'NULL'}`
      })
      return runJava(
        'org.apache.kafka.tools.ConsoleProducer',
        [
          '--bootstrap-server',
          bootstrapServers(),
          '--topic',
          topics[i]!,
          '--compression-codec',
          codec.name,
          '--reader-property',
          'parse.key=true',
          '--reader-property',
          'parse.headers=true',
          '--reader-property',
          'null.marker=NULL',
          '--command-property',
          'linger.ms=100',
          // Small batches: several per topic, so that split sees batch edges in Java's output.
          '--command-property',
          'batch.size=4096'
        ],
        `${lines.join('\n')}\n`
      )
    })
  )
  const endedAt = BigInt(Date.now())
  for (const [i, codec] of codecs.entries()) {
    const batches = (await fetchPartition(topics[i]!, 0)).flatMap(r => r.batches)
    assert.ok(batches.length > 1, `${codec.name}: several batches (${batches.length})`)
    for (const batch of batches) {
      assert.equal(batch.codec, codec.id, `${codec.name}: codec bits`)
      if (codec.id === Codec.snappy) {
        assert.equal(batch.records.subarray(0, 8).toString('latin1'), '\x82SNAPPY\x00', 'Java writes xerial framing')
      }
    }
    const records = decoded(batches)
    assertSameRecords(records, javaMessages(codec.name), `Java ${codec.name}`)
    for (const record of records) {
      assert.ok(
        record.timestamp >= startedAt - 1000n && record.timestamp <= endedAt + 1000n,
        `create time ${record.timestamp}`
      )
    }
  }
})

test('READ_COMMITTED: the filter keeps exactly the committed and non-transactional records, whole or one batch per fetch', async () => {
  const topic = uniqueTopic('batch-txn')
  await createTopic(cluster, topic, 1)
  const brokers = [bootstrapServers()]
  const transactional = new Producer({
    clientId: 'kafka-backup-test-txn',
    bootstrapBrokers: brokers,
    transactionalId: `txn-${topic}`,
    idempotent: true,
    acks: -1
  })
  const plain = new Producer({ clientId: 'kafka-backup-test-plain', bootstrapBrokers: brokers })
  const message = (value: string) => ({ topic, partition: 0, key: Buffer.from(value), value: Buffer.from(value) })
  const expected: string[] = []
  try {
    await plain.send({ messages: [message('plain-0')] })
    expected.push('plain-0')
    for (const [round, outcome] of (['commit', 'abort', 'abort', 'commit'] as const).entries()) {
      const transaction = await transactional.beginTransaction()
      for (let i = 0; i < 3; i++) {
        await transaction.send({
          messages: [message(`${outcome}-${round}-${i}`), message(`${outcome}-${round}-${i}b`)]
        })
        // Non-transactional data lands between the transaction's batches.
        await plain.send({ messages: [message(`plain-${round}-${i}`)] })
        expected.push(...(outcome === 'commit' ? [`${outcome}-${round}-${i}`, `${outcome}-${round}-${i}b`] : []))
        expected.push(`plain-${round}-${i}`)
      }
      await (outcome === 'commit' ? transaction.commit() : transaction.abort())
    }
  } finally {
    await Promise.all([transactional.close(), plain.close()])
  }

  for (const partitionMaxBytes of [8 * 1024 * 1024, 1]) {
    const responses = await fetchPartition(topic, 0, {
      isolationLevel: IsolationLevel.READ_COMMITTED,
      partitionMaxBytes
    })
    const all = responses.flatMap(r => r.batches)
    assert.ok(
      all.some(b => b.isControl),
      'the broker sends control batches'
    )
    assert.ok(
      responses.some(r => r.abortedTransactions.length > 0),
      'and an aborted transactions list'
    )
    if (partitionMaxBytes === 1) {
      assert.ok(responses.length >= all.length, 'one whole batch per fetch (KIP-74), so aborts span fetches')
    }
    const filter = new TransactionFilter()
    const kept = responses.flatMap(r => filter.filter(r.batches, r.abortedTransactions, r.fetchOffset))
    assert.equal(
      kept.some(b => b.isControl),
      false
    )
    assert.deepEqual(
      decoded(kept).map(r => r.value),
      expected,
      `partitionMaxBytes ${partitionMaxBytes}`
    )
    assert.equal(filter.stats.controlDropped, 4)
    assert.ok(filter.stats.abortedDropped >= 2)
  }
})

test('the broker accepts rebuilt batches: real ones rewritten, holey ones re-encoded, small ones coalesced, every codec', async () => {
  const source = uniqueTopic('batch-source')
  const target = uniqueTopic('batch-target')
  await createTopic(cluster, source, 1)
  await createTopic(cluster, target, codecs.length)
  const producer = new Producer({ clientId: 'kafka-backup-test', bootstrapBrokers: [bootstrapServers()] })
  try {
    for (let i = 0; i < 4; i++) {
      await producer.send({
        compression: 'gzip',
        messages: [
          { topic: source, partition: 0, key: Buffer.from(`real-${i}`), value: Buffer.from(`real value ${i}`) }
        ]
      })
    }
  } finally {
    await producer.close()
  }
  const realBatches = (await fetchPartition(source, 0)).flatMap(r => r.batches)
  assert.equal(realBatches.length, 4)

  const { connection, identity } = await idempotentProducerOn(target)
  const now = BigInt(Date.now())
  for (const [partition, codec] of codecs.entries()) {
    const holeyRecords = [0, 3, 4, 9].map(offsetDelta => ({
      timestampDelta: BigInt(offsetDelta),
      offsetDelta,
      key: Buffer.from(`holey-${offsetDelta}`),
      value: offsetDelta === 3 ? null : Buffer.from(`value ${offsetDelta} ${codec.name} ${'z'.repeat(500)}`),
      headers: [['h', offsetDelta === 4 ? null : Buffer.from('x')] as [string, Buffer | null]]
    }))
    const holey = splitRecordSet(
      encodeBatch({ baseOffset: 1000n, baseTimestamp: now, codec: codec.id, lastOffsetDelta: 9 }, holeyRecords)
    ).batches[0]!
    assert.equal(hasOffsetHoles(holey), true)
    const coalesced = coalesce(realBatches.slice(0, 3), { codec: codec.id })
    // The idempotent producer's sequence runs on per partition by record count.
    const toProduce = [
      prepareForRestore(holey, { ...identity, baseSequence: 0 }),
      rewriteForRestore(coalesced, { ...identity, baseSequence: holey.recordCount }),
      rewriteForRestore(realBatches[3]!, { ...identity, baseSequence: holey.recordCount + coalesced.recordCount })
    ]
    for (const batch of toProduce) {
      const response = await rawProduce(connection, {
        acks: -1,
        timeoutMs: 10_000,
        topics: [{ topic: target, partitions: [{ partition, batch: batch.bytes }] }]
      })
      const result = response.topics[0]!.partitions[0]!
      assert.equal(result.errorCode, 0, `${codec.name}: broker refused (${result.errorMessage})`)
    }
    const restored = decoded((await fetchPartition(target, partition)).flatMap(r => r.batches))
    assert.deepEqual(
      restored.map(r => [r.offset, r.key, r.value]),
      [
        [0n, 'holey-0', `value 0 ${codec.name} ${'z'.repeat(500)}`],
        [1n, 'holey-3', null],
        [2n, 'holey-4', `value 4 ${codec.name} ${'z'.repeat(500)}`],
        [3n, 'holey-9', `value 9 ${codec.name} ${'z'.repeat(500)}`],
        ...[0, 1, 2, 3].map(i => [BigInt(4 + i), `real-${i}`, `real value ${i}`])
      ],
      codec.name
    )
    assert.deepEqual(restored[2]!.headers, [['h', null]])
    assert.equal(restored[3]!.timestamp, now + 9n)
  }
})

test('a batch altered after Kafka wrote it keeps a failing CRC through the rewrite, and the broker refuses it', async () => {
  const source = uniqueTopic('batch-altered-source')
  const target = uniqueTopic('batch-altered-target')
  await createTopic(cluster, source, 1)
  await createTopic(cluster, target, 1)
  const producer = new Producer({ clientId: 'kafka-backup-test', bootstrapBrokers: [bootstrapServers()] })
  try {
    for (const compression of ['none', 'lz4'] as const) {
      await producer.send({
        compression,
        messages: [{ topic: source, partition: 0, key: Buffer.from('k'), value: Buffer.from(`a value ${compression}`) }]
      })
    }
  } finally {
    await producer.close()
  }
  const batches = (await fetchPartition(source, 0)).flatMap(r => r.batches)
  assert.equal(batches.length, 2)
  const { connection, identity } = await idempotentProducerOn(target)
  for (const batch of batches) {
    // One bit of the last record flipped in memory, after the fetch's CRC check.
    batch.bytes[batch.bytes.length - 2] = batch.bytes[batch.bytes.length - 2]! ^ 0x04
    const rewritten = rewriteForRestore(batch, { ...identity, baseSequence: 0 })
    const response = await rawProduce(connection, {
      acks: -1,
      timeoutMs: 10_000,
      topics: [{ topic: target, partitions: [{ partition: 0, batch: rewritten.bytes }] }]
    })
    assert.equal(errorName(response.topics[0]!.partitions[0]!.errorCode), 'CORRUPT_MESSAGE', `codec ${batch.codec}`)
  }
})
