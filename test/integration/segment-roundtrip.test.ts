import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type CompressionAlgorithmValue, Reader, readRecordsBatches } from '@platformatic/kafka'
import type { RecordBatchView } from '../../src/batch/header.ts'
import { splitRecordSet } from '../../src/batch/split.ts'
import { IsolationLevel, rawFetch } from '../../src/kafka/raw-fetch.ts'
import type { SegmentCodecName } from '../../src/segment/format.ts'
import { bufferSource, readSegmentBatches, readSegmentIndex, validateSegment } from '../../src/segment/reader.ts'
import { SegmentWriter } from '../../src/segment/writer.ts'
import { bootstrapServers, createTopic, runKafkaTool, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'

const kafkaCodecs: CompressionAlgorithmValue[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd']
const segmentCodecs: SegmentCodecName[] = ['zstd', 'lz4', 'gzip', 'none']
const SENDS_PER_PARTITION = 6
const RECORDS_PER_SEND = 8

const { cluster, producer } = clusterAndProducer()

interface Produced {
  key: Buffer | null
  value: Buffer | null
  headers: Array<[string, string]>
  timestamp: bigint
}

function message(partition: number, send: number, i: number): Produced {
  const n = send * RECORDS_PER_SEND + i
  return {
    key: n % 4 === 0 ? null : Buffer.from(`key-${partition}-${n}`),
    value: n % 7 === 3 ? null : Buffer.from(JSON.stringify({ partition, n, pad: 'x'.repeat(n * 13) })),
    headers: n % 2 === 0 ? [['trace', `t-${n}`]] : [],
    timestamp: 1_700_000_000_000n + BigInt(n)
  }
}

async function fetchAll(
  topic: string,
  partitions: number,
  expectedEnd = BigInt(SENDS_PER_PARTITION * RECORDS_PER_SEND)
): Promise<Map<number, RecordBatchView[]>> {
  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)!
  const leader = topicMetadata.partitions[0]!.leader
  const connection = await cluster.connection(metadata, leader)
  const result = new Map<number, RecordBatchView[]>()
  const fetchOffsets = new Map(Array.from({ length: partitions }, (_, p) => [p, 0n]))
  for (let attempt = 0; attempt < 50 && [...fetchOffsets.values()].some(o => o < expectedEnd); attempt++) {
    const response = await rawFetch(connection, {
      maxWaitMs: 100,
      minBytes: 1,
      maxBytes: 4 * 1024 * 1024,
      isolationLevel: IsolationLevel.READ_COMMITTED,
      topics: [
        {
          topicId: topicMetadata.id,
          partitions: [...fetchOffsets].map(([partition, fetchOffset]) => ({
            partition,
            fetchOffset,
            currentLeaderEpoch: -1,
            partitionMaxBytes: 1024 * 1024
          }))
        }
      ]
    })
    assert.equal(response.errorCode, 0)
    for (const fetched of response.topics[0]!.partitions) {
      assert.equal(fetched.errorCode, 0)
      if (!fetched.records) {
        continue
      }
      const { batches } = splitRecordSet(fetched.records, { verifyCrc: true })
      const kept = batches.filter(b => b.lastOffset >= fetchOffsets.get(fetched.partition)!)
      // Copies: the segment test must not depend on the socket buffer staying untouched.
      const list = result.get(fetched.partition) ?? []
      list.push(...kept.map(b => new (b.constructor as typeof RecordBatchView)(Buffer.from(b.bytes))))
      result.set(fetched.partition, list)
      if (kept.length > 0) {
        fetchOffsets.set(fetched.partition, kept.at(-1)!.nextOffset)
      }
    }
  }
  return result
}

/** Writes `batches` to a segment of `segmentCodec` in frames of at most `frameMaxBytes`. */
async function writeSegment(
  topic: string,
  partition: number,
  segmentCodec: SegmentCodecName,
  batches: RecordBatchView[],
  frameMaxBytes: number
) {
  const name = `${topic}/${partition}/${segmentCodec}.seg`
  const writer = new SegmentWriter({ topic, partition, name, codec: segmentCodec, frameMaxBytes })
  const chunks: Buffer[] = []
  const consumed = (async () => {
    for await (const chunk of writer.readable) {
      chunks.push(chunk as Buffer)
    }
  })()
  for (const batch of batches) {
    await writer.append(batch)
  }
  const summary = await writer.finish()
  await consumed
  return { name, summary, source: bufferSource(Buffer.concat(chunks)) }
}

/** Writes `batches` to a segment with small frames and reads them back through the index. */
async function roundTrip(
  topic: string,
  partition: number,
  segmentCodec: SegmentCodecName,
  batches: RecordBatchView[]
): Promise<{ read: RecordBatchView[]; frames: number }> {
  const { name, source } = await writeSegment(topic, partition, segmentCodec, batches, 64 * 1024)
  const validation = await validateSegment(source, name, { deep: true })
  const read: RecordBatchView[] = []
  for await (const batch of readSegmentBatches(source, name, { verifyBatchCrc: true })) {
    read.push(batch)
  }
  return { read, frames: validation.frameCount }
}

test('batches written by the Java producer with every codec survive fetch -> split -> segment -> read byte for byte', async () => {
  const records = 3000
  for (const compression of kafkaCodecs) {
    const topic = uniqueTopic(`segment-java-${compression}`)
    await createTopic(cluster, topic, 1)
    runKafkaTool('org.apache.kafka.tools.ProducerPerformance', [
      '--topic',
      topic,
      '--num-records',
      String(records),
      '--throughput',
      '-1',
      '--record-size',
      '300',
      '--producer-props',
      `bootstrap.servers=${bootstrapServers()}`,
      `compression.type=${compression}`,
      'linger.ms=20',
      'batch.size=32768',
      'acks=all'
    ])
    const batches = (await fetchAll(topic, 1, BigInt(records))).get(0) ?? []
    assert.ok(batches.length > 1, `${compression}: several batches`)
    assert.ok(
      batches.every(b => b.codec === kafkaCodecs.indexOf(compression)),
      `${compression}: the Java producer's codec`
    )
    assert.equal(
      batches.reduce((sum, b) => sum + b.recordCount, 0),
      records
    )
    for (const segmentCodec of ['zstd', 'lz4'] as const) {
      const { read, frames } = await roundTrip(topic, 0, segmentCodec, batches)
      assert.ok(frames > 1, `${compression}/${segmentCodec}: several frames`)
      assert.deepEqual(
        read.map(b => b.bytes),
        batches.map(b => b.bytes),
        `${compression}/${segmentCodec}: byte for byte`
      )
      const decoded = readRecordsBatches(Reader.from(Buffer.concat(read.map(b => b.bytes))))
      assert.equal(
        decoded.reduce((sum, b) => sum + b.records.length, 0),
        records
      )
    }
  }
})

test('batches produced with every Kafka codec survive fetch -> split -> segment -> read byte for byte', async () => {
  const topic = uniqueTopic('segment-roundtrip')
  await createTopic(cluster, topic, kafkaCodecs.length)
  for (let send = 0; send < SENDS_PER_PARTITION; send++) {
    for (const [partition, compression] of kafkaCodecs.entries()) {
      await producer.send({
        compression,
        messages: Array.from({ length: RECORDS_PER_SEND }, (_, i) => {
          const m = message(partition, send, i)
          return {
            topic,
            partition,
            key: m.key ?? undefined,
            value: m.value as Buffer,
            headers: new Map(m.headers.map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
            timestamp: m.timestamp
          }
        })
      })
    }
  }

  const fetched = await fetchAll(topic, kafkaCodecs.length)
  for (const [partition, kafkaCodec] of kafkaCodecs.entries()) {
    const batches = fetched.get(partition) ?? []
    assert.equal(batches.length, SENDS_PER_PARTITION, `${kafkaCodec}: one batch per send`)
    assert.ok(
      batches.every(b => b.codec === partition),
      `${kafkaCodec}: the broker kept the producer's codec`
    )
    for (const segmentCodec of segmentCodecs) {
      // Small frames: several frames per segment, some batches alone in theirs.
      const { name, summary, source } = await writeSegment(topic, partition, segmentCodec, batches, 1024)

      const index = await readSegmentIndex(source, name)
      assert.ok(index.footer.frames.length > 1, `${kafkaCodec}/${segmentCodec}: several frames`)
      assert.equal(summary.firstOffset, 0n)
      assert.equal(summary.nextOffset, BigInt(SENDS_PER_PARTITION * RECORDS_PER_SEND))
      assert.equal(summary.recordCount, SENDS_PER_PARTITION * RECORDS_PER_SEND)
      assert.equal(summary.minTimestamp, 1_700_000_000_000n)
      assert.equal(summary.maxTimestamp, 1_700_000_000_000n + BigInt(SENDS_PER_PARTITION * RECORDS_PER_SEND - 1))
      await validateSegment(source, name, { deep: true })

      const read: RecordBatchView[] = []
      for await (const batch of readSegmentBatches(source, name, { verifyBatchCrc: true })) {
        read.push(batch)
      }
      assert.deepEqual(
        read.map(b => b.bytes),
        batches.map(b => b.bytes),
        `${kafkaCodec}/${segmentCodec}: byte for byte`
      )

      // The records decode to what was produced (keys and values incl. null, headers, timestamps).
      const decoded = readRecordsBatches(Reader.from(Buffer.concat(read.map(b => b.bytes))))
      let n = 0
      for (const batch of decoded) {
        for (const record of batch.records) {
          const expected = message(partition, Math.floor(n / RECORDS_PER_SEND), n % RECORDS_PER_SEND)
          assert.deepEqual(record.key ?? null, expected.key, `key ${n}`)
          assert.deepEqual(record.value ?? null, expected.value, `value ${n}`)
          assert.deepEqual(
            record.headers.map(([k, v]) => [k?.toString(), v?.toString()]),
            expected.headers
          )
          assert.equal(batch.firstTimestamp + record.timestampDelta, expected.timestamp)
          n++
        }
      }
      assert.equal(n, SENDS_PER_PARTITION * RECORDS_PER_SEND)
    }
  }
})
