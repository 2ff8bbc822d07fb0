/**
 * Google Cloud Storage with @google-cloud/storage. An object appears whole or not at all: a
 * single-request upload, or a resumable upload whose session only creates the object when its
 * last chunk is accepted (a session that is never finished expires after a week, unbilled).
 * Uploads carry a CRC32C that GCS checks, so a corrupted upload fails instead of landing.
 *
 * Memory bound of one put of a stream: the first `resumableThreshold` bytes are held to decide
 * between one request (the stream ended within them) and a resumable upload, which then holds
 * one `chunkSize` chunk at a time so that a failed chunk can be sent again: a put never holds
 * more than max(resumableThreshold, chunkSize) + the stream's own buffer (defaults: 16 MiB).
 *
 * @google-cloud/storage is pinned to 8.0.0: from 8.0.1 on (teeny-request 11) every download
 * prints a MaxListenersExceededWarning (googleapis/google-cloud-node#9185), which a restore
 * reading thousands of ranges would print thousands of times.
 */

import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  type File,
  type Storage as GcsClient,
  Storage as GoogleCloudStorage,
  type StorageOptions
} from '@google-cloud/storage'
import { BackupError, isBackupError } from '../errors.ts'
import { MiB } from '../units.ts'
import { type FailureKind, type ObjectOperation, type ObjectStoreNames, objectStoreFailure } from './errors-map.ts'
import { checkKey, checkPrefix, checkRange, emptyRange, rangePastEnd, unsatisfiableRange } from './keys.ts'
import { ObjectStore } from './object-store.ts'
import type { ObjectInfo } from './storage.ts'

/** GCS requires resumable chunks in multiples of 256 KiB. */
const chunkQuantum = 256 * 1024

export interface GcsStorageOptions {
  bucket: string
  prefix?: string
  /** A service-account key: the JSON itself (starting with `{`) or the path of its file. Unset: application default credentials. */
  serviceAccountJson?: string
  /** API endpoint of an emulator such as fake-gcs-server. Unset: Google. */
  endpoint?: string
  /** Project for the client; taken from the key or the environment when unset. */
  projectId?: string
  /** Streams of this size and larger use a resumable upload. Default 8 MiB. */
  resumableThreshold?: number
  /** Bytes per resumable request, a multiple of 256 KiB. Default 16 MiB. */
  chunkSize?: number
  /** Retries per request after the first. Default 3 (the library's). */
  maxRetries?: number
}

function settingError(message: string, location: string): BackupError {
  return new BackupError('KB_STORAGE', message, { location, operation: 'open' })
}

export class GcsStorage extends ObjectStore {
  readonly location: string
  readonly bucket: string
  readonly keyPrefix: string
  readonly resumableThreshold: number
  protected readonly singleRequestBytes: number
  readonly chunkSize: number
  readonly client: GcsClient
  readonly #names: ObjectStoreNames
  /** The path of the service-account key, when it is given as a file. */
  readonly #keyFile: string | undefined

  constructor(options: GcsStorageOptions) {
    super()
    const {
      bucket,
      prefix,
      serviceAccountJson,
      endpoint,
      projectId,
      resumableThreshold = 8 * MiB,
      chunkSize = 16 * MiB,
      maxRetries
    } = options
    if (typeof bucket !== 'string' || bucket === '') {
      throw settingError('the GCS storage needs a bucket (storage.bucket)', 'gs://')
    }
    const trimmedPrefix = (prefix ?? '').replace(/^\/+|\/+$/g, '')
    this.location = trimmedPrefix === '' ? `gs://${bucket}` : `gs://${bucket}/${trimmedPrefix}`
    if (trimmedPrefix !== '') {
      checkKey(trimmedPrefix, this.location, 'open')
    }
    if (!Number.isSafeInteger(chunkSize) || chunkSize < chunkQuantum || chunkSize % chunkQuantum !== 0) {
      throw settingError(`the GCS chunk size must be a multiple of 256 KiB, not ${chunkSize}`, this.location)
    }
    if (!Number.isSafeInteger(resumableThreshold) || resumableThreshold < 0) {
      throw settingError(
        `the GCS resumable threshold must be a non-negative integer, not ${resumableThreshold}`,
        this.location
      )
    }
    this.bucket = bucket
    this.keyPrefix = trimmedPrefix === '' ? '' : `${trimmedPrefix}/`
    this.resumableThreshold = resumableThreshold
    this.singleRequestBytes = resumableThreshold
    this.chunkSize = chunkSize
    this.#names = {
      location: this.location,
      containerKind: 'bucket',
      containerName: bucket,
      containerSetting: 'storage.bucket',
      credentialHint:
        serviceAccountJson === undefined
          ? 'the application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth, the metadata server) or set storage.service_account_json'
          : 'storage.service_account_json'
    }
    const config: StorageOptions = { projectId }
    if (endpoint !== undefined) {
      config.apiEndpoint = endpoint.replace(/\/+$/, '')
      // Emulators take no credentials; a key given for one is used all the same.
      config.useAuthWithCustomEndpoint = serviceAccountJson !== undefined
    }
    if (serviceAccountJson !== undefined) {
      if (serviceAccountJson.trimStart().startsWith('{')) {
        let credentials: { client_email?: string; private_key?: string; project_id?: string }
        try {
          credentials = JSON.parse(serviceAccountJson)
        } catch (error) {
          // The parser's message quotes the text, which holds a private key: only say where.
          throw new BackupError(
            'KB_STORAGE',
            `storage.service_account_json is not valid JSON (${error instanceof SyntaxError ? error.message.replace(/".*$/s, '').trim() : 'unreadable'}); expected a service-account key`,
            { location: this.location, operation: 'open' }
          )
        }
        config.credentials = credentials
        config.projectId ??= credentials.project_id
      } else {
        config.keyFilename = serviceAccountJson
      }
    }
    this.#keyFile = config.keyFilename
    if (maxRetries !== undefined) {
      config.retryOptions = { maxRetries, autoRetry: maxRetries > 0 }
    }
    this.client = new GoogleCloudStorage(config)
  }

  async get(key: string): Promise<Buffer> {
    checkKey(key, this.location, 'get')
    try {
      const [bytes] = await this.#file(key).download()
      return bytes
    } catch (error) {
      throw await this.#readFailure(error, key, 'get')
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    checkKey(key, this.location, 'getRange')
    checkRange(key, offset, length, this.location, 'getRange')
    if (length === 0) {
      return emptyRange(this, key, offset)
    }
    let bytes: Buffer
    try {
      ;[bytes] = await this.#file(key).download({ start: offset, end: offset + length - 1 })
    } catch (error) {
      if (statusOf(error) === 416) {
        throw await unsatisfiableRange(this, key, offset, length)
      }
      throw await this.#readFailure(error, key, 'getRange')
    }
    if (bytes.length !== length) {
      throw rangePastEnd(key, offset, length, offset + bytes.length, this.location, 'getRange')
    }
    return bytes
  }

  async stream(key: string): Promise<Readable> {
    checkKey(key, this.location, 'stream')
    const source = this.#file(key).createReadStream()
    const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    const failure = (error: unknown) => this.failure(error, key, 'stream')
    // The request goes out on the first read: pull one chunk so that a missing object rejects
    // here, as on every other backend, instead of failing the returned stream later.
    let first: IteratorResult<Buffer>
    try {
      first = await chunks.next()
    } catch (error) {
      throw await this.#readFailure(error, key, 'stream')
    }
    return Readable.from(
      (async function* () {
        try {
          if (first.done) {
            return
          }
          yield first.value
          for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
            yield next.value
          }
        } catch (error) {
          throw failure(error)
        } finally {
          await chunks.return?.()
        }
      })(),
      { objectMode: false }
    )
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, this.location, 'head')
    try {
      const [metadata] = await this.#file(key).getMetadata()
      return { key, size: Number(metadata.size ?? 0) }
    } catch (error) {
      if (statusOf(error) === 404 && classify(error, 'head') !== 'container-not-found') {
        return undefined
      }
      throw this.failure(error, key, 'head')
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, this.location, 'list')
    const found: ObjectInfo[] = []
    try {
      const [files] = await this.client
        .bucket(this.bucket)
        .getFiles({ prefix: this.keyPrefix + prefix, autoPaginate: true })
      for (const file of files) {
        const key = file.name.slice(this.keyPrefix.length)
        if (key !== '' && !key.endsWith('/')) {
          found.push({ key, size: Number(file.metadata.size ?? 0) })
        }
      }
    } catch (error) {
      throw this.failure(error, prefix, 'list')
    }
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.location, 'delete')
    try {
      await this.#file(key).delete({ ignoreNotFound: true })
    } catch (error) {
      throw this.failure(error, key, 'delete')
    }
  }

  async close(): Promise<void> {
    // The client keeps no connections beyond the agent's keep-alive.
  }

  #file(key: string): File {
    return this.client.bucket(this.bucket).file(this.keyPrefix + key)
  }

  protected async putWhole(key: string, body: Buffer, operation: ObjectOperation): Promise<void> {
    try {
      // One request carrying data and metadata: atomic, and the CRC32C is checked by GCS.
      await this.#file(key).save(body, { resumable: false, validation: 'crc32c', ...ifAbsent(operation) })
    } catch (error) {
      throw this.failure(error, key, operation)
    }
  }

  protected async putParts(
    key: string,
    body: Readable,
    operation: 'put' | 'create',
    failure: (error: unknown) => BackupError
  ): Promise<void> {
    const upload: Writable = this.#file(key).createWriteStream({
      resumable: true,
      chunkSize: this.chunkSize,
      validation: 'crc32c',
      ...ifAbsent(operation)
    })
    try {
      await pipeline(body, upload)
    } catch (error) {
      throw failure(error)
    }
  }

  protected failure(error: unknown, key: string, operation: ObjectOperation): BackupError {
    if (isBackupError(error)) {
      return error
    }
    const unreadable = error as { code?: unknown; path?: unknown }
    if (typeof unreadable.path === 'string' && unreadable.path === this.#keyFile) {
      return new BackupError(
        'KB_STORAGE',
        `${operation} of ${key} at ${this.location} failed: the service-account key file ${this.#keyFile} (storage.service_account_json) cannot be read (${String(unreadable.code)})`,
        { location: this.location, key, operation, file: this.#keyFile, cause: error }
      )
    }
    return objectStoreFailure(this.#names, classify(error, operation), error, key, operation)
  }

  /**
   * A read's 404 means a missing object or a missing bucket; GCS says which in its message,
   * emulators do not, so a 404 that does not say is settled by asking for the bucket.
   */
  async #readFailure(error: unknown, key: string, operation: ObjectOperation): Promise<BackupError> {
    let kind = classify(error, operation)
    if (kind === 'key-not-found' && !/no such object/i.test(error instanceof Error ? error.message : '')) {
      try {
        const [exists] = await this.client.bucket(this.bucket).exists()
        if (!exists) {
          kind = 'container-not-found'
        }
      } catch {
        // The object's 404 stands: the bucket could not be checked (the error would be the
        // same access or network problem, reported by the next operation).
      }
    }
    return isBackupError(error) ? error : objectStoreFailure(this.#names, kind, error, key, operation)
  }
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown; status?: unknown } | undefined)?.code
  if (typeof code === 'number') {
    return code
  }
  const status = (error as { status?: unknown } | undefined)?.status
  return typeof status === 'number' ? status : undefined
}

/** GCS's create-only precondition: generation 0 means "no live object", else 412. */
function ifAbsent(operation: ObjectOperation): { preconditionOpts: { ifGenerationMatch: number } } | undefined {
  return operation === 'create' ? { preconditionOpts: { ifGenerationMatch: 0 } } : undefined
}

/** Operations that address the bucket itself, or an object that need not exist: their 404 is the bucket's. */
const bucketLevelOperations = new Set<ObjectOperation>(['put', 'create', 'replace', 'list', 'delete'])

function classify(error: unknown, operation: ObjectOperation): FailureKind {
  const status = statusOf(error)
  const message = error instanceof Error ? error.message.toLowerCase() : ''
  if (operation === 'create' && status === 412) {
    return 'key-exists'
  }
  if (status === 404) {
    return bucketLevelOperations.has(operation) || message.includes('bucket does not exist')
      ? 'container-not-found'
      : 'key-not-found'
  }
  if (status === 401 || status === 403) {
    return 'access-denied'
  }
  // No usable credentials at all: the auth library fails before any request.
  if (/could not load the default credentials|invalid_grant|invalid_client|unauthorized_client/i.test(message)) {
    return 'access-denied'
  }
  return 'other'
}
