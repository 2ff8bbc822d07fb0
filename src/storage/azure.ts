/**
 * Azure Blob Storage (block blobs) with @azure/storage-blob. A blob appears whole or not at all:
 * a single Put Blob, or staged blocks that only become the blob when the block list is
 * committed. Blocks of a failed upload are never committed; Azure drops uncommitted blocks
 * by itself (after a week), and they are not visible to get or list meanwhile.
 *
 * Memory bound of one put of a stream: the first block (`blockSize`) is held to decide between
 * one Put Blob (the stream ended within it) and staged blocks; then the SDK holds at most
 * `maxConcurrency` blocks, so a put never holds more than (maxConcurrency + 1) x blockSize
 * bytes (defaults: 72 MiB), whatever the blob's size.
 */

import { Readable } from 'node:stream'
import {
  BlobServiceClient,
  type ContainerClient,
  type ContainerListBlobFlatSegmentResponse,
  type StoragePipelineOptions,
  StorageSharedKeyCredential
} from '@azure/storage-blob'
import { BackupError, isBackupError } from '../errors.ts'
import { MiB } from '../units.ts'
import { type FailureKind, type ObjectOperation, type ObjectStoreNames, objectStoreFailure } from './errors-map.ts'
import { checkKey, checkPrefix, checkRange, emptyRange, rangePastEnd, unsatisfiableRange } from './keys.ts'
import { ObjectStore } from './object-store.ts'
import type { ObjectInfo } from './storage.ts'

export interface AzureBlobStorageOptions {
  container: string
  /** With `accountKey`: shared-key auth. Without it: Azure default credentials (@azure/identity). */
  accountName?: string
  accountKey?: string
  /** With `accountName`, instead of `accountKey`: a shared access signature (query string). */
  sasToken?: string
  /** Replaces accountName, accountKey, sasToken and endpoint. */
  connectionString?: string
  /** The blob service URL (with Azurite: `http://127.0.0.1:10000/devstoreaccount1`). */
  endpoint?: string
  prefix?: string
  /** Block size of staged uploads. Default 8 MiB. */
  blockSize?: number
  /** Blocks uploaded in parallel per blob. Default 8. */
  maxConcurrency?: number
  /** Attempts per request, the first included. Default 4 (the SDK's). */
  maxTries?: number
}

function settingError(message: string, location: string): BackupError {
  return new BackupError('KB_STORAGE', message, { location, operation: 'open' })
}

export class AzureBlobStorage extends ObjectStore {
  readonly location: string
  readonly container: string
  readonly keyPrefix: string
  readonly blockSize: number
  protected readonly singleRequestBytes: number
  readonly maxConcurrency: number
  readonly #containerClient: Promise<ContainerClient>
  readonly #names: ObjectStoreNames

  constructor(options: AzureBlobStorageOptions) {
    super()
    const {
      container,
      accountName,
      accountKey,
      sasToken,
      connectionString,
      endpoint,
      prefix,
      blockSize = 8 * MiB,
      maxConcurrency = 8,
      maxTries
    } = options
    if (typeof container !== 'string' || container === '') {
      throw settingError('the Azure storage needs a container (storage.container)', 'az://')
    }
    const trimmedPrefix = (prefix ?? '').replace(/^\/+|\/+$/g, '')
    this.location = trimmedPrefix === '' ? `az://${container}` : `az://${container}/${trimmedPrefix}`
    if (trimmedPrefix !== '') {
      checkKey(trimmedPrefix, this.location, 'open')
    }
    if (sasToken !== undefined && (accountKey !== undefined || connectionString !== undefined)) {
      throw settingError(
        'storage.sas_token is not allowed together with storage.account_key or storage.connection_string',
        this.location
      )
    }
    if (connectionString === undefined && accountName === undefined) {
      throw settingError('the Azure storage needs storage.account_name or storage.connection_string', this.location)
    }
    if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
      throw settingError(`the Azure block size must be a positive integer, not ${blockSize}`, this.location)
    }
    if (!Number.isSafeInteger(maxConcurrency) || maxConcurrency < 1) {
      throw settingError(
        `the Azure upload concurrency must be a positive integer, not ${maxConcurrency}`,
        this.location
      )
    }
    this.container = container
    this.keyPrefix = trimmedPrefix === '' ? '' : `${trimmedPrefix}/`
    this.blockSize = blockSize
    this.singleRequestBytes = blockSize
    this.maxConcurrency = maxConcurrency
    this.#names = {
      location: this.location,
      containerKind: 'container',
      containerName: container,
      containerSetting: 'storage.container',
      credentialHint:
        connectionString !== undefined
          ? 'storage.connection_string'
          : accountKey !== undefined
            ? 'storage.account_name and storage.account_key'
            : sasToken !== undefined
              ? 'storage.account_name and storage.sas_token (its signature, expiry and permissions)'
              : 'the Azure default credentials (AZURE_CLIENT_ID, AZURE_TENANT_ID, a managed identity, az login) or set storage.account_key'
    }
    const pipelineOptions: StoragePipelineOptions = maxTries === undefined ? {} : { retryOptions: { maxTries } }
    this.#containerClient = this.#connect(
      { accountName, accountKey, sasToken, connectionString, endpoint },
      pipelineOptions
    )
    // A bad connection string surfaces from the first operation; it must not be unhandled before.
    this.#containerClient.catch(() => undefined)
  }

  async #connect(
    { accountName, accountKey, sasToken, connectionString, endpoint }: Omit<AzureBlobStorageOptions, 'container'>,
    pipelineOptions: StoragePipelineOptions
  ): Promise<ContainerClient> {
    let service: BlobServiceClient
    try {
      if (connectionString !== undefined) {
        service = BlobServiceClient.fromConnectionString(connectionString, pipelineOptions)
      } else {
        const url = endpoint ?? `https://${accountName}.blob.core.windows.net`
        if (accountKey !== undefined) {
          service = new BlobServiceClient(
            url,
            new StorageSharedKeyCredential(accountName!, accountKey),
            pipelineOptions
          )
        } else if (sasToken !== undefined) {
          // The signature travels in each request's query string; no credential object.
          const signed = new URL(url)
          signed.search = sasToken.replace(/^\?/, '')
          service = new BlobServiceClient(signed.href, undefined, pipelineOptions)
        } else {
          // Loaded only when used: the identity stack is large and most setups use a key.
          const { DefaultAzureCredential } = await import('@azure/identity')
          service = new BlobServiceClient(url, new DefaultAzureCredential(), pipelineOptions)
        }
      }
    } catch (error) {
      // The SDK's message for a malformed connection string does not contain the string.
      throw new BackupError(
        'KB_STORAGE',
        `cannot connect to ${this.location}: ${error instanceof Error ? error.message : String(error)}; check ${this.#names.credentialHint}`,
        { location: this.location, operation: 'open', cause: error }
      )
    }
    return service.getContainerClient(this.container)
  }

  async get(key: string): Promise<Buffer> {
    checkKey(key, this.location, 'get')
    const blob = await this.#blob(key, 'get')
    try {
      const response = await blob.download(0)
      return await readAll(response.readableStreamBody)
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
    const blob = await this.#blob(key, 'getRange')
    let bytes: Buffer
    let total: number | undefined
    try {
      const response = await blob.download(offset, length)
      total = totalFromContentRange(response.contentRange)
      bytes = await readAll(response.readableStreamBody)
    } catch (error) {
      if (statusOf(error) === 416) {
        throw await unsatisfiableRange(this, key, offset, length)
      }
      throw this.failure(error, key, 'getRange')
    }
    if (bytes.length !== length) {
      throw rangePastEnd(key, offset, length, total ?? offset + bytes.length, this.location, 'getRange')
    }
    return bytes
  }

  async stream(key: string): Promise<Readable> {
    checkKey(key, this.location, 'stream')
    const blob = await this.#blob(key, 'stream')
    let body: NodeJS.ReadableStream | undefined
    try {
      body = (await blob.download(0)).readableStreamBody
    } catch (error) {
      throw this.failure(error, key, 'stream')
    }
    const failure = (error: unknown) => this.failure(error, key, 'stream')
    return Readable.from(
      (async function* () {
        if (body === undefined) {
          return
        }
        try {
          yield* body as AsyncIterable<Buffer>
        } catch (error) {
          throw failure(error)
        }
      })(),
      { objectMode: false }
    )
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, this.location, 'head')
    const blob = await this.#blob(key, 'head')
    try {
      const properties = await blob.getProperties()
      return { key, size: properties.contentLength ?? 0 }
    } catch (error) {
      if (statusOf(error) === 404 && codeOf(error) !== 'ContainerNotFound') {
        return undefined
      }
      throw this.failure(error, key, 'head')
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, this.location, 'list')
    const container = await this.#container(prefix, 'list')
    const found: ObjectInfo[] = []
    try {
      const pages = container.listBlobsFlat({ prefix: this.keyPrefix + prefix }).byPage({ maxPageSize: 5000 })
      for await (const page of pages as AsyncIterable<ContainerListBlobFlatSegmentResponse>) {
        for (const item of page.segment.blobItems) {
          const key = item.name.slice(this.keyPrefix.length)
          if (key !== '' && !key.endsWith('/')) {
            found.push({ key, size: item.properties.contentLength ?? 0 })
          }
        }
      }
    } catch (error) {
      throw this.failure(error, prefix, 'list')
    }
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.location, 'delete')
    const blob = await this.#blob(key, 'delete')
    try {
      await blob.deleteIfExists()
    } catch (error) {
      throw this.failure(error, key, 'delete')
    }
  }

  async close(): Promise<void> {
    // The SDK's HTTP agents keep no resources that outlive their sockets' keep-alive.
  }

  async #container(key: string, operation: ObjectOperation): Promise<ContainerClient> {
    try {
      return await this.#containerClient
    } catch (error) {
      throw this.failure(error, key, operation)
    }
  }

  async #blob(key: string, operation: ObjectOperation) {
    return (await this.#container(key, operation)).getBlockBlobClient(this.keyPrefix + key)
  }

  protected async putWhole(key: string, body: Buffer, operation: ObjectOperation): Promise<void> {
    const blob = await this.#blob(key, operation)
    try {
      await blob.uploadData(body, {
        blockSize: this.blockSize,
        concurrency: this.maxConcurrency,
        // One Put Blob up to a block's size: atomic, and no uncommitted blocks that a
        // concurrent writer of the same key could discard.
        maxSingleShotSize: Math.max(this.blockSize, 1),
        conditions: ifAbsent(operation)
      })
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
    const blob = await this.#blob(key, operation)
    try {
      // Blocks are staged under random ids and committed at the end (the precondition is the
      // commit's): until then the old blob (or none) is what readers see.
      await blob.uploadStream(body, this.blockSize, this.maxConcurrency, { conditions: ifAbsent(operation) })
    } catch (error) {
      throw failure(error)
    }
  }

  protected failure(error: unknown, key: string, operation: ObjectOperation): BackupError {
    if (isBackupError(error)) {
      return error
    }
    return objectStoreFailure(this.#names, classify(error, operation), error, key, operation)
  }
}

/** Azure's create-only precondition: the write fails (409 BlobAlreadyExists or 412) if the blob exists. */
function ifAbsent(operation: ObjectOperation): { ifNoneMatch: string } | undefined {
  return operation === 'create' ? { ifNoneMatch: '*' } : undefined
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode
  return typeof status === 'number' ? status : undefined
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown; details?: { errorCode?: unknown } } | undefined)?.details?.errorCode
  if (typeof code === 'string') {
    return code
  }
  const plain = (error as { code?: unknown } | undefined)?.code
  return typeof plain === 'string' ? plain : undefined
}

function classify(error: unknown, operation: ObjectOperation): FailureKind {
  const code = codeOf(error)
  const status = statusOf(error)
  if (operation === 'create' && (status === 409 || status === 412) && code !== 'ContainerBeingDeleted') {
    return 'key-exists'
  }
  if (code === 'ContainerNotFound') {
    return 'container-not-found'
  }
  if (code === 'BlobNotFound' || status === 404) {
    return 'key-not-found'
  }
  if (
    status === 401 ||
    status === 403 ||
    code === 'AuthenticationFailed' ||
    code?.startsWith('Authorization') === true ||
    (error instanceof Error && error.name === 'CredentialUnavailableError')
  ) {
    return 'access-denied'
  }
  return 'other'
}

function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const total = contentRange?.split('/')[1]
  return total === undefined || total === '*' ? undefined : Number(total)
}

async function readAll(body: NodeJS.ReadableStream | undefined): Promise<Buffer> {
  if (body === undefined) {
    return Buffer.alloc(0)
  }
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk)
    length += chunk.length
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)
}
