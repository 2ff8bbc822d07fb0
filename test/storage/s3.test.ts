/**
 * The S3 backend against SeaweedFS run as a real process (scripts/object-servers): the storage
 * contract, then what only S3 has: multipart uploads with parallel parts, their abort when the
 * source fails, credentials, missing buckets, and the server killed mid-upload.
 */

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand
} from '@aws-sdk/client-s3'
import { isBackupError } from '../../src/errors.ts'
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3.ts'
import { restartObjectServer, stopObjectServer, useS3Server } from '../helpers/object-servers.ts'
import { storageContract } from './contract.ts'

const MiB = 1024 * 1024
const s3 = await useS3Server()

const storageFor = s3.storageFor

storageContract('s3 (SeaweedFS, default part sizes)', async () => ({
  storage: storageFor(await s3.createBucket()),
  cleanup: async () => undefined
}))

storageContract('s3 (SeaweedFS, prefix, 5 MiB multipart threshold and parts)', async () => ({
  storage: storageFor(await s3.createBucket(), {
    prefix: '/backups/prod/',
    multipartThreshold: 5 * MiB,
    multipartPartSize: 5 * MiB,
    maxConcurrentUploads: 3
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

/** Byte i of a test object: cheap to compute, and no two parts of 5 MiB are alike. */
function byteAt(i: number): number {
  return (i * 31 + (i >>> 13)) & 0xff
}

function objectBytes(offset: number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) bytes[i] = byteAt(offset + i)
  return bytes
}

/** `size` bytes in odd-sized chunks; `onChunk` sees the bytes produced so far. */
function objectStream(size: number, { chunkSize = MiB + 7, onChunk = (_produced: number) => {} } = {}): Readable {
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < size; offset += chunkSize) {
        const chunk = objectBytes(offset, Math.min(chunkSize, size - offset))
        yield chunk
        onChunk(offset + chunk.length)
      }
    })(),
    { objectMode: false }
  )
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function etagOf(bucket: string, key: string): Promise<string> {
  const head = await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
  return head.ETag ?? ''
}

async function pendingUploads(bucket: string): Promise<string[]> {
  const listed = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
  return (listed.Uploads ?? []).map(upload => `${upload.Key} ${upload.UploadId}`)
}

describe('s3 storage', () => {
  test('a stream larger than the threshold goes up as a multipart upload of part-size parts', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, { prefix: 'kb', multipartThreshold: 6 * MiB, multipartPartSize: 5 * MiB })
    const size = 23 * MiB + 4321
    await storage.put('topics/t/0/00000000000000000000.seg', objectStream(size))
    // S3's ETag of a multipart object is md5(part md5s)-<number of parts>.
    assert.match(await etagOf(bucket, 'kb/topics/t/0/00000000000000000000.seg'), /-5"?$/)
    const stored = await storage.get('topics/t/0/00000000000000000000.seg')
    assert.equal(sha256(stored), sha256(objectBytes(0, size)))
    const boundary = 10 * MiB
    assert.deepEqual(
      await storage.getRange('topics/t/0/00000000000000000000.seg', boundary - 100, 200),
      objectBytes(boundary - 100, 200)
    )
    assert.equal(storage.location, `s3://${bucket}/kb`)
  })

  test('a stream that ends within the threshold and one part goes up as one PutObject, a longer one in parts', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, { multipartThreshold: 12 * MiB, multipartPartSize: 5 * MiB })
    await storage.put('below', objectStream(5 * MiB - 1))
    assert.doesNotMatch(await etagOf(bucket, 'below'), /-\d+"?$/)
    // Past one part a stream is not held whole in memory to find out whether it stays under the threshold.
    await storage.put('above', objectStream(11 * MiB))
    assert.match(await etagOf(bucket, 'above'), /-3"?$/)
    assert.deepEqual(await storage.list(''), [
      { key: 'above', size: 11 * MiB },
      { key: 'below', size: 5 * MiB - 1 }
    ])
  })

  test('a Buffer at or above the threshold is uploaded in parts, sliced not copied', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, { multipartThreshold: 5 * MiB, multipartPartSize: 5 * MiB })
    const body = objectBytes(0, 11 * MiB)
    await storage.put('buffer', body)
    assert.match(await etagOf(bucket, 'buffer'), /-3"?$/)
    await storage.replace('small', Buffer.from('{"v":1}'))
    assert.doesNotMatch(await etagOf(bucket, 'small'), /-\d+"?$/)
    assert.equal(sha256(await storage.get('buffer')), sha256(body))
  })

  test('a source stream that fails mid multipart upload aborts the upload: no parts, no object', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, { multipartThreshold: 5 * MiB, multipartPartSize: 5 * MiB })
    await storage.put('seg', Buffer.from('previous'))
    const failing = Readable.from(
      (async function* () {
        yield objectBytes(0, 8 * MiB)
        yield objectBytes(8 * MiB, 8 * MiB)
        throw new Error('segment writer crashed')
      })(),
      { objectMode: false }
    )
    await assert.rejects(storage.put('seg', failing), isCode('KB_STORAGE', 'segment writer crashed', 'seg'))
    assert.deepEqual(await pendingUploads(bucket), [])
    assert.deepEqual(await storage.incompleteUploads(), [])
    assert.equal((await storage.get('seg')).toString(), 'previous')
  })

  test('abortIncompleteUploads removes uploads left by a crashed writer under its prefix only', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, { prefix: 'mine' })
    const left = await s3.client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mine/topics/t/0/0.seg' })
    )
    const other = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'theirs/x.seg' }))
    assert.deepEqual(
      (await storage.incompleteUploads()).map(upload => [upload.key, upload.uploadId]),
      [['topics/t/0/0.seg', left.UploadId]]
    )
    assert.equal(await storage.abortIncompleteUploads('', new Date(Date.now() + 60_000)), 1)
    assert.deepEqual(await storage.incompleteUploads(), [])
    assert.deepEqual(await pendingUploads(bucket), [`theirs/x.seg ${other.UploadId}`])
  })

  test('wrong credentials are KB_STORAGE_ACCESS_DENIED naming the settings, never the secret', async () => {
    const bucket = await s3.createBucket()
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' }))
    const wrongSecret = 'wrong-secret-0123456789abcdefghijklmnop'
    const cases = [
      storageFor(bucket, { secretKey: wrongSecret }),
      storageFor(bucket, { accessKey: 'no-such-access-key', secretKey: wrongSecret })
    ]
    for (const storage of cases) {
      for (const attempt of [
        () => storage.get('k'),
        () => storage.put('k', Buffer.from('y')),
        () => storage.list(''),
        () => storage.put('big', objectStream(12 * MiB))
      ]) {
        await assert.rejects(attempt(), (error: unknown) => {
          isCode('KB_STORAGE_ACCESS_DENIED', 'storage.access_key and storage.secret_key', bucket)(error)
          assert.ok(!(error as Error).message.includes(wrongSecret), 'the secret is never in the message')
          return true
        })
      }
      await storage.close()
    }
    assert.deepEqual(await pendingUploads(bucket), [])
  })

  test('a missing bucket is KB_STORAGE_NOT_FOUND naming the bucket', async () => {
    const storage = storageFor('kb-no-such-bucket', { multipartThreshold: 5 * MiB, multipartPartSize: 5 * MiB })
    await assert.rejects(storage.get('k'), isCode('KB_STORAGE_NOT_FOUND', 'bucket kb-no-such-bucket', 'storage.bucket'))
    await assert.rejects(storage.put('k', Buffer.from('x')), isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket'))
    await assert.rejects(storage.list('topics/'), isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket'))
    await assert.rejects(storage.stream('k'), isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket'))
    await assert.rejects(
      storage.put('big', objectStream(12 * MiB)),
      isCode('KB_STORAGE_NOT_FOUND', 'kb-no-such-bucket')
    )
  })

  test('an unreachable endpoint is a KB_STORAGE error naming the location and the key', async () => {
    const storage = new S3Storage({
      bucket: 'anything',
      endpoint: 'http://127.0.0.1:9',
      accessKey: 'a',
      secretKey: 'b',
      forcePathStyle: true,
      maxAttempts: 1
    })
    await assert.rejects(storage.get('topics/x'), isCode('KB_STORAGE', 's3://anything', 'topics/x'))
  })

  test('AWS without a region in the settings or the environment names storage.region', async t => {
    // Nothing may name a region, or the SDK would send the request to AWS.
    const isolated = { AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined, AWS_PROFILE: undefined }
    const saved = Object.fromEntries(Object.keys(isolated).map(name => [name, process.env[name]]))
    const savedConfigFile = process.env.AWS_CONFIG_FILE
    for (const name of Object.keys(isolated)) delete process.env[name]
    process.env.AWS_CONFIG_FILE = '/nonexistent/kafka-backup-test-aws-config'
    t.after(() => {
      for (const [name, value] of Object.entries({ ...saved, AWS_CONFIG_FILE: savedConfigFile })) {
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      }
    })
    const storage = new S3Storage({ bucket: 'some-bucket', accessKey: 'a', secretKey: 'b', maxAttempts: 1 })
    await assert.rejects(storage.get('k'), isCode('KB_STORAGE', 'storage.region', 's3://some-bucket'))
  })

  test('settings are checked when the storage is made', () => {
    assert.throws(() => new S3Storage({ bucket: '' }), isCode('KB_STORAGE', 'storage.bucket'))
    assert.throws(() => new S3Storage({ bucket: 'b', accessKey: 'a' }), isCode('KB_STORAGE', 'storage.secret_key'))
    assert.throws(
      () => new S3Storage({ bucket: 'b', multipartPartSize: 4 * MiB }),
      isCode('KB_STORAGE', 'storage.multipart_part_size', '5 MiB')
    )
    assert.throws(() => new S3Storage({ bucket: 'b', maxConcurrentUploads: 0 }), isCode('KB_STORAGE', 'max_concurrent'))
    assert.throws(() => new S3Storage({ bucket: 'b', prefix: 'a/../b' }), isCode('KB_STORAGE', '..'))
  })

  // Last: it kills and restarts the server the other tests use.
  test('the server killed mid-upload: the put fails with KB_STORAGE, nothing is visible, a retry after restart succeeds', async t => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket, {
      prefix: 'backup-1',
      multipartThreshold: 5 * MiB,
      multipartPartSize: 5 * MiB,
      maxConcurrentUploads: 4,
      maxAttempts: 2
    })
    const key = 'topics/orders/0/00000000000000000000.seg'
    const size = 160 * MiB
    let killed: Promise<void> | undefined
    const putting = storage.put(
      key,
      objectStream(size, {
        onChunk: produced => {
          if (killed === undefined && produced >= 40 * MiB) {
            killed = stopObjectServer(s3.server, { kill: true })
          }
        }
      })
    )
    await assert.rejects(putting, (error: unknown) => {
      isCode('KB_STORAGE', key, `s3://${bucket}/backup-1`)(error)
      // The server failed, not the source: tearing the pipeline down must not read as one.
      assert.doesNotMatch((error as Error).message, /source stream failed/)
      t.diagnostic(`the put failed with: ${(error as Error).message}`)
      return true
    })
    assert.ok(killed, 'the server was killed while the object was being uploaded')
    await killed
    await restartObjectServer(s3.server)

    assert.equal(await storage.head(key), undefined, 'no partial object')
    assert.deepEqual(await storage.list(''), [])
    // The abort could not reach a dead server: the upload it left is found and removed.
    const leftover = await storage.incompleteUploads()
    assert.equal(leftover.length, 1, `the killed upload is left behind: ${JSON.stringify(leftover)}`)
    assert.equal(await storage.abortIncompleteUploads(), 1)
    assert.deepEqual(await pendingUploads(bucket), [])

    await storage.put(key, objectStream(size))
    assert.deepEqual(await storage.head(key), { key, size })
    assert.deepEqual(await storage.getRange(key, size - 1000, 1000), objectBytes(size - 1000, 1000))
    assert.deepEqual(await storage.getRange(key, 77 * MiB - 10, 20), objectBytes(77 * MiB - 10, 20))
    await storage.close()
  })
})

describe('s3 credentials as operators give them', () => {
  /**
   * Runs `body` with AWS_* variables replaced by `env` (the rest of the AWS environment unset,
   * so that a developer's own ~/.aws files or keys do not decide the outcome, and the instance
   * metadata service, which is not on loopback, is never asked).
   */
  async function withAwsEnv(env: Record<string, string>, body: () => Promise<void>): Promise<void> {
    const saved = Object.entries(process.env).filter(([name]) => name.startsWith('AWS_'))
    for (const [name] of saved) delete process.env[name]
    const none = join(mkdtempSync(join(tmpdir(), 'kb-aws-')), 'none')
    Object.assign(process.env, {
      AWS_SHARED_CREDENTIALS_FILE: none,
      AWS_CONFIG_FILE: none,
      AWS_EC2_METADATA_DISABLED: 'true',
      ...env
    })
    try {
      await body()
    } finally {
      for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name]
      Object.assign(process.env, Object.fromEntries(saved))
    }
  }

  const chainStorage = (bucket: string, options: Partial<S3StorageOptions> = {}) =>
    storageFor(bucket, { accessKey: undefined, secretKey: undefined, ...options })

  test('keys from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) work; wrong ones are KB_STORAGE_ACCESS_DENIED naming the chain', async () => {
    const bucket = await s3.createBucket()
    await withAwsEnv(
      { AWS_ACCESS_KEY_ID: s3.server.accessKey, AWS_SECRET_ACCESS_KEY: s3.server.secretKey },
      async () => {
        const storage = chainStorage(bucket)
        await storage.put('from-env', Buffer.from('env'))
        assert.equal((await storage.get('from-env')).toString(), 'env')
        await storage.close()
      }
    )
    await withAwsEnv(
      { AWS_ACCESS_KEY_ID: s3.server.accessKey, AWS_SECRET_ACCESS_KEY: 'wrong-secret-from-env' },
      async () => {
        const storage = chainStorage(bucket)
        await assert.rejects(
          storage.get('from-env'),
          isCode('KB_STORAGE_ACCESS_DENIED', 'AWS credential chain', 'AWS_ACCESS_KEY_ID', bucket)
        )
        await storage.close()
      }
    )
  })

  test('storage.profile reads its keys from the shared credentials file; a profile with wrong keys is KB_STORAGE_ACCESS_DENIED naming it', async () => {
    const bucket = await s3.createBucket()
    const file = join(mkdtempSync(join(tmpdir(), 'kb-aws-')), 'credentials')
    writeFileSync(
      file,
      [
        '[default]',
        'aws_access_key_id = not-this-one',
        'aws_secret_access_key = not-this-secret',
        '[kafka-backup]',
        `aws_access_key_id = ${s3.server.accessKey}`,
        `aws_secret_access_key = ${s3.server.secretKey}`,
        '[stale]',
        `aws_access_key_id = ${s3.server.accessKey}`,
        'aws_secret_access_key = a-rotated-secret',
        ''
      ].join('\n')
    )
    await withAwsEnv({ AWS_SHARED_CREDENTIALS_FILE: file }, async () => {
      const storage = chainStorage(bucket, { profile: 'kafka-backup' })
      await storage.put('from-profile', Buffer.from('profile'))
      assert.equal((await storage.get('from-profile')).toString(), 'profile')
      await storage.close()
      const stale = chainStorage(bucket, { profile: 'stale' })
      await assert.rejects(
        stale.list(''),
        isCode('KB_STORAGE_ACCESS_DENIED', 'the profile stale (storage.profile)', 'AWS_SHARED_CREDENTIALS_FILE')
      )
      await stale.close()
    })
  })

  /** The first request the storage would send, signed, stopped before it leaves. */
  async function firstRequest(
    storage: S3Storage
  ): Promise<{ hostname: string; path: string; headers: Record<string, string> }> {
    let seen: { hostname: string; path: string; headers: Record<string, string> } | undefined
    storage.client.middlewareStack.add(
      () => async args => {
        seen = args.request as typeof seen
        throw new Error('stopped before sending')
      },
      { step: 'deserialize', name: 'capture-request' }
    )
    await assert.rejects(storage.get('k'), /stopped before sending/)
    await storage.close()
    assert.ok(seen !== undefined)
    return seen
  }

  test('storage.session_token is signed into every request with the static keys', async () => {
    const request = await firstRequest(storageFor('bucket-a', { sessionToken: 'session-token-1' }))
    assert.equal(request.headers['x-amz-security-token'], 'session-token-1')
    assert.match(request.headers['authorization'] ?? '', /^AWS4-HMAC-SHA256 Credential=/)
    const without = await firstRequest(storageFor('bucket-a'))
    assert.equal(without.headers['x-amz-security-token'], undefined)
  })

  test('force_path_style false addresses the bucket as a host name (virtual-hosted), true as the first path segment', async () => {
    // Only the addressing is checked: a loopback name per bucket does not resolve on this machine.
    const endpoint = 'http://s3.example.test:9000'
    const virtual = await firstRequest(storageFor('kb-bucket', { endpoint, forcePathStyle: false }))
    assert.deepEqual([virtual.hostname, virtual.path], ['kb-bucket.s3.example.test', '/k'])
    const pathStyle = await firstRequest(storageFor('kb-bucket', { endpoint, forcePathStyle: true }))
    assert.deepEqual([pathStyle.hostname, pathStyle.path], ['s3.example.test', '/kb-bucket/k'])
  })

  test('settings: session_token needs the static keys, profile excludes them', () => {
    assert.throws(
      () => chainStorage('kb-bucket', { sessionToken: 't' }),
      isCode('KB_STORAGE', 'storage.session_token needs storage.access_key')
    )
    assert.throws(
      () => storageFor('kb-bucket', { profile: 'p' }),
      isCode('KB_STORAGE', 'storage.profile is not allowed together with storage.access_key')
    )
  })
})
