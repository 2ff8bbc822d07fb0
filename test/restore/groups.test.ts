import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Manifest } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { selectCapturedGroups } from '../../src/restore/groups.ts'

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
