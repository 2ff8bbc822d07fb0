/** Restore state documents: written and read back, and refused with the file and field when damaged. */

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { legacyKey } from '../../src/catalog/revisions.ts'
import { isBackupError } from '../../src/errors.ts'
import {
  listDoneRecords,
  listRestoreStates,
  PARTITION_STATE_FORMAT,
  type PartitionDocument,
  RESTORE_STATE_FORMAT,
  RESTORE_STATE_VERSION,
  type RestoreState,
  readDoneRecord,
  readPartitionDocument,
  readRestoreState,
  restoreStateBase,
  writeDoneRecord,
  writePartitionDocument,
  writeRestoreState
} from '../../src/restore/state.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'

function state(restoreId = 'restore-1'): RestoreState {
  return {
    format: RESTORE_STATE_FORMAT,
    formatVersion: RESTORE_STATE_VERSION,
    toolVersion: 'test',
    restoreId,
    backupId: 'b',
    status: 'running',
    startedAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    target: { clusterId: 'c', bootstrapServers: ['k:9092'] },
    targetTopicIds: { 'orders-dr': 'id-1' },
    window: { start: null, end: '1700000000000' },
    partitions: [
      {
        sourceTopic: 'orders',
        sourcePartition: 0,
        targetTopic: 'orders-dr',
        targetPartition: 0,
        sourceNextOffset: '120',
        targetStartOffset: '0',
        targetNextOffset: '100',
        records: 100,
        bytes: 5000,
        erasedRecords: 0,
        done: false,
        offsetMap: [['20', '0', 100]]
      }
    ],
    consumerGroups: []
  }
}

test('a written state reads back equal, and every restore of a backup is listed', async () => {
  const storage = new MemoryStorage()
  await writeRestoreState(storage, state('restore-1'))
  await writeRestoreState(storage, state('restore-2'))
  const read = await readRestoreState(storage, 'b', 'restore-1')
  assert.deepEqual({ ...read, updatedAt: '' }, { ...state('restore-1'), updatedAt: '', revision: 1 })
  assert.deepEqual(
    (await listRestoreStates(storage, 'b')).map(s => s.restoreId),
    ['restore-1', 'restore-2']
  )
  assert.equal(await readRestoreState(storage, 'b', 'restore-3'), undefined)
})

interface Damageable {
  [field: string]: unknown
  partitions: [{ [field: string]: unknown; offsetMap: unknown[] }]
}

test('a damaged state is refused with KB_BACKUP_CORRUPT naming the file and the field', async () => {
  const key = legacyKey(restoreStateBase('b', 'restore-1'))
  const damaged: Array<[(document: Damageable) => unknown, string]> = [
    [d => Object.assign(d.partitions[0], { targetNextOffset: 100 }), 'partitions.0.targetNextOffset'],
    [d => Object.assign(d.partitions[0], { targetNextOffset: '1e3' }), 'partitions.0.targetNextOffset'],
    [d => delete d.partitions[0].done, 'partitions.0.done'],
    [d => d.partitions[0].offsetMap.push(['1', '2', 0]), 'partitions.0.offsetMap.1.2'],
    [d => Object.assign(d, { format: 'something-else' }), 'format'],
    [d => Object.assign(d, { formatVersion: 3 }), 'formatVersion'],
    [d => Object.assign(d, { status: 'finished' }), 'status']
  ]
  for (const [damage, field] of damaged) {
    const storage = new MemoryStorage({ name: 'states' })
    const document = JSON.parse(JSON.stringify(state()))
    damage(document)
    await storage.replace(key, Buffer.from(JSON.stringify(document)))
    await assert.rejects(readRestoreState(storage, 'b', 'restore-1'), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT'), String(error))
      assert.equal(error.field, field)
      assert.ok(error.message.includes(`memory://states/${key}`), error.message)
      assert.ok(error.message.includes(field), error.message)
      return true
    })
  }
  const storage = new MemoryStorage()
  await storage.replace(key, Buffer.from('{"format": "kafka-backup-restore", '))
  await assert.rejects(readRestoreState(storage, 'b', 'restore-1'), error => {
    assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT') && /not valid JSON/.test(error.message), String(error))
    return true
  })
})

test('a version-1 state (before topic ids were recorded) is still read', async () => {
  const storage = new MemoryStorage()
  const { targetTopicIds: _ids, ...old } = state()
  await storage.replace(
    legacyKey(restoreStateBase('b', 'restore-1')),
    Buffer.from(JSON.stringify({ ...old, formatVersion: 1 }))
  )
  const read = await readRestoreState(storage, 'b', 'restore-1')
  assert.equal(read?.formatVersion, 1)
  assert.equal(read?.targetTopicIds, undefined)
})

function partitionDocument(owner: string, partition = 0): PartitionDocument {
  return {
    format: PARTITION_STATE_FORMAT,
    formatVersion: 1,
    toolVersion: 'test',
    restoreId: 'restore-1',
    backupId: 'b',
    owner: { memberId: owner, generation: 1 },
    targetTopicId: 'id-1',
    updatedAt: '2026-01-01T00:00:00.000Z',
    partition: { ...state().partitions[0]!, sourcePartition: partition, targetPartition: partition }
  }
}

test('a worker that lost a partition finds its next state revision taken by the new owner', async () => {
  const storage = new MemoryStorage()
  const old = partitionDocument('worker-a')
  await writePartitionDocument(storage, old)
  const taken = { ...(await readPartitionDocument(storage, 'b', 'restore-1', 'orders', 0))! }
  taken.owner = { memberId: 'worker-b', generation: 2 }
  await writePartitionDocument(storage, taken)
  old.partition.records = 110
  await assert.rejects(writePartitionDocument(storage, old), (error: unknown) => isBackupError(error, 'KB_BACKUP_BUSY'))
  const newest = await readPartitionDocument(storage, 'b', 'restore-1', 'orders', 0)
  assert.equal(newest?.owner.memberId, 'worker-b')
  assert.equal(newest?.revision, 2)
})

test('done records: one listing gives the furthest source end each partition was restored to', async () => {
  const storage = new MemoryStorage()
  const done = (partition: number, end: string) => {
    const document = partitionDocument('w', partition)
    document.partition = { ...document.partition, done: true, sourceNextOffset: end }
    return document
  }
  await writeDoneRecord(storage, done(0, '120'))
  // A rerun after the backup grew records the new end beside the old one; a retried create is fine.
  await writeDoneRecord(storage, done(0, '1000'))
  await writeDoneRecord(storage, done(0, '1000'))
  await writeDoneRecord(storage, done(11, '7'))
  const listed = await listDoneRecords(storage, 'b', 'restore-1')
  assert.deepEqual(
    [...listed].map(([partition, { end }]) => [partition, end]),
    [
      ['orders/0', 1000n],
      ['orders/11', 7n]
    ]
  )
  const record = await readDoneRecord(storage, listed.get('orders/0')!.key)
  assert.equal(record.partition.sourceNextOffset, '1000')
  // Not restore states of their own.
  assert.deepEqual(await listRestoreStates(storage, 'b'), [])
})
