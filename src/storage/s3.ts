/**
 * Amazon S3 and S3-compatible servers, on the AWS SDK v3. Objects appear whole or not at all:
 * a PutObject and a CompleteMultipartUpload are each atomic, so a key is never seen half
 * written, and a multipart upload that fails is aborted so that its parts stop costing money.
 *
 * Memory bound of puts of streams: the first min(multipartThreshold, multipartPartSize) bytes
 * are held to decide between one PutObject (the stream ended there) and a multipart upload.
 * `maxConcurrentUploads` parts are in flight across all the puts running at once (a backup
 * streams one segment per partition): each put gets an equal share, at least one, plus the part
 * it is filling. So the puts of one storage hold about
 * (maxConcurrentUploads + puts running) x multipartPartSize bytes (10 partitions with the
 * defaults: 200 MiB), whatever the objects' sizes; max_concurrent_partitions bounds the number
 * of puts. (Measured: a 2 GB backup of 4 partitions peaked at 901 MiB RSS when each put had its
 * own 10 parts and held 100 MiB before deciding.) A Buffer is already in memory and is sliced
 * into parts, never copied.
 */

import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { BackupError, isBackupError } from '../errors.ts'
import { MiB } from '../units.ts'
import {
  type FailureKind,
  type ObjectOperation,
  type ObjectStoreNames,
  objectStoreFailure,
  reasonOf
} from './errors-map.ts'
import { checkKey, checkPrefix, checkRange, emptyRange, rangePastEnd, unsatisfiableRange } from './keys.ts'
import { ObjectStore } from './object-store.ts'
import { s3MaxParts, s3MinPartSize } from './s3-limits.ts'
import type { ObjectInfo } from './storage.ts'

export interface S3StorageOptions {
  bucket: string
  /** Unset: from the AWS environment (AWS_REGION, profile); `us-east-1` with a custom endpoint. */
  region?: string
  /** A '/'-separated key prefix every key lives under. */
  prefix?: string
  /** URL of an S3-compatible server. Unset: AWS. */
  endpoint?: string
  /** With `secretKey`: static credentials. Unset: the standard AWS credential chain. */
  accessKey?: string
  secretKey?: string
  /** With `accessKey`: the session token of temporary credentials. */
  sessionToken?: string
  /** A profile of the shared credentials/config files, for the AWS credential chain. */
  profile?: string
  forcePathStyle?: boolean
  /** Objects of this size and larger go up in parts. Default 100 MiB. */
  multipartThreshold?: number
  /** Size of each part, at least 5 MiB. Default 10 MiB. */
  multipartPartSize?: number
  /** Parts uploaded in parallel per object. Default 10. */
  maxConcurrentUploads?: number
  /** SDK attempts per request (the first and its retries). Default 3, the SDK's own. */
  maxAttempts?: number
}

/** A multipart upload that was started and never completed. */
export interface IncompleteUpload {
  key: string
  uploadId: string
  initiated: Date | undefined
}

function settingError(message: string, location: string): BackupError {
  return new BackupError('KB_STORAGE', message, { location, operation: 'open' })
}

function isPositiveInteger(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0
}

export class S3Storage extends ObjectStore {
  readonly location: string
  readonly bucket: string
  /** The key prefix with a trailing '/', or '' without one. */
  readonly keyPrefix: string
  readonly multipartThreshold: number
  protected readonly singleRequestBytes: number
  /** Uploads under way, which share maxConcurrentUploads parts in flight. */
  #uploadsRunning = 0
  readonly multipartPartSize: number
  readonly maxConcurrentUploads: number
  readonly client: S3Client
  readonly #names: ObjectStoreNames

  constructor(options: S3StorageOptions) {
    super()
    const {
      bucket,
      region,
      prefix,
      endpoint,
      accessKey,
      secretKey,
      sessionToken,
      profile,
      forcePathStyle = false,
      multipartThreshold = 100 * MiB,
      multipartPartSize = 10 * MiB,
      maxConcurrentUploads = 10,
      maxAttempts
    } = options
    if (typeof bucket !== 'string' || bucket === '') {
      throw settingError('the S3 storage needs a bucket (storage.bucket)', 's3://')
    }
    const trimmedPrefix = (prefix ?? '').replace(/^\/+|\/+$/g, '')
    this.location = trimmedPrefix === '' ? `s3://${bucket}` : `s3://${bucket}/${trimmedPrefix}`
    if (trimmedPrefix !== '') {
      checkKey(trimmedPrefix, this.location, 'open')
    }
    if ((accessKey === undefined) !== (secretKey === undefined)) {
      throw settingError(
        'storage.access_key and storage.secret_key must be set together (or neither, for the AWS credential chain)',
        this.location
      )
    }
    if (sessionToken !== undefined && accessKey === undefined) {
      throw settingError('storage.session_token needs storage.access_key and storage.secret_key', this.location)
    }
    if (profile !== undefined && accessKey !== undefined) {
      throw settingError('storage.profile is not allowed together with storage.access_key', this.location)
    }
    if (!isPositiveInteger(multipartPartSize) || multipartPartSize < s3MinPartSize) {
      throw settingError(
        `storage.multipart_part_size must be an integer of at least ${s3MinPartSize} bytes (5 MiB), not ${multipartPartSize}`,
        this.location
      )
    }
    if (!isPositiveInteger(multipartThreshold)) {
      throw settingError(
        `storage.multipart_threshold must be a positive integer, not ${multipartThreshold}`,
        this.location
      )
    }
    if (!isPositiveInteger(maxConcurrentUploads)) {
      throw settingError(
        `storage.max_concurrent_uploads must be a positive integer, not ${maxConcurrentUploads}`,
        this.location
      )
    }
    this.bucket = bucket
    this.keyPrefix = trimmedPrefix === '' ? '' : `${trimmedPrefix}/`
    this.multipartThreshold = multipartThreshold
    this.multipartPartSize = multipartPartSize
    this.singleRequestBytes = Math.min(multipartThreshold, multipartPartSize)
    this.maxConcurrentUploads = maxConcurrentUploads
    this.#names = {
      location: this.location,
      containerKind: 'bucket',
      containerName: bucket,
      containerSetting: 'storage.bucket',
      credentialHint:
        accessKey !== undefined
          ? `storage.access_key and storage.secret_key${sessionToken === undefined ? '' : ' and storage.session_token'}`
          : profile !== undefined
            ? `the profile ${profile} (storage.profile) in the shared credentials file (~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE)`
            : 'the AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role), or set storage.access_key and storage.secret_key'
    }
    const config: S3ClientConfig = {
      region: region ?? (endpoint === undefined ? undefined : 'us-east-1'),
      forcePathStyle,
      followRegionRedirects: true,
      // Parts and ranged reads run in parallel per object and across partitions: the SDK's
      // default of 50 sockets would queue them behind each other.
      requestHandler: { httpsAgent: { maxSockets: 200 }, httpAgent: { maxSockets: 200 } }
    }
    if (endpoint !== undefined) {
      config.endpoint = endpoint
      // S3-compatible servers differ in their support of the flexible checksums that the SDK
      // sends by default since 2025; S3 itself gets them (the SDK's default) for integrity.
      config.requestChecksumCalculation = 'WHEN_REQUIRED'
      config.responseChecksumValidation = 'WHEN_REQUIRED'
    }
    if (accessKey !== undefined && secretKey !== undefined) {
      config.credentials = { accessKeyId: accessKey, secretAccessKey: secretKey, sessionToken }
    }
    if (profile !== undefined) {
      config.profile = profile
    }
    if (maxAttempts !== undefined) {
      config.maxAttempts = maxAttempts
    }
    this.client = new S3Client(config)
  }

  async get(key: string): Promise<Buffer> {
    checkKey(key, this.location, 'get')
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#fullKey(key) }))
      return await bodyBytes(response.Body)
    } catch (error) {
      throw this.failure(error, key, 'get')
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    checkKey(key, this.location, 'getRange')
    checkRange(key, offset, length, this.location, 'getRange')
    if (length === 0) {
      return emptyRange(this, key, offset)
    }
    let bytes: Buffer
    let total: number | undefined
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.#fullKey(key),
          Range: `bytes=${offset}-${offset + length - 1}`
        })
      )
      total = totalFromContentRange(response.ContentRange)
      bytes = await bodyBytes(response.Body)
      if (response.ContentRange === undefined) {
        // A server that ignored the Range header sent the whole object.
        total = bytes.length
        bytes = bytes.subarray(offset, offset + length)
      }
    } catch (error) {
      if (statusOf(error) === 416) {
        // S3 answers a range that starts at or past the end with 416, and no size.
        throw await unsatisfiableRange(this, key, offset, length)
      }
      throw this.failure(error, key, 'getRange')
    }
    if (bytes.length !== length) {
      // A range that runs past the end is served up to the end.
      throw rangePastEnd(key, offset, length, total ?? offset + bytes.length, this.location, 'getRange')
    }
    return bytes
  }

  async stream(key: string): Promise<Readable> {
    checkKey(key, this.location, 'stream')
    let body: Readable
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#fullKey(key) }))
      body = response.Body as Readable
    } catch (error) {
      throw this.failure(error, key, 'stream')
    }
    const failure = (error: unknown) => this.failure(error, key, 'stream')
    // A connection that breaks mid-object surfaces as a KB_STORAGE error naming the key;
    // destroying the returned stream ends the generator, which destroys the response.
    return Readable.from(
      (async function* () {
        try {
          yield* body
        } catch (error) {
          throw failure(error)
        }
      })(),
      { objectMode: false }
    )
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, this.location, 'head')
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#fullKey(key) }))
      return { key, size: response.ContentLength ?? 0 }
    } catch (error) {
      // A HEAD answer has no body, so a missing bucket looks like a missing key here.
      if (statusOf(error) === 404) {
        return undefined
      }
      throw this.failure(error, key, 'head')
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, this.location, 'list')
    const found: ObjectInfo[] = []
    let continuationToken: string | undefined
    do {
      let page: ListObjectsV2CommandOutput
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.#fullKey(prefix),
            ContinuationToken: continuationToken
          })
        )
      } catch (error) {
        throw this.failure(error, prefix, 'list')
      }
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(this.keyPrefix.length)
        // Folder placeholders (`a/b/`) made by consoles are not objects of ours.
        if (key !== undefined && key !== '' && !key.endsWith('/')) {
          found.push({ key, size: object.Size ?? 0 })
        }
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (continuationToken !== undefined)
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.location, 'delete')
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#fullKey(key) }))
    } catch (error) {
      if (statusOf(error) === 404 && errorName(error) !== 'NoSuchBucket') {
        return
      }
      throw this.failure(error, key, 'delete')
    }
  }

  async close(): Promise<void> {
    this.client.destroy()
  }

  /**
   * Multipart uploads under this storage's prefix that were started and never completed or
   * aborted: what a process killed mid-upload leaves behind (a bucket lifecycle rule
   * `AbortIncompleteMultipartUpload` also removes them, after days).
   */
  async incompleteUploads(): Promise<IncompleteUpload[]> {
    const found: IncompleteUpload[] = []
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    do {
      let page: ListMultipartUploadsCommandOutput
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.keyPrefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker
          })
        )
      } catch (error) {
        throw this.failure(error, '', 'abortUploads')
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== undefined && upload.UploadId !== undefined) {
          found.push({
            key: upload.Key.slice(this.keyPrefix.length),
            uploadId: upload.UploadId,
            initiated: upload.Initiated
          })
        }
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined
    } while (keyMarker !== undefined)
    return found
  }

  /**
   * Aborts the incomplete multipart uploads of keys under `under` that were started before
   * `startedBefore` (default: now), e.g. at the start of a backup run after a crash. Uploads
   * still in progress elsewhere must be newer than `startedBefore`. Returns how many it aborted.
   */
  async abortIncompleteUploads(under = '', startedBefore: Date = new Date()): Promise<number> {
    let aborted = 0
    for (const upload of await this.incompleteUploads()) {
      if (upload.key.startsWith(under) && (upload.initiated === undefined || upload.initiated < startedBefore)) {
        await this.#abortUpload(upload.key, upload.uploadId)
        aborted++
      }
    }
    return aborted
  }

  #fullKey(key: string): string {
    return this.keyPrefix + key
  }

  protected async putWhole(key: string, body: Buffer, operation: ObjectOperation): Promise<void> {
    if (body.length < this.multipartThreshold) {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.#fullKey(key),
            Body: body,
            ContentLength: body.length,
            IfNoneMatch: ifAbsent(operation)
          })
        )
      } catch (error) {
        throw this.failure(error, key, operation)
      }
      return
    }
    await this.#upload(key, body, operation, error => this.failure(error, key, operation))
  }

  protected async putParts(
    key: string,
    body: Readable,
    operation: 'put' | 'create',
    failure: (error: unknown) => BackupError
  ): Promise<void> {
    await this.#upload(key, body, operation, failure)
  }

  /** A multipart upload (or one PutObject, for a body shorter than a part) through lib-storage. */
  async #upload(
    key: string,
    body: Buffer | Readable,
    operation: ObjectOperation,
    mapFailure: (error: unknown) => BackupError
  ): Promise<void> {
    this.#uploadsRunning++
    const upload = new Upload({
      client: this.client,
      // lib-storage sends IfNoneMatch with the PutObject or the CompleteMultipartUpload.
      params: { Bucket: this.bucket, Key: this.#fullKey(key), Body: body, IfNoneMatch: ifAbsent(operation) },
      partSize: this.#partSizeFor(body),
      queueSize: Math.max(1, Math.floor(this.maxConcurrentUploads / this.#uploadsRunning)),
      // lib-storage then aborts the multipart upload when a part, the source or the completion fails.
      leavePartsOnError: false
    })
    try {
      await upload.done()
    } catch (error) {
      const failure = mapFailure(error)
      if (upload.uploadId !== undefined) {
        // lib-storage has already tried once; a second AbortMultipartUpload is harmless
        // (NoSuchUpload) and covers a first attempt that failed while the server was away.
        try {
          await this.#abortUpload(key, upload.uploadId)
        } catch (abortError) {
          failure.uploadId = upload.uploadId
          failure.message +=
            `; the incomplete multipart upload ${upload.uploadId} could not be aborted (${reasonOf(abortError)}): ` +
            'abortIncompleteUploads() or a bucket lifecycle rule removes it'
        }
      }
      throw failure
    } finally {
      this.#uploadsRunning--
    }
  }

  /** The configured part size, raised when a Buffer would otherwise need more than 10,000 parts. */
  #partSizeFor(body: Buffer | Readable): number {
    if (Buffer.isBuffer(body)) {
      return Math.max(this.multipartPartSize, Math.ceil(body.length / s3MaxParts))
    }
    return this.multipartPartSize
  }

  async #abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.#fullKey(key), UploadId: uploadId })
      )
    } catch (error) {
      if (errorName(error) === 'NoSuchUpload') {
        return
      }
      throw this.failure(error, key, 'abortUploads')
    }
  }

  protected failure(error: unknown, key: string, operation: ObjectOperation): BackupError {
    if (isBackupError(error)) {
      return error
    }
    if (error instanceof Error && /region is missing/i.test(error.message)) {
      return new BackupError(
        'KB_STORAGE',
        `${operation} of ${key} at ${this.location} failed: no region; set storage.region (or AWS_REGION)`,
        { location: this.location, key, operation, cause: error }
      )
    }
    return objectStoreFailure(this.#names, classify(error, operation), error, key, operation)
  }
}

/** S3's create-only precondition (conditional writes): the write fails with 412 if the key exists. */
function ifAbsent(operation: ObjectOperation): string | undefined {
  return operation === 'create' ? '*' : undefined
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode
}

const accessDeniedNames = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'AllAccessDisabled'
])

function classify(error: unknown, operation: ObjectOperation): FailureKind {
  const name = errorName(error)
  // 409 ConditionalRequestConflict: another conditional write of the key is in flight.
  if (
    operation === 'create' &&
    (statusOf(error) === 412 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict')
  ) {
    return 'key-exists'
  }
  if (name === 'NoSuchBucket') {
    return 'container-not-found'
  }
  if (name === 'NoSuchKey' || (name === 'NotFound' && statusOf(error) === 404)) {
    return 'key-not-found'
  }
  if ((name !== undefined && accessDeniedNames.has(name)) || statusOf(error) === 403) {
    return 'access-denied'
  }
  return 'other'
}

/** `bytes 0-9/100` -> 100; undefined when absent or the size is unknown (`*`). */
function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const total = contentRange?.split('/')[1]
  return total === undefined || total === '*' ? undefined : Number(total)
}

async function bodyBytes(body: unknown): Promise<Buffer> {
  if (body === undefined) {
    return Buffer.alloc(0)
  }
  const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
