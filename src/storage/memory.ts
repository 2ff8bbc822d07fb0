/**
 * The in-memory backend, for tests and dry runs: the same contract as the others (key rules,
 * atomic puts, errors), with objects held as Buffers in a Map. Objects are copied in and out so
 * that a caller mutating a Buffer can never change what is stored.
 */
import { Readable } from 'node:stream'
import { isBackupError } from '../errors.ts'
import { alreadyExists, checkKey, checkPrefix, checkRange, notFound, rangePastEnd, sourceFailed } from './keys.ts'
import type { ObjectInfo, Storage } from './storage.ts'

export interface MemoryStorageOptions {
  /** Shown in messages as `memory://<name>`. */
  name?: string
}

export class MemoryStorage implements Storage {
  readonly location: string
  readonly #objects = new Map<string, Buffer>()

  constructor({ name = 'default' }: MemoryStorageOptions = {}) {
    this.location = `memory://${name}`
  }

  async put(key: string, body: Readable | Buffer): Promise<void> {
    checkKey(key, this.location, 'put')
    this.#objects.set(key, await this.#bytes(key, body, 'put'))
  }

  async create(key: string, body: Readable | Buffer): Promise<void> {
    checkKey(key, this.location, 'create')
    const bytes = await this.#bytes(key, body, 'create')
    // Decided when the whole body is in, as a store decides when the upload completes.
    if (this.#objects.has(key)) {
      throw alreadyExists(key, this.location)
    }
    this.#objects.set(key, bytes)
  }

  async #bytes(key: string, body: Readable | Buffer, operation: string): Promise<Buffer> {
    if (Buffer.isBuffer(body)) {
      return Buffer.from(body)
    }
    // The object appears only once the whole stream has been read, as on every other backend.
    const chunks: Buffer[] = []
    try {
      for await (const chunk of body) {
        chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array))
      }
    } catch (error) {
      throw isBackupError(error) ? error : sourceFailed(key, this.location, operation, error)
    }
    return Buffer.concat(chunks)
  }

  async replace(key: string, body: Buffer): Promise<void> {
    checkKey(key, this.location, 'replace')
    this.#objects.set(key, Buffer.from(body))
  }

  async get(key: string): Promise<Buffer> {
    return Buffer.from(this.#object(key, 'get'))
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const object = this.#object(key, 'getRange')
    checkRange(key, offset, length, this.location, 'getRange')
    if (offset + length > object.length) {
      throw rangePastEnd(key, offset, length, object.length, this.location, 'getRange')
    }
    return Buffer.from(object.subarray(offset, offset + length))
  }

  async stream(key: string): Promise<Readable> {
    return Readable.from([Buffer.from(this.#object(key, 'stream'))], { objectMode: false })
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, this.location, 'head')
    const object = this.#objects.get(key)
    return object === undefined ? undefined : { key, size: object.length }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, this.location, 'list')
    const found: ObjectInfo[] = []
    for (const [key, object] of this.#objects) {
      if (key.startsWith(prefix)) {
        found.push({ key, size: object.length })
      }
    }
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.location, 'delete')
    this.#objects.delete(key)
  }

  async close(): Promise<void> {}

  #object(key: string, operation: string): Buffer {
    checkKey(key, this.location, operation)
    const object = this.#objects.get(key)
    if (object === undefined) {
      throw notFound(key, this.location, operation)
    }
    return object
  }
}
