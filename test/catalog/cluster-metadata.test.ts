/** metadata/kafka.json is checked like every catalogue document before a restore uses it. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  legacyClusterMetadataKey,
  readClusterMetadata,
  writeClusterMetadata
} from '../../src/catalog/cluster-metadata.ts'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { manifestBase } from '../../src/catalog/manifest.ts'
import { legacyKey } from '../../src/catalog/revisions.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'

const valid = {
  format: 'kafka-backup-cluster-metadata',
  formatVersion: 1,
  capturedAt: '2026-11-30T12:00:00.000Z',
  clusterId: 'abc',
  acls: {
    authorizer: true,
    bindings: [
      {
        resourceType: 'TOPIC',
        resourceName: 'orders',
        patternType: 'LITERAL',
        principal: 'User:alice',
        host: '*',
        operation: 'READ',
        permissionType: 'ALLOW'
      }
    ]
  },
  scramUsers: [{ user: 'alice', mechanism: 'SCRAM-SHA-256', iterations: 8192 }]
}

async function read(document: unknown) {
  const storage = new MemoryStorage()
  await storage.replace(legacyClusterMetadataKey('b'), Buffer.from(JSON.stringify(document)))
  return readClusterMetadata(storage, 'b')
}

test('reads a valid cluster metadata document', async () => {
  assert.deepEqual(await read(valid), valid)
})

test('refuses a cluster metadata document with an unknown ACL operation or impossible SCRAM iterations, naming the field', async () => {
  const badOperation = structuredClone(valid)
  badOperation.acls.bindings[0]!.operation = 'READ_EVERYTHING'
  await assert.rejects(read(badOperation), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'KB_BACKUP_CORRUPT')
    assert.match(error.message, /metadata\/kafka\.json: acls\.bindings\[0\]\.operation: .*\(found "READ_EVERYTHING"\)$/)
    return true
  })
  const badIterations = structuredClone(valid)
  badIterations.scramUsers[0]!.iterations = 12
  await assert.rejects(read(badIterations), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'KB_BACKUP_CORRUPT')
    assert.match(error.message, /metadata\/kafka\.json: scramUsers\[0\]\.iterations: .*\(found 12\)$/)
    return true
  })
})

test('validate reports a damaged metadata/kafka.json as an error naming the file', async () => {
  const storage = new MemoryStorage()
  const now = '2026-11-30T12:00:00.000Z'
  const manifest = {
    format: 'kafka-backup',
    formatVersion: 1,
    toolVersion: 'test',
    backupId: 'b',
    createdAt: now,
    updatedAt: now,
    source: { clusterId: null, bootstrapServers: [] },
    compression: { codec: 'zstd', level: 3 },
    topics: [],
    consumerGroups: [],
    runs: []
  }
  await storage.replace(legacyKey(manifestBase('b')), Buffer.from(JSON.stringify(manifest)))
  assert.equal((await validateBackup(storage, 'b')).valid, true, 'a backup without cluster metadata is valid')
  await storage.replace(legacyClusterMetadataKey('b'), Buffer.from('{"format": "kafka-backup-cluster-metadata"'))
  const report = await validateBackup(storage, 'b')
  assert.equal(report.valid, false)
  assert.deepEqual(
    report.problems.map(p => [p.severity, p.code, p.key]),
    [['error', 'KB_BACKUP_CORRUPT', 'b/metadata/kafka.json']]
  )
})

test('each capture is a new revision beside the older layout file: nothing is overwritten and the newest is read', async () => {
  const storage = new MemoryStorage()
  await storage.replace(legacyClusterMetadataKey('b'), Buffer.from(JSON.stringify(valid)))
  const later = { ...structuredClone(valid), capturedAt: '2026-12-01T12:00:00.000Z', clusterId: 'later' }
  await writeClusterMetadata(storage, 'b', later as never)
  await writeClusterMetadata(storage, 'b', { ...later, clusterId: 'latest' } as never)
  assert.deepEqual(
    (await storage.list('b/metadata/')).map(o => o.key),
    ['b/metadata/kafka.json', 'b/metadata/kafka/000000000001.json', 'b/metadata/kafka/000000000002.json']
  )
  assert.equal(JSON.parse((await storage.get('b/metadata/kafka.json')).toString()).clusterId, 'abc')
  assert.equal((await readClusterMetadata(storage, 'b'))?.clusterId, 'latest')
})
