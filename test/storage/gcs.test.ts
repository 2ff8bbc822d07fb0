/**
 * The GCS backend against fake-gcs-server run as a real process (scripts/object-servers): the
 * storage contract, resumable uploads in chunks, missing buckets. fake-gcs-server checks no
 * credentials, so refused credentials are not tested here.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import { GcsStorage, type GcsStorageOptions } from '../../src/storage/gcs.ts'
import { useFakeGcs } from '../helpers/object-servers.ts'
import { storageContract } from './contract.ts'

const MiB = 1024 * 1024
const gcs = await useFakeGcs()

function storageFor(bucket: string, options: Partial<GcsStorageOptions> = {}): GcsStorage {
  return new GcsStorage({ bucket, endpoint: gcs.server.endpoint, projectId: 'kafka-backup-tests', ...options })
}

storageContract('gcs (fake-gcs-server)', async () => ({
  storage: storageFor(await gcs.createBucket()),
  cleanup: async () => undefined
}))

storageContract('gcs (fake-gcs-server, prefix, resumable uploads in 1 MiB chunks)', async () => ({
  storage: storageFor(await gcs.createBucket(), {
    prefix: 'backups/prod',
    resumableThreshold: MiB,
    chunkSize: MiB
  }),
  cleanup: async () => undefined
}))

function isCode(code: string, ...mustMention: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isBackupError(error) && error.code === code, `expected ${code}, got ${String(error)}`)
    for (const text of mustMention) {
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`)
    }
    return true
  }
}

function objectBytes(offset: number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) bytes[i] = ((offset + i) * 31 + ((offset + i) >>> 13)) & 0xff
  return bytes
}

function objectStream(size: number, chunkSize = 256 * 1024 + 11): Readable {
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < size; offset += chunkSize) {
        yield objectBytes(offset, Math.min(chunkSize, size - offset))
      }
    })(),
    { objectMode: false }
  )
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

describe('gcs storage', () => {
  test('a stream above the threshold goes up as a resumable upload in chunks and reads back by ranges', async () => {
    const bucket = await gcs.createBucket()
    const storage = storageFor(bucket, { prefix: 'kb', resumableThreshold: 2 * MiB, chunkSize: MiB })
    const size = 9 * MiB + 777
    const key = 'topics/t/0/00000000000000000000.seg'
    await storage.put(key, objectStream(size))
    assert.deepEqual(await storage.head(key), { key, size })
    assert.equal(sha256(await storage.get(key)), sha256(objectBytes(0, size)))
    assert.deepEqual(await storage.getRange(key, 3 * MiB - 5, 10), objectBytes(3 * MiB - 5, 10))
    const [files] = await gcs.client.bucket(bucket).getFiles({ prefix: 'kb/' })
    assert.deepEqual(
      files.map(file => file.name),
      [`kb/${key}`]
    )
    assert.equal(storage.location, `gs://${bucket}/kb`)
  })

  test('a resumable upload whose source fails creates no object and keeps the previous one', async () => {
    const bucket = await gcs.createBucket()
    const storage = storageFor(bucket, { resumableThreshold: MiB, chunkSize: MiB })
    await storage.put('seg', Buffer.from('previous'))
    const failing = Readable.from(
      (async function* () {
        yield objectBytes(0, 3 * MiB)
        throw new Error('segment writer crashed')
      })(),
      { objectMode: false }
    )
    await assert.rejects(storage.put('seg', failing), isCode('KB_STORAGE', 'segment writer crashed', 'seg'))
    assert.equal((await storage.get('seg')).toString(), 'previous')
    assert.deepEqual(await storage.list(''), [{ key: 'seg', size: 8 }])
  })

  test('a missing bucket is KB_STORAGE_NOT_FOUND naming the bucket', async () => {
    const storage = storageFor('kb-no-such-bucket', { maxRetries: 0 })
    await assert.rejects(storage.get('k'), isCode('KB_STORAGE_NOT_FOUND', 'bucket kb-no-such-bucket'))
    await assert.rejects(storage.getRange('k', 0, 1), isCode('KB_STORAGE_NOT_FOUND', 'bucket kb-no-such-bucket'))
    await assert.rejects(storage.stream('k'), isCode('KB_STORAGE_NOT_FOUND', 'bucket kb-no-such-bucket'))
    await assert.rejects(storage.list(''), isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket', 'storage.bucket'))
    await assert.rejects(storage.put('k', Buffer.from('x')), isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket'))
    await assert.rejects(
      storage.put('big', objectStream(12 * MiB)),
      isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket')
    )
  })

  test('an unreachable endpoint is a KB_STORAGE error naming the location and the key', async () => {
    const storage = new GcsStorage({ bucket: 'anything', endpoint: 'http://127.0.0.1:9', maxRetries: 0 })
    await assert.rejects(storage.get('topics/x'), isCode('KB_STORAGE', 'gs://anything', 'topics/x'))
  })

  test('a service-account key that is not JSON is refused without quoting it', () => {
    const secret = '{"private_key": "-----BEGIN PRIVATE KEY-----secret'
    assert.throws(
      () => new GcsStorage({ bucket: 'b', serviceAccountJson: secret }),
      (error: unknown) => {
        isCode('KB_STORAGE', 'storage.service_account_json')(error)
        assert.ok(!(error as Error).message.includes('secret'))
        return true
      }
    )
    assert.throws(() => new GcsStorage({ bucket: '' }), isCode('KB_STORAGE', 'storage.bucket'))
    assert.throws(() => new GcsStorage({ bucket: 'b', chunkSize: 1000 }), isCode('KB_STORAGE', '256 KiB'))
  })

  test('a service-account key file that cannot be read is KB_STORAGE naming storage.service_account_json and the file', async () => {
    // fake-gcs-server takes any credentials, so only the way to the file is checked here: the
    // key is read before any request, and the emulator would accept a request all the same.
    const keyFile = join(mkdtempSync(join(tmpdir(), 'kb-gcs-')), 'missing-key.json')
    const storage = storageFor(await gcs.createBucket(), { serviceAccountJson: keyFile, maxRetries: 0 })
    await assert.rejects(storage.list(''), isCode('KB_STORAGE', 'storage.service_account_json', keyFile, 'ENOENT'))
    await assert.rejects(
      storage.put('k', Buffer.from('x')),
      isCode('KB_STORAGE', 'storage.service_account_json', keyFile)
    )
  })
})
