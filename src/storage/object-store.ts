/**
 * The put/create/replace skeleton the object stores (S3, Azure Blob, GCS) share. A Buffer, and
 * a stream that ends within `singleRequestBytes`, go up in one request (`putWhole`, atomic);
 * a longer stream goes up in parts (`putParts`), which the store commits only at the end. For
 * a create (operation 'create') the request that makes the object visible carries the store's
 * "only if absent" precondition. A failure is reported as the source's when the stream being
 * uploaded failed, else as the store's.
 */
import type { Readable } from 'node:stream'
import type { BackupError } from '../errors.ts'
import { type ObjectOperation, readHead } from './errors-map.ts'
import { checkKey, sourceFailed } from './keys.ts'
import type { ObjectInfo, Storage } from './storage.ts'

export abstract class ObjectStore implements Storage {
  abstract readonly location: string

  /** The bytes held to decide between one request and an upload in parts. */
  protected abstract readonly singleRequestBytes: number

  /**
   * Writes `body` in one request (or in parts, if the store decides so for a large Buffer);
   * only if the key is absent when `operation` is 'create'.
   */
  protected abstract putWhole(key: string, body: Buffer, operation: ObjectOperation): Promise<void>

  /**
   * Uploads a stream in parts (committed only if the key is absent when `operation` is
   * 'create'). `failure` maps an error of the upload, telling the source's failures from the
   * store's, and destroys the streams; what it returns is to be thrown.
   */
  protected abstract putParts(
    key: string,
    body: Readable,
    operation: 'put' | 'create',
    failure: (error: unknown) => BackupError
  ): Promise<void>

  /** Maps a failed request to our error codes. */
  protected abstract failure(error: unknown, key: string, operation: ObjectOperation): BackupError

  async put(key: string, body: Readable | Buffer): Promise<void> {
    await this.#write(key, body, 'put')
  }

  async create(key: string, body: Readable | Buffer): Promise<void> {
    await this.#write(key, body, 'create')
  }

  async #write(key: string, body: Readable | Buffer, operation: 'put' | 'create'): Promise<void> {
    checkKey(key, this.location, operation)
    if (Buffer.isBuffer(body)) {
      await this.putWhole(key, body, operation)
      return
    }
    const failure = (error: unknown, sourceError: unknown) =>
      sourceError === undefined
        ? this.failure(error, key, operation)
        : sourceFailed(key, this.location, operation, sourceError)
    const head = await readHead(body, this.singleRequestBytes, failure)
    if (head.whole) {
      await this.putWhole(key, head.whole, operation)
      return
    }
    const { rest, sourceError } = head
    await this.putParts(key, rest, operation, error => {
      // Mapped first: destroying the source fails a read of it in flight, which is not its fault.
      const mapped = failure(error, sourceError())
      rest.destroy()
      if (!body.destroyed) {
        body.destroy()
      }
      return mapped
    })
  }

  async replace(key: string, body: Buffer): Promise<void> {
    // One request (or a multipart upload completed at once) replaces the object atomically.
    checkKey(key, this.location, 'replace')
    await this.putWhole(key, body, 'replace')
  }

  abstract get(key: string): Promise<Buffer>
  abstract getRange(key: string, offset: number, length: number): Promise<Buffer>
  abstract stream(key: string): Promise<Readable>
  abstract head(key: string): Promise<ObjectInfo | undefined>
  abstract list(prefix: string): Promise<ObjectInfo[]>
  abstract delete(key: string): Promise<void>
  abstract close(): Promise<void>
}
