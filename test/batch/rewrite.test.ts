import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { Attribute, Codec, type CodecId, Offset, RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords, encodeBatch, recordTimestamp } from '../../src/batch/records.ts'
import {
  coalesce,
  hasOffsetHoles,
  NO_PRODUCER,
  prepareForRestore,
  reencodeContiguous,
  rewriteForRestore
} from '../../src/batch/rewrite.ts'
import { splitRecordSet } from '../../src/batch/split.ts'
import {
  allCodecs,
  arbitraryCodec,
  arbitraryRecords,
  assertRecordsEqual,
  baseTimestamp,
  controlBatch,
  dataBatch,
  sampleRecords
} from './fixtures.ts'

const producer = { producerId: 4242n, producerEpoch: 3, baseSequence: 100 }

function sourceBatch(codec: CodecId = Codec.zstd): RecordBatchView {
  return new RecordBatchView(
    dataBatch(1_000n, 4, {
      codec,
      partitionLeaderEpoch: 17,
      attributes: Attribute.transactional | Attribute.logAppendTime,
      producerId: 77n,
      producerEpoch: 9,
      baseSequence: 55
    })
  )
}

test('rewrite sets offset 0, epoch -1, the producer and clears the transactional bit, keeping record bytes', () => {
  const source = sourceBatch()
  const original = Buffer.from(source.bytes)
  const rewritten = rewriteForRestore(source, producer)
  assert.ok(source.bytes.equals(original), 'the source batch is left alone')
  assert.equal(rewritten.baseOffset, 0n)
  assert.equal(rewritten.partitionLeaderEpoch, -1)
  assert.equal(rewritten.producerId, 4242n)
  assert.equal(rewritten.producerEpoch, 3)
  assert.equal(rewritten.baseSequence, 100)
  assert.equal(rewritten.isTransactional, false)
  assert.equal(rewritten.isLogAppendTime, true, 'other attribute bits are kept')
  assert.equal(rewritten.codec, Codec.zstd)
  assert.equal(rewritten.isCrcValid(), true)
  assert.ok(rewritten.records.equals(source.records), 'records are byte for byte the same')
  for (const field of ['lastOffsetDelta', 'baseTimestamp', 'maxTimestamp', 'recordCount', 'batchLength'] as const) {
    assert.equal(rewritten[field], source[field], field)
  }
  assert.equal(splitRecordSet(rewritten.bytes).batches.length, 1, 'the result passes split with CRC check')
})

test('rewrite writes into a caller buffer, or in place, and defaults to no producer', () => {
  const source = sourceBatch(Codec.none)
  const target = Buffer.alloc(source.bytes.length + 100, 0xee)
  const intoTarget = rewriteForRestore(source, producer, target)
  assert.equal(intoTarget.bytes.buffer, target.buffer)
  assert.equal(intoTarget.bytes.length, source.bytes.length)
  assert.equal(target[source.bytes.length], 0xee, 'nothing written past the batch')

  const copy = Buffer.from(source.bytes)
  const inPlace = rewriteForRestore(new RecordBatchView(copy), NO_PRODUCER, copy)
  assert.equal(inPlace.bytes.buffer, copy.buffer)
  assert.equal(inPlace.producerId, -1n)
  assert.equal(inPlace.baseSequence, -1)
  assert.equal(inPlace.isCrcValid(), true)
  assert.deepEqual(decodeRecords(inPlace), decodeRecords(source))
})

test('rewrite refuses control batches, empty batches, batches with holes and a producer without sequence', () => {
  const refusals: Array<[RecordBatchView, string]> = [
    [new RecordBatchView(controlBatch(5n, 1n, 'commit')), 'attributes.control'],
    [new RecordBatchView(dataBatch(5n, 0, { lastOffsetDelta: 3 }, [])), 'recordCount'],
    [new RecordBatchView(dataBatch(5n, 2, {}, sampleRecords(2, [0, 2]))), 'recordCount']
  ]
  for (const [batch, field] of refusals) {
    assert.throws(() => rewriteForRestore(batch, producer), { code: 'KB_INTERNAL', field })
  }
  assert.throws(() => rewriteForRestore(sourceBatch(), { ...producer, baseSequence: -1 }), { field: 'baseSequence' })
  assert.throws(() => rewriteForRestore(sourceBatch(), producer, Buffer.alloc(10)), { field: 'target' })
})

test('rewrite carries a failing CRC: altered bytes never get a valid one, whatever the producer fields', () => {
  const source = sourceBatch(Codec.none)
  const altered = Buffer.from(source.bytes)
  altered[altered.length - 3] = altered[altered.length - 3]! ^ 0x01
  assert.equal(new RecordBatchView(altered).isCrcValid(), false)
  for (const identity of [producer, NO_PRODUCER]) {
    assert.equal(rewriteForRestore(new RecordBatchView(Buffer.from(altered)), identity).isCrcValid(), false)
  }
})

for (const codec of allCodecs) {
  test(`re-encodes a ${codec.name} batch with holes to offsetDeltas 0..n-1 keeping records and timestamps`, () => {
    const records = sampleRecords(4, [1, 4, 5, 9])
    const holey = new RecordBatchView(dataBatch(300n, 4, { codec: codec.id, lastOffsetDelta: 12 }, records))
    assert.equal(hasOffsetHoles(holey), true)
    const contiguous = reencodeContiguous(holey)
    assert.equal(hasOffsetHoles(contiguous), false)
    assert.equal(contiguous.lastOffsetDelta, 3)
    assert.equal(contiguous.recordCount, 4)
    assert.equal(contiguous.codec, codec.id)
    assert.equal(contiguous.baseOffset, 300n)
    assert.equal(contiguous.baseTimestamp, holey.baseTimestamp)
    assert.equal(contiguous.maxTimestamp, holey.maxTimestamp)
    assert.equal(contiguous.isCrcValid(), true)
    assertRecordsEqual(
      decodeRecords(contiguous),
      records.map((r, i) => ({ ...r, offsetDelta: i }))
    )
    const restored = prepareForRestore(holey, producer)
    assert.equal(restored.baseOffset, 0n)
    assert.equal(restored.producerId, producer.producerId)
    assert.equal(restored.lastOffsetDelta, 3)
    assert.equal(restored.isCrcValid(), true)
  })
}

test('prepareForRestore passes a contiguous batch through rewrite only', () => {
  const source = sourceBatch(Codec.lz4)
  const restored = prepareForRestore(source, producer)
  assert.ok(restored.records.equals(source.records))
})

test('coalesces small batches into one with consecutive offsets, the first codec and every timestamp kept', () => {
  const batches = [
    new RecordBatchView(dataBatch(10n, 1, { codec: Codec.snappy, baseTimestamp: 5_000n })),
    new RecordBatchView(dataBatch(11n, 2, { codec: Codec.none, baseTimestamp: 4_000n })),
    new RecordBatchView(dataBatch(13n, 0, { lastOffsetDelta: 0 }, [])),
    new RecordBatchView(
      dataBatch(14n, 2, { codec: Codec.gzip, baseTimestamp: 9_000n, lastOffsetDelta: 5 }, sampleRecords(2, [0, 5]))
    )
  ]
  const merged = coalesce(batches)
  assert.equal(merged.codec, Codec.snappy)
  assert.equal(merged.recordCount, 5)
  assert.equal(merged.lastOffsetDelta, 4)
  assert.equal(merged.baseOffset, 10n)
  assert.equal(merged.isCrcValid(), true)
  const records = decodeRecords(merged)
  assert.deepEqual(
    records.map(r => r.offsetDelta),
    [0, 1, 2, 3, 4]
  )
  const expectedTimestamps = batches.flatMap(b => decodeRecords(b).map(r => recordTimestamp(b, r)))
  assert.deepEqual(
    records.map(r => recordTimestamp(merged, r)),
    expectedTimestamps
  )
  assert.equal(merged.baseTimestamp, 5_000n)
  assert.equal(merged.maxTimestamp, 9_010n)
  assert.deepEqual(
    records.map(r => r.value?.toString()),
    batches.flatMap(b => decodeRecords(b).map(r => r.value?.toString()))
  )
  assert.equal(coalesce(batches, { codec: Codec.zstd }).codec, Codec.zstd)
})

test('coalesce refuses control batches and mixed LogAppendTime/CreateTime batches', () => {
  const plain = new RecordBatchView(dataBatch(0n, 1))
  const appendTime = new RecordBatchView(dataBatch(1n, 1, { attributes: Attribute.logAppendTime }))
  assert.throws(() => coalesce([plain, appendTime]), { code: 'KB_INTERNAL', field: 'attributes.logAppendTime' })
  assert.throws(() => coalesce([plain, new RecordBatchView(controlBatch(2n, 1n, 'abort'))]), {
    field: 'attributes.control'
  })
  assert.throws(() => coalesce([]), { code: 'KB_INTERNAL' })
})

test('property: any batch survives re-encode then rewrite with the same records in order', () => {
  fc.assert(
    fc.property(arbitraryRecords(15), arbitraryCodec, arbitraryCodec, (records, codec, targetCodec) => {
      if (records.length === 0) return
      const source = new RecordBatchView(encodeBatch({ baseOffset: 50n, baseTimestamp, codec }, records))
      const contiguous = reencodeContiguous(source, { codec: targetCodec })
      const restored = rewriteForRestore(contiguous, producer, contiguous.bytes)
      assert.equal(restored.isCrcValid(), true)
      assert.equal(restored.lastOffsetDelta + 1, restored.recordCount)
      assert.equal(restored.bytes.readInt16BE(Offset.attributes) & 0x07, targetCodec)
      assertRecordsEqual(
        decodeRecords(restored),
        records.map((r, i) => ({ ...r, offsetDelta: i }))
      )
    }),
    { numRuns: 200 }
  )
})
