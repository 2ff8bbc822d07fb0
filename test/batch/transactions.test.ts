import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RecordBatchView } from '../../src/batch/header.ts'
import { splitRecordSet } from '../../src/batch/split.ts'
import { type AbortedTransaction, readCommittedBatches, TransactionFilter } from '../../src/batch/transactions.ts'
import { controlBatch, dataBatch, txnBatch } from './fixtures.ts'

function views(...batches: Buffer[]): RecordBatchView[] {
  const { batches: split, truncatedBytes } = splitRecordSet(Buffer.concat(batches))
  assert.equal(truncatedBytes, 0)
  return split
}

function keptOffsets(batches: RecordBatchView[], aborted: AbortedTransaction[], fetchOffset = 0n): bigint[] {
  return [...readCommittedBatches(batches, aborted, fetchOffset)].map(b => b.baseOffset)
}

const P1 = 1000n
const P2 = 2000n

test('keeps non-transactional data as it is', () => {
  assert.deepEqual(keptOffsets(views(dataBatch(0n, 2), dataBatch(2n, 3)), []), [0n, 2n])
})

test('keeps a committed transaction and drops its commit marker', () => {
  const batches = views(txnBatch(0n, 2, P1), txnBatch(2n, 2, P1), controlBatch(4n, P1, 'commit'), dataBatch(5n, 1))
  assert.deepEqual(keptOffsets(batches, []), [0n, 2n, 5n])
})

test('drops an aborted transaction and its abort marker, keeping data interleaved with it', () => {
  const batches = views(
    txnBatch(0n, 2, P1),
    dataBatch(2n, 1), // non-transactional, between the aborted batches
    txnBatch(3n, 2, P2), // another producer's transaction, committed later
    txnBatch(5n, 1, P1),
    controlBatch(6n, P1, 'abort'),
    controlBatch(7n, P2, 'commit'),
    dataBatch(8n, 1)
  )
  assert.deepEqual(keptOffsets(batches, [{ producerId: P1, firstOffset: 0n }]), [2n, 3n, 8n])
})

test('a producer whose transaction aborted is kept again for its next, committed transaction', () => {
  const batches = views(
    txnBatch(0n, 2, P1),
    controlBatch(2n, P1, 'abort'),
    txnBatch(3n, 2, P1),
    controlBatch(5n, P1, 'commit'),
    txnBatch(6n, 1, P1),
    controlBatch(7n, P1, 'abort')
  )
  const aborted = [
    { producerId: P1, firstOffset: 6n },
    { producerId: P1, firstOffset: 0n } // the broker's order is not relied on
  ]
  assert.deepEqual(keptOffsets(batches, aborted), [3n])
})

test('an abort spanning two fetches: data in the first response, the marker in the second', () => {
  // The broker lists a transaction in every fetch whose range it overlaps
  // (marker offset >= fetchOffset, first offset < end of the data returned).
  const aborted = [{ producerId: P1, firstOffset: 2n }]
  const filter = new TransactionFilter(0n)
  const firstResponse = Buffer.concat([dataBatch(0n, 2), txnBatch(2n, 3, P1), txnBatch(5n, 1, P2)])
  const secondBatchStart = txnBatch(6n, 2, P1)
  // The first response ends inside the next batch, which is refetched.
  const cut = splitRecordSet(Buffer.concat([firstResponse, secondBatchStart.subarray(0, 20)]))
  assert.equal(cut.truncatedBytes, 20)
  const kept1 = filter.filter(cut.batches, aborted, 0n)
  assert.deepEqual(
    kept1.map(b => b.baseOffset),
    [0n, 5n]
  )
  assert.equal(filter.nextFetchOffset, 6n)

  const second = views(
    secondBatchStart,
    controlBatch(8n, P1, 'abort'),
    controlBatch(9n, P2, 'commit'),
    dataBatch(10n, 1)
  )
  const kept2 = filter.filter(second, aborted)
  assert.deepEqual(
    kept2.map(b => b.baseOffset),
    [10n]
  )
  assert.equal(filter.nextFetchOffset, 11n)
  assert.deepEqual(filter.stats, { kept: 3, controlDropped: 2, abortedDropped: 2, belowFetchOffsetDropped: 0 })
})

test('a transaction that began before the fetch offset is still dropped when listed', () => {
  const batches = views(txnBatch(10n, 2, P1), controlBatch(12n, P1, 'abort'), dataBatch(13n, 1))
  assert.deepEqual(keptOffsets(batches, [{ producerId: P1, firstOffset: 3n }], 10n), [13n])
})

test('drops batches that end below the fetch offset but keeps the one holding it', () => {
  const batches = views(dataBatch(0n, 3), dataBatch(3n, 3), dataBatch(6n, 3))
  const filter = new TransactionFilter()
  assert.deepEqual(
    filter.filter(batches, [], 4n).map(b => b.baseOffset),
    [3n, 6n]
  )
  assert.equal(filter.stats.belowFetchOffsetDropped, 1)
  assert.equal(filter.nextFetchOffset, 9n)
})

test('a marker below the fetch offset still ends its transaction', () => {
  // P1 aborted a transaction ending at 3; its next transaction (from 4) commits.
  const batches = views(controlBatch(3n, P1, 'abort'), txnBatch(4n, 2, P1), controlBatch(6n, P1, 'commit'))
  assert.deepEqual(keptOffsets(batches, [{ producerId: P1, firstOffset: 0n }], 4n), [4n])
})

test('an empty response leaves the position at the fetch offset', () => {
  const filter = new TransactionFilter(5n)
  assert.deepEqual(filter.filter([], [{ producerId: P1, firstOffset: 0n }]), [])
  assert.equal(filter.nextFetchOffset, 5n)
})
