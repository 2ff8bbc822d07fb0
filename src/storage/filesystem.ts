/**
 * The default backend: a directory tree, one file per key. A backup must work with nothing but
 * a broker and a folder, and survive a crash at any point with every key either absent, old or
 * new, never half written.
 *
 * Writes go to a temp file in the key's own directory (`.<name>.<16 hex>.tmp`, so rename()
 * stays within one filesystem and is atomic), which is fsynced, renamed over the key, and then
 * the directory is fsynced so the rename itself survives a power loss. A create links the temp
 * file to the key instead (link() fails when the key exists, atomically) and then removes it. A new directory's entry
 * is fsynced in its parent before anything is written inside it, for the same reason. Writes
 * that end together in one directory share its fsync (#syncDirectory).
 */
import { randomBytes } from 'node:crypto'
import type { Dirent, Stats } from 'node:fs'
import { type FileHandle, link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { BackupError, isBackupError } from '../errors.ts'
import {
  alreadyExists,
  checkKey,
  checkPrefix,
  checkRange,
  isTempName,
  notFound,
  rangePastEnd,
  sourceFailed,
  tempNameFor,
  tempTargetName
} from './keys.ts'
import type { ObjectInfo, Storage } from './storage.ts'

/** Range-read handles kept open at once (a restore reads one segment per partition at a time). */
const MAX_OPEN_READERS = 64

/** A range-read handle nobody used for this long is closed. */
const READER_IDLE_MS = 2000

interface CachedReader {
  opened: Promise<{ handle: FileHandle; size: number }>
  /** Reads using the handle now; it is closed only when none is. */
  users: number
  idle?: NodeJS.Timeout
}

function closeReader(reader: CachedReader): void {
  reader.opened.then(({ handle }) => handle.close()).catch(() => undefined)
}

export interface FilesystemStorageOptions {
  /** The root directory; created (with its parents) on the first write. */
  path: string
  /** A '/'-separated sub-path of `path` that every key lives under. */
  prefix?: string
}

type Operation = 'put' | 'create' | 'replace' | 'get' | 'getRange' | 'stream' | 'head' | 'list' | 'delete'

const readOperations = new Set<Operation>(['get', 'getRange', 'stream', 'head', 'list'])

function errnoOf(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

export class FilesystemStorage implements Storage {
  readonly location: string
  readonly #root: string
  /** Directories known to exist with a durable entry in their parent, or being made so. */
  readonly #readyDirs = new Map<string, Promise<void>>()
  readonly #readers = new Map<string, CachedReader>()
  /** Per directory: the fsync running, and the one queued behind it that new callers share. */
  readonly #directorySyncs = new Map<string, { running: Promise<void> | undefined; next: Promise<void> | undefined }>()

  constructor({ path, prefix }: FilesystemStorageOptions) {
    if (typeof path !== 'string' || path === '') {
      throw new BackupError('KB_STORAGE', 'the filesystem storage needs a path (storage.path)', {
        location: String(path),
        operation: 'open'
      })
    }
    const trimmedPrefix = (prefix ?? '').replace(/\/+$/, '')
    if (trimmedPrefix !== '') {
      checkKey(trimmedPrefix, path, 'open')
    }
    this.#root = trimmedPrefix === '' ? resolve(path) : resolve(path, ...trimmedPrefix.split('/'))
    this.location = this.#root
  }

  async put(key: string, body: Readable | Buffer): Promise<void> {
    await this.#write(key, body, 'put')
  }

  async create(key: string, body: Readable | Buffer): Promise<void> {
    await this.#write(key, body, 'create')
  }

  async replace(key: string, body: Buffer): Promise<void> {
    // A put is already atomic here; object stores without atomic puts may differ.
    await this.#write(key, body, 'replace')
  }

  async get(key: string): Promise<Buffer> {
    checkKey(key, this.location, 'get')
    const handle = await this.#openForRead(key, 'get')
    try {
      return await handle.readFile()
    } catch (error) {
      throw this.#failure(error, key, 'get')
    } finally {
      await handle.close()
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    checkKey(key, this.location, 'getRange')
    checkRange(key, offset, length, this.location, 'getRange')
    const reader = this.#reader(key)
    try {
      const { handle, size } = await reader.opened
      if (offset + length > size) {
        throw rangePastEnd(key, offset, length, size, this.location, 'getRange')
      }
      const buffer = Buffer.allocUnsafe(length)
      let filled = 0
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled)
        if (bytesRead === 0) {
          // Only an outside writer truncating the file can get here: ours never modify in place.
          throw rangePastEnd(key, offset, length, offset + filled, this.location, 'getRange')
        }
        filled += bytesRead
      }
      return buffer
    } catch (error) {
      throw this.#failure(error, key, 'getRange')
    } finally {
      this.#doneReading(key, reader)
    }
  }

  /**
   * The open handle of `key` for range reads, opened (and its size read) once for all the
   * reads of a segment rather than per frame: open, fstat and close per read were 15% of a
   * restore's event loop (docs/benchmarks.md). Safe because objects are never modified in
   * place; our own writes and deletes of a key drop its handle (#forgetReader).
   */
  #reader(key: string): CachedReader {
    let reader = this.#readers.get(key)
    if (reader !== undefined) {
      clearTimeout(reader.idle)
      // Most recently used last, so the first idle entry is the one to close.
      this.#readers.delete(key)
    } else {
      reader = {
        opened: this.#openForRead(key, 'getRange').then(async handle => {
          try {
            return { handle, size: (await handle.stat()).size }
          } catch (error) {
            await handle.close()
            throw this.#failure(error, key, 'getRange')
          }
        }),
        users: 0
      }
      const failed = reader
      reader.opened.catch(() => {
        if (this.#readers.get(key) === failed) {
          this.#readers.delete(key)
        }
      })
    }
    reader.users++
    this.#readers.set(key, reader)
    for (const [other, idle] of this.#readers) {
      if (this.#readers.size <= MAX_OPEN_READERS) {
        break
      }
      if (idle.users === 0) {
        this.#readers.delete(other)
        closeReader(idle)
      }
    }
    return reader
  }

  #doneReading(key: string, reader: CachedReader): void {
    reader.users--
    if (reader.users > 0) {
      return
    }
    if (this.#readers.get(key) !== reader) {
      // Dropped (written, deleted, evicted) while this read used it.
      closeReader(reader)
      return
    }
    reader.idle = setTimeout(() => {
      if (this.#readers.get(key) === reader && reader.users === 0) {
        this.#readers.delete(key)
        closeReader(reader)
      }
    }, READER_IDLE_MS)
    reader.idle.unref()
  }

  #forgetReader(key: string): void {
    const reader = this.#readers.get(key)
    if (reader !== undefined) {
      this.#readers.delete(key)
      if (reader.users === 0) {
        closeReader(reader)
      }
    }
  }

  async stream(key: string): Promise<Readable> {
    checkKey(key, this.location, 'stream')
    const handle = await this.#openForRead(key, 'stream')
    // The stream owns the handle from here and closes it when it ends or is destroyed.
    return handle.createReadStream()
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, this.location, 'head')
    let stats: Stats
    try {
      stats = await stat(this.#pathOf(key))
    } catch (error) {
      if (isMissing(error)) {
        return undefined
      }
      throw this.#failure(error, key, 'head')
    }
    return stats.isFile() ? { key, size: stats.size } : undefined
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, this.location, 'list')
    // Only the directory that holds every match is walked: `topics/a/0/000` walks `topics/a/0/`.
    const directoryKey = prefix.slice(0, prefix.lastIndexOf('/') + 1)
    const found: ObjectInfo[] = []
    await this.#walk(join(this.#root, directoryKey), directoryKey, prefix, found)
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.location, 'delete')
    this.#forgetReader(key)
    const path = this.#pathOf(key)
    try {
      await unlink(path)
    } catch (error) {
      // EISDIR: the key names a directory of other keys, so there is no object to remove.
      if (isMissing(error) || errnoOf(error) === 'EISDIR') {
        return
      }
      throw this.#failure(error, key, 'delete')
    }
    await this.#syncDirectory(dirname(path), key, 'delete')
  }

  /**
   * Removes the temp files of writes to keys under `prefix` that a killed writer left behind:
   * a temp file last written before `startedBefore` belongs to no write still in progress of
   * the caller, who guarantees no other writer of those keys is running.
   */
  async abortIncompleteUploads(prefix: string, startedBefore: Date): Promise<number> {
    checkPrefix(prefix, this.location, 'delete')
    const directoryKey = prefix.slice(0, prefix.lastIndexOf('/') + 1)
    let removed = 0
    const sweep = async (directory: string, key: string): Promise<void> => {
      let entries: Dirent[]
      try {
        entries = await readdir(directory, { withFileTypes: true })
      } catch (error) {
        if (isMissing(error)) {
          return
        }
        throw this.#failure(error, prefix, 'delete')
      }
      for (const entry of entries) {
        const path = join(directory, entry.name)
        if (entry.isDirectory()) {
          const subKey = `${key}${entry.name}/`
          if (subKey.startsWith(prefix) || prefix.startsWith(subKey)) {
            await sweep(path, subKey)
          }
        } else if (
          entry.isFile() &&
          isTempName(entry.name) &&
          `${key}${tempTargetName(entry.name)}`.startsWith(prefix) &&
          (await this.#modifiedBefore(path, startedBefore, prefix))
        ) {
          await rm(path, { force: true })
          removed++
        }
      }
    }
    await sweep(join(this.#root, directoryKey), directoryKey)
    return removed
  }

  async close(): Promise<void> {
    this.#readyDirs.clear()
    for (const [key, reader] of this.#readers) {
      clearTimeout(reader.idle)
      this.#forgetReader(key)
    }
  }

  async #modifiedBefore(path: string, time: Date, prefix: string): Promise<boolean> {
    try {
      return (await stat(path)).mtimeMs < time.getTime()
    } catch (error) {
      if (isMissing(error)) {
        return false
      }
      throw this.#failure(error, prefix, 'delete')
    }
  }

  #pathOf(key: string): string {
    return join(this.#root, key)
  }

  async #write(key: string, body: Readable | Buffer, operation: Operation): Promise<void> {
    checkKey(key, this.location, operation)
    this.#forgetReader(key)
    const target = this.#pathOf(key)
    const directory = dirname(target)
    const temp = join(directory, tempNameFor(basename(target), randomBytes(8).toString('hex')))
    let handle: FileHandle | undefined
    try {
      handle = await this.#createTemp(temp, directory, key, operation)
      if (Buffer.isBuffer(body)) {
        await this.#writeAll(handle, body, key, operation)
      } else {
        await this.#writeStream(handle, body, key, operation)
      }
      try {
        await handle.sync()
        await handle.close()
        handle = undefined
        if (operation === 'create') {
          await link(temp, target)
          // The object is in place; a temp file left here is invisible and swept later.
          await unlink(temp).catch(() => undefined)
        } else {
          await rename(temp, target)
        }
      } catch (error) {
        throw errnoOf(error) === 'EEXIST'
          ? alreadyExists(key, this.location, error)
          : this.#failure(error, key, operation)
      }
    } catch (error) {
      // Whatever failed, the source will not be read further: release it (and its producer).
      if (!Buffer.isBuffer(body) && !body.destroyed) {
        body.destroy()
      }
      await handle?.close().catch(() => undefined)
      // A failure to remove the temp file must not hide the error that got us here; a leftover
      // temp file is invisible to list() and get(), and abortIncompleteUploads() removes it.
      await unlink(temp).catch(() => undefined)
      throw error
    }
    // A read between the start of this write and the rename may have opened the old file.
    this.#forgetReader(key)
    await this.#syncDirectory(directory, key, operation)
  }

  async #createTemp(temp: string, directory: string, key: string, operation: Operation): Promise<FileHandle> {
    await this.#ensureDirectory(directory, key, operation)
    try {
      return await open(temp, 'wx', 0o644)
    } catch (error) {
      if (errnoOf(error) !== 'ENOENT') {
        throw this.#failure(error, key, operation)
      }
    }
    // Someone removed a directory we had made: forget what we knew and make it again, once.
    this.#readyDirs.clear()
    await this.#ensureDirectory(directory, key, operation)
    try {
      return await open(temp, 'wx', 0o644)
    } catch (error) {
      throw this.#failure(error, key, operation)
    }
  }

  async #writeStream(handle: FileHandle, body: Readable, key: string, operation: Operation): Promise<void> {
    const chunks = body[Symbol.asyncIterator]()
    try {
      while (true) {
        let next: IteratorResult<unknown>
        try {
          next = await chunks.next()
        } catch (error) {
          throw isBackupError(error) ? error : sourceFailed(key, this.location, operation, error)
        }
        if (next.done) {
          return
        }
        const chunk = next.value
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array)
        await this.#writeAll(handle, bytes, key, operation)
      }
    } finally {
      // Stops and destroys the source when we leave early (a write failed).
      await chunks.return?.()
    }
  }

  async #writeAll(handle: FileHandle, bytes: Uint8Array, key: string, operation: Operation): Promise<void> {
    let written = 0
    try {
      while (written < bytes.byteLength) {
        const result = await handle.write(bytes, written, bytes.byteLength - written)
        written += result.bytesWritten
      }
    } catch (error) {
      throw this.#failure(error, key, operation)
    }
  }

  async #openForRead(key: string, operation: Operation): Promise<FileHandle> {
    let handle: FileHandle
    try {
      handle = await open(this.#pathOf(key), 'r')
    } catch (error) {
      throw this.#failure(error, key, operation)
    }
    let isFile: boolean
    try {
      isFile = (await handle.stat()).isFile()
    } catch (error) {
      await handle.close()
      throw this.#failure(error, key, operation)
    }
    if (!isFile) {
      // A directory of other keys: in object-store terms there is no object here.
      await handle.close()
      throw notFound(key, this.location, operation)
    }
    return handle
  }

  #ensureDirectory(directory: string, key: string, operation: Operation): Promise<void> {
    let ready = this.#readyDirs.get(directory)
    if (ready === undefined) {
      ready = this.#makeDirectory(directory, key, operation)
      this.#readyDirs.set(directory, ready)
      ready.catch(() => this.#readyDirs.delete(directory))
    }
    return ready
  }

  async #makeDirectory(directory: string, key: string, operation: Operation): Promise<void> {
    if (directory === this.#root) {
      let first: string | undefined
      try {
        first = await mkdir(directory, { recursive: true })
      } catch (error) {
        throw this.#failure(error, key, operation)
      }
      // Every directory mkdir created, from the root up to `first`, has its entry in the one above.
      // Directories above the root that already existed are not ours to sync (nor may they be
      // readable), and a root that already existed has had its entry synced long ago.
      for (let created = directory; first !== undefined; created = dirname(created)) {
        if (created !== first) {
          await this.#syncDirectory(dirname(created), key, operation)
        } else {
          // The directory above `first` existed already: we could write to it, but need not be
          // able to read (open) it, and then its entry is as durable as we can make it.
          await this.#syncDirectory(dirname(created), key, operation).catch(error => {
            if (!isBackupError(error, 'KB_STORAGE_ACCESS_DENIED')) {
              throw error
            }
          })
        }
        if (created === first || created === dirname(created)) {
          break
        }
      }
      return
    }
    await this.#ensureDirectory(dirname(directory), key, operation)
    try {
      await mkdir(directory)
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') {
        throw this.#failure(error, key, operation)
      }
    }
    // Also when it existed: whoever made it may not have synced its entry yet.
    await this.#syncDirectory(dirname(directory), key, operation)
  }

  /**
   * Makes the entries of `directory` durable: resolves once an fsync of it that started after
   * this call has ended. Callers whose entries are in one directory share the fsync (2,000
   * partition folders made at once in one topic folder cost a handful of its fsyncs, not
   * 2,000): a caller arriving while one runs waits for the next, which every caller arriving
   * meanwhile shares, since the running one may have started before their entries existed.
   */
  async #syncDirectory(directory: string, key: string, operation: Operation): Promise<void> {
    let syncs = this.#directorySyncs.get(directory)
    if (syncs === undefined) {
      syncs = { running: undefined, next: undefined }
      this.#directorySyncs.set(directory, syncs)
    }
    if (syncs.next === undefined) {
      const state = syncs
      const next: Promise<void> = (state.running ?? Promise.resolve())
        .then(
          () => undefined,
          () => undefined
        )
        .then(() => {
          state.next = undefined
          state.running = next
          return fsyncDirectory(directory)
        })
        .finally(() => {
          if (state.running === next) {
            state.running = undefined
            if (state.next === undefined) {
              this.#directorySyncs.delete(directory)
            }
          }
        })
      state.next = next
    }
    try {
      await syncs.next
    } catch (error) {
      throw this.#failure(error, key, operation)
    }
  }

  async #walk(directory: string, directoryKey: string, prefix: string, found: ObjectInfo[]): Promise<void> {
    let entries: Dirent[]
    try {
      entries = await readdir(directory, { withFileTypes: true })
    } catch (error) {
      if (isMissing(error)) {
        return
      }
      throw this.#failure(error, prefix, 'list')
    }
    await Promise.all(
      entries.map(async entry => {
        const key = directoryKey + entry.name
        if (entry.isDirectory()) {
          const subKey = `${key}/`
          if (subKey.startsWith(prefix) || prefix.startsWith(subKey)) {
            await this.#walk(join(directory, entry.name), subKey, prefix, found)
          }
          return
        }
        if (!entry.isFile() || isTempName(entry.name) || !key.startsWith(prefix)) {
          return
        }
        try {
          found.push({ key, size: (await stat(join(directory, entry.name))).size })
        } catch (error) {
          // Deleted between readdir and stat: it is simply not there any more.
          if (!isMissing(error)) {
            throw this.#failure(error, key, 'list')
          }
        }
      })
    )
  }

  /** Maps a filesystem error to our codes; BackupErrors pass through unchanged. */
  #failure(error: unknown, key: string, operation: Operation): BackupError {
    if (isBackupError(error)) {
      return error
    }
    const code = errnoOf(error)
    const context = { location: this.location, key, operation, cause: error }
    const reason = error instanceof Error ? error.message : String(error)
    if (readOperations.has(operation) && isMissing(error)) {
      return notFound(key, this.location, operation)
    }
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      const access = readOperations.has(operation) ? 'read' : 'write to'
      return new BackupError(
        'KB_STORAGE_ACCESS_DENIED',
        `permission denied to ${operation} ${key} at ${this.location} (${reason}); ` +
          `check that the user running kafka-backup can ${access} ${this.location}`,
        context
      )
    }
    if (code === 'ENOTDIR') {
      return new BackupError(
        'KB_STORAGE',
        `cannot ${operation} ${key} at ${this.location}: part of the path is a file where a directory is needed (${reason})`,
        context
      )
    }
    return new BackupError('KB_STORAGE', `${operation} of ${key} at ${this.location} failed: ${reason}`, context)
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(directory, 'r')
    await handle.sync()
  } catch (error) {
    // Some filesystems (and platforms) cannot fsync a directory; their renames are as
    // durable as they get without it.
    const code = errnoOf(error)
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR') {
      throw error
    }
  } finally {
    await handle?.close()
  }
}

function isMissing(error: unknown): boolean {
  const code = errnoOf(error)
  return code === 'ENOENT' || code === 'ENOTDIR'
}
