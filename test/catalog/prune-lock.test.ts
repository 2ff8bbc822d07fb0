/** When a prune lock left behind binds nobody any more (src/catalog/prune-lock.ts, staleReason). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { staleReason } from '../../src/catalog/prune-lock.ts'

const now = Date.parse('2026-11-30T12:00:00Z')
const here = { host: 'backup-1', pidNamespace: 'pid:[4026531836]', isRunning: (pid: number) => pid === 100, now }
const lock = {
  token: 't',
  host: 'backup-1',
  pid: 200,
  pidNamespace: 'pid:[4026531836]',
  startedAt: '2026-11-30T11:59:00Z',
  expiresAt: '2026-11-30T12:04:00Z'
}

test('a lock whose process is gone on this host, in this pid namespace, is stale at once', () => {
  assert.match(staleReason(lock, here) ?? '', /its process \(pid 200 on backup-1\) is gone/)
})

test('a lock whose process still runs binds until its lease runs out', () => {
  assert.equal(staleReason({ ...lock, pid: 100 }, here), undefined)
  assert.match(
    staleReason({ ...lock, pid: 100 }, { ...here, now: Date.parse('2026-11-30T12:04:01Z') }) ?? '',
    /lease ran out at 2026-11-30T12:04:00Z/
  )
})

test('a pid is judged only in the pid namespace it names: from another container, or another host, only the lease counts', () => {
  assert.equal(staleReason({ ...lock, pidNamespace: 'pid:[4026532999]' }, here), undefined)
  assert.equal(staleReason({ ...lock, host: 'backup-2' }, here), undefined)
  const { pidNamespace: _, ...withoutNamespace } = lock
  assert.equal(staleReason(withoutNamespace, here), undefined)
})

test('a released lock binds nobody; a lock of an older version (no lease) binds until removed by hand', () => {
  assert.equal(staleReason({ ...lock, pid: 100, released: true }, here), 'released')
  const { expiresAt: _, pidNamespace: __, ...legacy } = lock
  assert.equal(staleReason({ ...legacy, host: 'elsewhere' }, { ...here, now: now + 365 * 86_400_000 }), undefined)
})
