import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type PartitionIndex, readPartitionIndex, writePartitionIndex } from '../../src/catalog/manifest.ts'
import { revisionKey, storedRevisions, supersededRevisions, writeNextRevision } from '../../src/catalog/revisions.ts'
import { isBackupError } from '../../src/errors.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'

function newIndex(): PartitionIndex {
  return {
    format: 'kafka-backup',
    formatVersion: 1,
    topic: 'orders',
    partition: 0,
    startOffset: '0',
    nextOffset: '0',
    segments: [],
    gaps: [],
    updatedAt: new Date().toISOString()
  }
}

test('each write of an index is a new revision, the newest is read, and older ones are superseded', async () => {
  const storage = new MemoryStorage()
  const index = newIndex()
  for (const nextOffset of ['10', '20', '30']) {
    index.nextOffset = nextOffset
    await writePartitionIndex(storage, 'b', index)
  }
  assert.deepEqual(
    (await storage.list('b/')).map(o => o.key),
    [1, 2, 3].map(revision => revisionKey('b/topics/orders/0/index', revision))
  )
  const read = await readPartitionIndex(storage, 'b', 'orders', 0)
  assert.equal(read?.nextOffset, '30')
  assert.equal(read?.revision, 3)
  const stored = await storedRevisions(storage, 'b/topics/orders/0/index')
  assert.deepEqual(
    supersededRevisions(stored).map(r => r.revision),
    [1, 2]
  )
})

test('a writer behind the newest revision is refused with KB_BACKUP_BUSY and the newer checkpoint stays', async () => {
  const storage = new MemoryStorage()
  await writePartitionIndex(storage, 'b', newIndex())
  const first = (await readPartitionIndex(storage, 'b', 'orders', 0))!
  const second = (await readPartitionIndex(storage, 'b', 'orders', 0))!
  first.nextOffset = '100'
  await writePartitionIndex(storage, 'b', first)
  second.nextOffset = '50'
  await assert.rejects(writePartitionIndex(storage, 'b', second), error => {
    assert.ok(isBackupError(error, 'KB_BACKUP_BUSY'), String(error))
    assert.match(
      error.message,
      /index\/000000000002\.json was written by another process while this one held revision 1/
    )
    return true
  })
  assert.equal(second.revision, 1, 'the refused writer still holds the revision it read')
  assert.equal((await readPartitionIndex(storage, 'b', 'orders', 0))?.nextOffset, '100')
})

test('a create retried after a lost response finds its own bytes and counts as written', async () => {
  const storage = new MemoryStorage()
  const document = { format: 'x', revision: 0 }
  // The first attempt landed, but its answer was lost: the same bytes are already there.
  await storage.create(revisionKey('doc', 1), Buffer.from(`${JSON.stringify({ ...document, revision: 1 }, null, 2)}\n`))
  await writeNextRevision(storage, 'doc', document, 'document')
  assert.equal(document.revision, 1)
})

test('an index whose revision field is not the revision its key names is refused', async () => {
  const storage = new MemoryStorage()
  await storage.create(
    revisionKey('b/topics/orders/0/index', 2),
    Buffer.from(JSON.stringify({ ...newIndex(), revision: 1 }))
  )
  await assert.rejects(
    readPartitionIndex(storage, 'b', 'orders', 0),
    error =>
      isBackupError(error, 'KB_BACKUP_CORRUPT') &&
      /revision: is not the revision its key names \(2\)/.test(error.message)
  )
})
