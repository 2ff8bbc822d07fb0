/**
 * One stored object seen as random-access bytes, the way the segment reader consumes it (the
 * trailer, the footer, then the frames a restore needs), with an optional plan-driven read-ahead
 * for callers that know several ranges ahead. The restore does not use it: the segment reader
 * reads one frame ahead itself, under a budget shared across partitions (src/segment/reader.ts).
 *
 * Read-ahead is driven by a plan, not guessed: the reader knows from the footer which frames it
 * will read and in which order, and hands those ranges to prefetch(). At most `readAhead`
 * planned ranges are in flight or waiting at any time, so memory stays bounded by
 * `readAhead` x frame size; each read() of a planned range hands over its buffer and starts
 * the next one. Reads outside the plan go straight to storage and leave the plan alone.
 */
import { BackupError } from '../errors.ts'
import { checkRange, notFound, rangePastEnd } from './keys.ts'
import type { Storage } from './storage.ts'

/** Random access to an object of known size; what the segment reader reads from. */
export interface RangeSource {
  readonly size: number
  read(offset: number, length: number): Promise<Buffer>
}

export interface ByteRange {
  offset: number
  length: number
}

export interface StorageRangeSourceOptions {
  /** The object's size when the caller already knows it (from an index); saves a head(). */
  size?: number
  /** How many planned ranges may be fetched ahead of the reader. Default 4. */
  readAhead?: number
}

interface Prefetched {
  index: number
  buffer: Promise<Buffer>
}

const defaultReadAhead = 4

/** Opens `key` for range reads; throws KB_STORAGE_NOT_FOUND when it does not exist. */
export async function openRangeSource(
  storage: Storage,
  key: string,
  options: StorageRangeSourceOptions = {}
): Promise<StorageRangeSource> {
  let size = options.size
  if (size === undefined) {
    const info = await storage.head(key)
    if (info === undefined) {
      throw notFound(key, storage.location, 'open')
    }
    size = info.size
  }
  return new StorageRangeSource(storage, key, size, options.readAhead ?? defaultReadAhead)
}

function rangeId(offset: number, length: number): string {
  return `${offset}+${length}`
}

export class StorageRangeSource implements RangeSource {
  readonly key: string
  readonly size: number
  readonly #storage: Storage
  readonly #readAhead: number
  #plan: readonly ByteRange[] = []
  /** Where each planned range sits in the plan (its first occurrence). */
  #planIndex = new Map<string, number>()
  /** The index of the next planned range not yet started. */
  #nextToStart = 0
  readonly #prefetched = new Map<string, Prefetched>()

  constructor(storage: Storage, key: string, size: number, readAhead: number = defaultReadAhead) {
    if (!Number.isSafeInteger(readAhead) || readAhead < 0) {
      throw new BackupError('KB_STORAGE', `readAhead must be a non-negative integer, not ${readAhead}`, {
        location: storage.location,
        key,
        operation: 'open'
      })
    }
    this.#storage = storage
    this.key = key
    this.size = size
    this.#readAhead = readAhead
  }

  /**
   * Declares the ranges the reader will read next, in order, and starts fetching the first
   * `readAhead` of them. Replaces any earlier plan; buffers fetched for it and not read are
   * dropped. `prefetch([])` cancels read-ahead.
   */
  prefetch(ranges: readonly ByteRange[]): void {
    for (const { offset, length } of ranges) {
      this.#checkRange(offset, length)
    }
    this.#prefetched.clear()
    this.#plan = ranges.slice()
    this.#planIndex = new Map()
    this.#plan.forEach(({ offset, length }, index) => {
      const id = rangeId(offset, length)
      if (!this.#planIndex.has(id)) {
        this.#planIndex.set(id, index)
      }
    })
    this.#nextToStart = 0
    this.#fill()
  }

  /** How many planned ranges are being fetched or waiting to be read. */
  get prefetchedCount(): number {
    return this.#prefetched.size
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#checkRange(offset, length)
    const id = rangeId(offset, length)
    const index = this.#planIndex.get(id)
    if (index === undefined) {
      return this.#storage.getRange(this.key, offset, length)
    }
    // On a miss the range the reader waits for goes out before any read-ahead.
    const buffer = this.#prefetched.get(id)?.buffer ?? this.#storage.getRange(this.key, offset, length)
    // Planned ranges the reader skipped over will not be read: free their slots.
    for (const [otherId, other] of this.#prefetched) {
      if (other.index <= index) {
        this.#prefetched.delete(otherId)
      }
    }
    this.#nextToStart = Math.max(this.#nextToStart, index + 1)
    this.#fill()
    return buffer
  }

  #fill(): void {
    while (this.#prefetched.size < this.#readAhead && this.#nextToStart < this.#plan.length) {
      const index = this.#nextToStart++
      const { offset, length } = this.#plan[index]!
      const id = rangeId(offset, length)
      if (this.#prefetched.has(id)) {
        continue
      }
      const buffer = this.#storage.getRange(this.key, offset, length)
      // The error reaches the caller through read(); a prefetch that is never read (the plan
      // changed) must not become an unhandled rejection.
      buffer.catch(() => undefined)
      this.#prefetched.set(id, { index, buffer })
    }
  }

  #checkRange(offset: number, length: number): void {
    checkRange(this.key, offset, length, this.#storage.location, 'read')
    if (offset + length > this.size) {
      throw rangePastEnd(this.key, offset, length, this.size, this.#storage.location, 'read')
    }
  }
}
