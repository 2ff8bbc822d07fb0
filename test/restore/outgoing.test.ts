/** Backed-up batches turned into producible ones, without a broker. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Attribute, Codec, RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords, recordTimestamp } from '../../src/batch/records.ts'
import { KeyEraser } from '../../src/restore/erase.ts'
import { toOutgoing } from '../../src/restore/outgoing.ts'
import { baseTimestamp, dataBatch, sampleRecords } from '../batch/fixtures.ts'

const appendTime = baseTimestamp + 60_000n

test('a LogAppendTime batch goes out as CreateTime with the append time on every record, as its consumers saw it', () => {
  const source = new RecordBatchView(
    dataBatch(40n, 5, { attributes: Attribute.logAppendTime, maxTimestamp: appendTime })
  )
  assert.ok(source.isLogAppendTime)
  const seen = decodeRecords(source).map(r => recordTimestamp(source, r))
  assert.deepEqual(seen, Array(5).fill(appendTime))

  const outgoing = toOutgoing(source, {}, -1n)!
  assert.equal(
    outgoing.batch.isLogAppendTime,
    false,
    'a LogAppendTime bit would be refused by or overwritten in the target'
  )
  const restored = decodeRecords(outgoing.batch)
  assert.deepEqual(
    restored.map(r => recordTimestamp(outgoing.batch, r)),
    seen
  )
  assert.deepEqual(
    restored.map(r => r.key?.toString()),
    decodeRecords(source).map(r => r.key?.toString())
  )
  assert.deepEqual(outgoing.runs, [{ sourceOffset: 40n, targetDelta: 0, count: 5 }])
})

test('a time window over a LogAppendTime batch decides by its append time', () => {
  const source = new RecordBatchView(
    dataBatch(0n, 3, { attributes: Attribute.logAppendTime, maxTimestamp: appendTime })
  )
  assert.equal(toOutgoing(source, { end: appendTime - 1n }, -1n), undefined)
  assert.equal(toOutgoing(source, { start: appendTime, end: appendTime }, -1n)?.batch.recordCount, 3)
})

test('a CreateTime batch inside the window passes with its bytes untouched', () => {
  const source = new RecordBatchView(dataBatch(7n, 4))
  const outgoing = toOutgoing(source, { start: baseTimestamp }, -1n)!
  assert.equal(outgoing.batch, source)
})

test('restore.erase: a batch without an erased key passes as it is; one with such keys is rebuilt without them, keeping the others and their offsets', () => {
  const eraser = new KeyEraser([Buffer.from('key-1'), Buffer.from('key-3')], [])
  const clean = new RecordBatchView(
    dataBatch(
      10n,
      5,
      {},
      sampleRecords(5).map(r => ({ ...r, key: Buffer.from(`other-${r.offsetDelta}`) }))
    )
  )
  const passed = toOutgoing(clean, {}, -1n, eraser)!
  assert.equal(passed.batch, clean, 'not rebuilt')
  assert.equal(passed.erased, 0)

  const source = new RecordBatchView(dataBatch(20n, 5, { codec: Codec.zstd }))
  const pending = { erased: 0 }
  const outgoing = toOutgoing(source, {}, -1n, eraser, pending)!
  assert.equal(outgoing.erased, 2)
  assert.equal(outgoing.batch.codec, Codec.zstd)
  const kept = decodeRecords(outgoing.batch)
  const original = decodeRecords(source)
  assert.deepEqual(
    kept.map(r => [r.key?.toString(), r.value?.toString(), r.headers, recordTimestamp(outgoing.batch, r)]),
    [0, 2, 4].map(i => [
      `key-${i}`,
      original[i]!.value?.toString(),
      original[i]!.headers,
      recordTimestamp(source, original[i]!)
    ])
  )
  assert.deepEqual(outgoing.runs, [
    { sourceOffset: 20n, targetDelta: 0, count: 1 },
    { sourceOffset: 22n, targetDelta: 1, count: 1 },
    { sourceOffset: 24n, targetDelta: 2, count: 1 }
  ])

  const allErased = new RecordBatchView(
    dataBatch(
      30n,
      2,
      {},
      sampleRecords(4)
        .filter((_, i) => i % 2 === 1)
        .map((r, i) => ({ ...r, offsetDelta: i }))
    )
  )
  assert.equal(toOutgoing(allErased, {}, -1n, eraser, pending), undefined)
  assert.equal(pending.erased, 2, 'counted for the next batch')
})
