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
