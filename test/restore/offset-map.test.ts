import assert from 'node:assert/strict'
import { test } from 'node:test'
import { OffsetMap } from '../../src/restore/offset-map.ts'

test('contiguous runs merge into one', () => {
  const map = new OffsetMap()
  map.add({ sourceOffset: 100n, targetOffset: 0n, count: 10 })
  map.add({ sourceOffset: 110n, targetOffset: 10n, count: 5 })
  assert.deepEqual(map.toJSON(), [['100', '0', 15]])
})

test('runs separated by a source gap stay apart', () => {
  const map = new OffsetMap()
  map.add({ sourceOffset: 0n, targetOffset: 0n, count: 3 })
  map.add({ sourceOffset: 7n, targetOffset: 3n, count: 2 })
  assert.equal(map.runs.length, 2)
})

test('translates offsets inside runs, in gaps, before the first run and past the end', () => {
  // Source 0..2 -> target 0..2, source 7..8 (compacted gap 3..6) -> target 3..4.
  const map = OffsetMap.fromJSON([
    ['0', '0', 3],
    ['7', '3', 2]
  ])
  const end = 5n
  assert.equal(map.translate(0n, end), 0n)
  assert.equal(map.translate(2n, end), 2n)
  assert.equal(map.translate(3n, end), 3n, 'an offset in a gap resumes at the next restored record')
  assert.equal(map.translate(6n, end), 3n)
  assert.equal(map.translate(7n, end), 3n)
  assert.equal(map.translate(8n, end), 4n)
  assert.equal(map.translate(9n, end), end, 'past the last restored record: the end of the partition')
  assert.equal(map.translate(1000n, end), end)
})

test('an offset before a window start maps to the first restored record', () => {
  const map = OffsetMap.fromJSON([['500', '0', 100]])
  assert.equal(map.translate(10n, 100n), 0n)
  assert.equal(map.translate(550n, 100n), 50n)
})

test('an empty map sends every committed offset to the partition end', () => {
  assert.equal(new OffsetMap().translate(42n, 7n), 7n)
})

test('JSON round trip keeps int64 offsets exact', () => {
  const big = 9_007_199_254_740_993n
  const map = new OffsetMap()
  map.add({ sourceOffset: big, targetOffset: big + 1n, count: 1 })
  const copy = OffsetMap.fromJSON(JSON.parse(JSON.stringify(map)))
  assert.equal(copy.runs[0]!.sourceOffset, big)
  assert.equal(copy.runs[0]!.targetOffset, big + 1n)
})

test('a sparse run (re-partitioning) rounds an offset inside it down to its first record, and survives JSON', () => {
  const map = new OffsetMap()
  // Records from source offsets 10, 13, 17 went to target 0..2; then 20, 21 to target 3..4.
  map.add({ sourceOffset: 10n, targetOffset: 0n, count: 3, sourceSpan: 8 })
  map.add({ sourceOffset: 20n, targetOffset: 3n, count: 2 })
  assert.equal(map.runs.length, 2, 'a sparse run never merges')
  assert.equal(map.translate(5n, 9n), 0n)
  assert.equal(map.translate(10n, 9n), 0n)
  assert.equal(map.translate(14n, 9n), 0n, 'inside: re-read from the run start, never skip')
  assert.equal(map.translate(18n, 9n), 3n, 'past the span: the next run')
  assert.equal(map.translate(21n, 9n), 4n)
  assert.equal(map.translate(22n, 9n), 9n)
  assert.equal(map.firstAtOrAfter(22n), undefined)
  assert.deepEqual(OffsetMap.fromJSON(map.toJSON()).runs, map.runs)
  assert.deepEqual(map.toJSON()[0], ['10', '0', 3, 8])
})
