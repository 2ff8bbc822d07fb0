/**
 * The one storage interface the engines use (docs/architecture.md, "Layout on storage" and "Code layout"). Keys are '/'-separated
 * paths relative to the backend's root (storage.path or storage.prefix); backends never see
 * absolute paths. A key is either fully written or absent: put, create and replace are atomic.
 *
 * `create` is the write the backup itself uses (docs/architecture.md, "Never overwrite"): it
 * stores a key only if no object has it, decided by the store in the same request (S3
 * `If-None-Match: *`, Azure `If-None-Match: *`, GCS `ifGenerationMatch: 0`, a hard link on the
 * filesystem), so two writers racing for one key cannot both succeed and nothing is ever
 * written over. Versioned buckets and S3 Object Lock then hold a backup with one version per
 * key. The same precondition fences writers: a catalogue document's next revision has one key,
 * which only the first writer gets (src/catalog/revisions.ts).
 */
import type { Readable } from 'node:stream'

export interface ObjectInfo {
  key: string
  size: number
}

export interface Storage {
  /** A human-readable location for messages, e.g. `/backups` or `s3://bucket/prefix`. */
  readonly location: string

  /** Streams `body` to `key`; the object appears only once all of it is durable. */
  put(key: string, body: Readable | Buffer): Promise<void>

  /**
   * Stores `body` at `key` only if no object has that key, atomically (as put). A key that
   * exists, or that another create takes first, is KB_STORAGE_EXISTS; the object there is
   * left as it was.
   */
  create(key: string, body: Readable | Buffer): Promise<void>

  /** Atomically replaces a small object (restore states of older versions, probes). */
  replace(key: string, body: Buffer): Promise<void>

  /** Reads the whole object. Throws KB_STORAGE_NOT_FOUND when it does not exist. */
  get(key: string): Promise<Buffer>

  /** Reads `length` bytes from `offset`. Throws KB_STORAGE_NOT_FOUND, or KB_STORAGE past the end. */
  getRange(key: string, offset: number, length: number): Promise<Buffer>

  /** Streams the whole object. */
  stream(key: string): Promise<Readable>

  /** Size of the object, or undefined when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>

  /** Every object whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>

  /** Removes the object; removing a missing key is not an error. */
  delete(key: string): Promise<void>

  /**
   * Aborts the uploads of keys under `prefix` that a killed writer left incomplete before
   * `startedBefore`, where the backend has such a thing (S3 multipart uploads cost money until
   * aborted; the filesystem's temp files take disk space). Returns how many. Backends whose
   * leftovers expire by themselves (Azure uncommitted blocks, GCS resumable uploads) leave it out.
   */
  abortIncompleteUploads?(prefix: string, startedBefore: Date): Promise<number>

  close(): Promise<void>
}
