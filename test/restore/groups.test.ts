import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Manifest } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { selectCapturedGroups, translateGroupOffsets } from '../../src/restore/groups.ts'
import { OffsetMap, type SerializedOffsetRun } from '../../src/restore/offset-map.ts'
import type { PartitionState } from '../../src/restore/state.ts'

function manifestWith(groups: Array<[string, string, number]>): Manifest {
  return {
    backupId: 'b',
    consumerGroups: groups.map(([groupId, topic, partition]) => ({
      groupId,
      state: 'Empty',
      capturedAt: '2026-01-01T00:00:00Z',
      offsets: [{ topic, partition, offset: '5', leaderEpoch: -1, metadata: null }]
    }))
  } as Manifest
}

test('a bare * selects every captured group on the restored partitions, and none when none was captured', () => {
  const restored = new Set(['orders/0'])
  const manifest = manifestWith([
    ['billing', 'orders', 0],
    ['audit', 'audit', 0]
  ])
  assert.deepEqual(
    selectCapturedGroups(manifest, restored, ['*'], 'restore.consumer_groups').map(g => g.groupId),
    ['billing']
  )
  assert.deepEqual(selectCapturedGroups(manifestWith([]), restored, ['*'], 'restore.consumer_groups'), [])
})

test('a name or pattern that matches no captured group is refused, naming the key', () => {
  for (const pattern of ['biling', 'pay-*']) {
    assert.throws(
      () =>
        selectCapturedGroups(manifestWith([['billing', 'orders', 0]]), new Set(['orders/0']), [pattern], '--groups'),
      error => {
        assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'))
        assert.match(error.message, new RegExp(`^--groups names ${pattern.replace('*', '\\*')}, which matches none`))
        return true
      }
    )
  }
})

test('a re-partitioned target partition gets the smallest offset over the sources feeding it; a source without an offset counts as unread', () => {
  const pair = (sourcePartition: number, runs: SerializedOffsetRun[], targetNextOffset: string) => ({
    state: {
      sourceTopic: 'orders',
      sourcePartition,
      targetTopic: 'wide',
      targetPartition: 0,
      targetNextOffset
    } as PartitionState,
    offsetMap: OffsetMap.fromJSON(runs)
  })
  // Target partition 0: source 0's records at 0..9 (from source offsets 0..9), source 1's at 10..19.
  const restored = [pair(0, [['0', '0', 10]], '10'), pair(1, [['100', '10', 10]], '20')]
  const group = (offsets: Array<[number, string]>) => ({
    groupId: 'g',
    state: 'Empty',
    capturedAt: '2026-01-01T00:00:00Z',
    offsets: offsets.map(([partition, offset]) => ({
      topic: 'orders',
      partition,
      offset,
      leaderEpoch: -1,
      metadata: null
    }))
  })
  const translate = (offsets: Array<[number, string]>) =>
    translateGroupOffsets([group(offsets)], restored)[0]?.offsets[0]

  assert.deepEqual(
    translate([
      [0, '4'],
      [1, '105']
    ]),
    {
      topic: 'wide',
      partition: 0,
      sourcePartition: 0,
      sourceOffset: '4',
      targetOffset: '4'
    }
  )
  // Source 0 read to its end: source 1 decides.
  assert.equal(
    translate([
      [0, '10'],
      [1, '105']
    ])?.targetOffset,
    '15'
  )
  // No offset on source 0: it counts as unread, from its first record.
  assert.equal(translate([[1, '105']])?.targetOffset, '0')
  // Everything read: the partition's end.
  assert.equal(
    translate([
      [0, '10'],
      [1, '110']
    ])?.targetOffset,
    '20'
  )
  assert.equal(translateGroupOffsets([group([[2, '5']])], restored).length, 0, 'no offset on any feeding source')
})
