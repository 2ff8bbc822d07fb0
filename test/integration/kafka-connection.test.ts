import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type CompressionAlgorithmValue, Reader, readRecordsBatches } from '@platformatic/kafka'
import { IsolationLevel, rawFetch } from '../../src/kafka/raw-fetch.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'

const codecs: Array<{ name: CompressionAlgorithmValue; id: number }> = [
  { name: 'none', id: 0 },
  { name: 'gzip', id: 1 },
  { name: 'snappy', id: 2 },
  { name: 'lz4', id: 3 },
  { name: 'zstd', id: 4 }
]

const { cluster, producer } = clusterAndProducer()

test('raw Fetch returns the record batches each codec produced, with keys, values and headers', async () => {
  const topic = uniqueTopic('connection')
  await createTopic(cluster, topic, codecs.length)
  for (const [partition, codec] of codecs.entries()) {
    await producer.send({
      compression: codec.name,
      messages: Array.from({ length: 10 }, (_, i) => ({
        topic,
        partition,
        key: i === 0 ? undefined : Buffer.from(`key-${i}`),
        value: Buffer.from(JSON.stringify({ codec: codec.name, i })),
        headers: new Map([[Buffer.from('trace'), Buffer.from(`t-${i}`)]]),
        timestamp: 1_700_000_000_000n + BigInt(i)
      }))
    })
  }

  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)!
  const leader = topicMetadata.partitions[0]!.leader
  const response = await rawFetch(await cluster.connection(metadata, leader), {
    maxWaitMs: 100,
    minBytes: 1,
    maxBytes: 1024 * 1024,
    isolationLevel: IsolationLevel.READ_COMMITTED,
    topics: [
      {
        topicId: topicMetadata.id,
        partitions: codecs.map((_, partition) => ({
          partition,
          fetchOffset: 0n,
          currentLeaderEpoch: -1,
          partitionMaxBytes: 1024 * 1024
        }))
      }
    ]
  })

  assert.equal(response.errorCode, 0)
  const partitions = response.topics[0]!.partitions.sort((a, b) => a.partition - b.partition)
  assert.equal(partitions.length, codecs.length)
  for (const [partition, codec] of codecs.entries()) {
    const fetched = partitions[partition]!
    assert.equal(fetched.errorCode, 0)
    assert.equal(fetched.highWatermark, 10n)
    assert.ok(Buffer.isBuffer(fetched.records), `partition ${partition} returned raw bytes`)
    const batches = readRecordsBatches(Reader.from(fetched.records))
    assert.equal(batches.length, 1, `${codec.name}: one batch`)
    assert.equal(batches[0]!.attributes & 0x07, codec.id, `${codec.name}: codec bits of the raw batch`)
    const records = batches[0]!.records
    assert.equal(records.length, 10)
    for (const [i, record] of records.entries()) {
      assert.deepEqual(record.key, i === 0 ? null : Buffer.from(`key-${i}`))
      assert.deepEqual(JSON.parse(record.value!.toString()), { codec: codec.name, i })
      assert.deepEqual(
        record.headers.map(([k, v]) => [k?.toString(), v?.toString()]),
        [['trace', `t-${i}`]]
      )
      assert.equal(batches[0]!.firstTimestamp + record.timestampDelta, 1_700_000_000_000n + BigInt(i))
    }
  }
})

test('a Fetch response of megabytes read straight into its buffer holds the same batches as small responses copied from the read buffer', async () => {
  const topic = uniqueTopic('connection-large')
  await createTopic(cluster, topic, 1)
  // Over 5 MiB of distinct values in batches of up to 8 KiB, so a misplaced read shows as other bytes.
  for (let at = 0; at < 3072; at += 4) {
    await producer.send({
      messages: Array.from({ length: 4 }, (_, i) => ({
        topic,
        partition: 0,
        value: Buffer.from(`${at + i} `.repeat(500).slice(0, 2048))
      }))
    })
  }
  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)!
  const connection = await cluster.connection(metadata, topicMetadata.partitions[0]!.leader)
  const fetchFrom = async (fetchOffset: bigint, maxBytes: number) => {
    const response = await rawFetch(
      connection,
      {
        maxWaitMs: 100,
        minBytes: 1,
        maxBytes,
        isolationLevel: IsolationLevel.READ_COMMITTED,
        topics: [
          {
            topicId: topicMetadata.id,
            partitions: [{ partition: 0, fetchOffset, currentLeaderEpoch: -1, partitionMaxBytes: maxBytes }]
          }
        ]
      },
      { pooledResponse: maxBytes > 16 * 1024 }
    )
    const fetched = response.topics[0]!.partitions[0]!
    assert.equal(fetched.errorCode, 0)
    return Buffer.from(fetched.records ?? Buffer.alloc(0))
  }
  // The whole log in one response: all but its last kilobytes arrive by direct reads.
  const large = await fetchFrom(0n, 16 * 1024 * 1024)
  assert.ok(large.length > 5 * 1024 * 1024, `one response of ${large.length} bytes`)
  // The same log in responses of one 8 KiB batch each, under the 16 KiB of a direct read: every
  // byte copied out of the read buffer.
  const small: Buffer[] = []
  for (let offset = 0n; offset < 3072n; ) {
    const records = await fetchFrom(offset, 8 * 1024)
    const batches = readRecordsBatches(Reader.from(records))
    assert.ok(batches.length > 0, `a batch at offset ${offset}`)
    const last = batches.at(-1)!
    small.push(records.subarray(0, sizeOfBatches(records)))
    offset = last.firstOffset + BigInt(last.lastOffsetDelta) + 1n
  }
  assert.ok(Buffer.concat(small).equals(large), 'the large response holds exactly the small responses bytes')
})

/** Bytes of the whole batches at the start of a record set (a fetch may end in a partial one). */
function sizeOfBatches(records: Buffer): number {
  let at = 0
  while (at + 12 <= records.length) {
    const size = 12 + records.readInt32BE(at + 8)
    if (at + size > records.length) {
      break
    }
    at += size
  }
  return at
}
