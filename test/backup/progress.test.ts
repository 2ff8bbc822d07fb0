import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { PartitionProgress } from '../../src/backup/engine.ts'
import { summarizeProgress } from '../../src/backup/progress.ts'

function partition(
  name: string,
  startOffset: number,
  fetchOffset: number,
  stopOffset: number | null,
  records = 0
): PartitionProgress {
  const [topic, index] = name.split('/')
  return {
    topic: topic!,
    partition: Number(index),
    startOffset: String(startOffset),
    fetchOffset: String(fetchOffset),
    checkpoint: String(startOffset),
    stopOffset: stopOffset === null ? null : String(stopOffset),
    lagRecords: null,
    records,
    bytes: records * 100
  }
}

test('backup progress counts the offsets covered against the offsets to cover and names the partitions furthest from their end', () => {
  const summary = summarizeProgress(
    [
      partition('a/0', 0, 50, 100, 50),
      partition('a/1', 10, 10, 1010),
      partition('b/0', 100, 100, 100),
      partition('b/1', 0, 30, 40, 30),
      partition('c/0', 5, 500, null, 495)
    ],
    2
  )
  assert.deepEqual(summary, {
    offsetsDone: 50 + 0 + 0 + 30 + 495,
    offsetsTotal: 100 + 1000 + 0 + 40 + 495,
    records: 575,
    bytes: 57_500,
    partitionsBehind: 3,
    furthestBehind: [
      { topic: 'a', partition: 1, offsetsLeft: 1000 },
      { topic: 'a', partition: 0, offsetsLeft: 50 }
    ]
  })
})

test('a partition whose log start moved past its stop offset counts as done, never negative', () => {
  const summary = summarizeProgress([partition('a/0', 0, 700, 500)])
  assert.equal(summary.offsetsDone, 500)
  assert.equal(summary.offsetsTotal, 500)
  assert.equal(summary.partitionsBehind, 0)
})
