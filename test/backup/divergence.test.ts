/**
 * The decision behind KB_SOURCE_DIVERGED (src/backup/divergence.ts), for the answers a leader
 * gives to OffsetForLeaderEpoch. Answers a single test broker cannot give (an unclean leader
 * election needs two replicas) are covered here; test/integration/backup-divergence.test.ts
 * checks the same decision against a real broker.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { divergence } from '../../src/backup/divergence.ts'

const stored = { leaderEpoch: 5, nextOffset: 200n }

test('a log that continues the stored epoch past the last stored batch is the same history', () => {
  assert.equal(divergence(stored, { leaderEpoch: 5, endOffset: 350n }), undefined, 'still the current epoch')
  assert.equal(
    divergence(stored, { leaderEpoch: 5, endOffset: 200n }),
    undefined,
    'the epoch ended right after the batch'
  )
})

test('a log whose stored epoch ends before the end of the last stored batch was truncated and written again', () => {
  // An unclean leader election: the new leader had epoch 5 only up to offset 150, then wrote epoch 6 from there.
  assert.match(divergence(stored, { leaderEpoch: 5, endOffset: 150n }) ?? '', /epoch 5 ends at offset 150/)
})

test('a log that never had the stored epoch is another history, even when its offsets reach further', () => {
  // The new leader went from epoch 4 (to offset 400) to 6: the batch of epoch 5 was never in its log.
  assert.match(
    divergence(stored, { leaderEpoch: 4, endOffset: 400n }) ?? '',
    /no leader epoch 5: its epoch 4 runs to offset 400/
  )
  // Every epoch of the log is later than the stored one: a topic recreated, disks from elsewhere.
  assert.match(divergence(stored, { leaderEpoch: -1, endOffset: -1n }) ?? '', /no leader epoch at or below 5/)
})

test('when retention removed the stored epoch, the leader answers with that epoch and the start of the next one: no divergence', () => {
  assert.equal(divergence(stored, { leaderEpoch: 5, endOffset: 900n }), undefined)
})

test('a batch the broker did not stamp with an epoch (-1) gives nothing to compare', () => {
  assert.equal(divergence({ leaderEpoch: -1, nextOffset: 200n }, { leaderEpoch: -1, endOffset: -1n }), undefined)
})
