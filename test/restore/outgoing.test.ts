/** Backed-up batches turned into producible ones, without a broker. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Attribute, RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords, recordTimestamp } from '../../src/batch/records.ts'
import { toOutgoing } from '../../src/restore/outgoing.ts'
import { baseTimestamp, dataBatch } from '../batch/fixtures.ts'

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
