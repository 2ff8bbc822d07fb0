/**
 * Streams one segment (format.ts, docs/segment-format.md): raw RecordBatches are copied into a
 * pooled frame buffer (with `storeRecords: 'decompressed'`, a compressed batch's records are
 * decompressed into it, stored-records.ts); a full frame is compressed off the event loop while
 * the next one fills, and pushed to `readable`, which the caller pipes to storage. Memory per
 * writer: the frame filling plus up to FRAMES_IN_FLIGHT frames compressing (with the
 * compressor's window each), and at most `highWaterMarkBytes` plus one stored frame waiting in
 * `readable`. `append` waits once FRAMES_IN_FLIGHT frames are in flight and the oldest one has
 * no room in `readable`, so a slow storage upload slows the fetcher instead of growing a buffer.
 */
import os from 'node:os'
import { Readable } from 'node:stream'
import { crc32c } from '../batch/crc.ts'
import { BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, type RecordBatchView } from '../batch/header.ts'
import { FrameCipher, type SegmentKey } from '../crypto/frames.ts'
import { BackupError } from '../errors.ts'
import { Slots } from '../slots.ts'
import { type FrameCodec, frameCodec, POOL_THREADS, resolveLevel } from './codecs.ts'
import {
  encodeFooter,
  encodeHeader,
  encodeTrailer,
  FrameFlag,
  type FrameIndexRow,
  HeaderField,
  NONE,
  type SegmentCodecName,
  type SegmentTotals,
  totalsOf
} from './format.ts'
import { FrameStats } from './frame.ts'
import { type FrameBufferPool, sharedFramePool } from './pool.ts'
import { decompressedRecords, writeWithRecords } from './stored-records.ts'

function noop(): void {}

export const DEFAULT_FRAME_MAX_BYTES = 1024 * 1024

/** The first frame buffer of a writer, at least (#reserve). */
const MIN_FRAME_BUFFER_BYTES = 16 * 1024

/** Frames of one writer compressing at once (the frame filling is one more buffer). */
const FRAMES_IN_FLIGHT = 2

/**
 * Frame compressions at once across all writers: the libuv pool's threads, but no more than the
 * machine has cores, since each one holds a frame buffer and a compression context of a few MiB
 * (docs/benchmarks.md, "Peak RSS").
 */
const COMPRESSIONS_AT_ONCE = Math.min(POOL_THREADS, os.availableParallelism())

const compressionSlots = new Slots(COMPRESSIONS_AT_ONCE)

/** How a compressed batch is stored: as fetched, or with its records decompressed (stored-records.ts). */
export type StoreRecords = 'as_fetched' | 'decompressed'

export interface SegmentWriterOptions {
  topic: string
  partition: number
  /** Names the segment in errors (its storage key). */
  name: string
  codec?: SegmentCodecName
  /** Codec level; zstd defaults to 3, gzip to 6; ignored by lz4 and none. */
  level?: number
  /** Uncompressed bytes per frame; a batch larger than this gets a frame of its own. */
  frameMaxBytes?: number
  /** Stored bytes `readable` may hold before `append` waits; defaults to frameMaxBytes. */
  highWaterMarkBytes?: number
  createdAtMs?: number
  pool?: FrameBufferPool
  /** Default as_fetched. */
  storeRecords?: StoreRecords
  /** Seal every frame with this segment's data key (crypto/frames.ts, newSegmentKey). */
  encryption?: SegmentKey
}

export interface SegmentSummary extends SegmentTotals {
  name: string
  codec: SegmentCodecName
  frameCount: number
  /** Bytes of the whole segment as stored. */
  sizeBytes: number
  /**
   * CRC-32C of the footer. The footer holds the header's CRC and every frame's CRC, so this
   * one number pins the whole segment.
   */
  checksum: number
  /** The partitionLeaderEpoch of the last batch: what a later run checks the source log against (backup/divergence.ts). */
  lastLeaderEpoch: number
}

type State = 'open' | 'finished' | 'failed'

export class SegmentWriter {
  readonly readable: Readable
  readonly name: string
  readonly codec: SegmentCodecName
  readonly level: number
  readonly frameMaxBytes: number
  readonly storeRecords: StoreRecords

  readonly #codec: FrameCodec
  readonly #pool: FrameBufferPool
  readonly #headerLength: number
  readonly #headerCrc: number
  readonly #version: number
  readonly #cipher: FrameCipher | undefined
  readonly #rows: FrameIndexRow[] = []
  readonly #stats = new FrameStats()
  #frame: Buffer | undefined
  #frameUsed = 0
  /** Set once a frame was flushed full: later frames start at full size (#reserve). */
  #fillsFrames = false
  /** Frames being compressed or pushed, oldest first. */
  readonly #inFlight: Array<Promise<void>> = []
  /** Flags of the open frame that the batches' own attributes do not give (FrameStats does those). */
  #frameFlags = 0
  #position = 0
  #lastOffset = NONE
  #lastLeaderEpoch = -1
  #state: State = 'open'
  #busy = false
  #failure: unknown
  #wakeUp: { resolve: () => void; reject: (error: unknown) => void } | undefined

  constructor(options: SegmentWriterOptions) {
    this.name = options.name
    this.#codec = frameCodec(options.codec ?? 'zstd')
    this.codec = this.#codec.name
    this.level = resolveLevel(this.#codec, options.level)
    this.frameMaxBytes = options.frameMaxBytes ?? DEFAULT_FRAME_MAX_BYTES
    this.storeRecords = options.storeRecords ?? 'as_fetched'
    if (
      !Number.isInteger(this.frameMaxBytes) ||
      this.frameMaxBytes < BATCH_HEADER_SIZE ||
      this.frameMaxBytes > 0x7fffffff
    ) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `frameMaxBytes must be an integer from ${BATCH_HEADER_SIZE} to 2^31-1, found ${this.frameMaxBytes}`,
        {
          expected: `${BATCH_HEADER_SIZE}..${0x7fffffff}`,
          found: this.frameMaxBytes
        }
      )
    }
    this.#pool = options.pool ?? sharedFramePool(this.frameMaxBytes)
    const header = encodeHeader({
      codec: this.codec,
      level: this.level,
      topic: options.topic,
      partition: options.partition,
      createdAtMs: BigInt(options.createdAtMs ?? Date.now()),
      ...(options.encryption === undefined
        ? {}
        : {
            encryption: {
              cipher: options.encryption.cipher,
              keyId: options.encryption.keyId,
              wrappedKey: options.encryption.wrappedKey
            }
          })
    })
    this.#headerLength = header.length
    this.#headerCrc = header.readUInt32BE(header.length - 4)
    this.#version = header.readUInt16BE(HeaderField.version)
    this.#cipher =
      options.encryption &&
      new FrameCipher(options.encryption.dataKey, options.topic, options.partition, options.encryption.keyId)
    this.readable = new Readable({
      highWaterMark: options.highWaterMarkBytes ?? this.frameMaxBytes,
      read: () => {
        const wakeUp = this.#wakeUp
        this.#wakeUp = undefined
        wakeUp?.resolve()
      },
      destroy: (error, callback) => {
        // The consumer (storage) gave up: fail the next append instead of waiting forever.
        this.#fail(
          error ??
            new BackupError(
              'KB_STORAGE',
              `segment ${this.name}: the output stream was closed before the segment ended`,
              { segment: this.name }
            )
        )
        callback(error)
      }
    })
    // Failures reach the caller through append/finish and the consumer through its own listener;
    // a readable nobody consumes yet (an upload still starting) must not crash the process.
    this.readable.on('error', noop)
    this.readable.push(header)
    this.#position = header.length
  }

  /** Stored bytes so far (header and flushed frames); the open frame is not counted. */
  get storedBytes(): number {
    return this.#position
  }

  /** Uncompressed bytes waiting in the open frame. */
  get pendingBytes(): number {
    return this.#frameUsed
  }

  /** The offset after the last appended batch, or -1 before the first. */
  get nextOffset(): bigint {
    return this.#lastOffset === NONE ? NONE : this.#lastOffset + 1n
  }

  /**
   * Adds one whole batch. Batches must come in offset order and one call at a time. The bytes
   * are copied before this resolves, so the caller may reuse its buffer afterwards.
   */
  async append(batch: RecordBatchView): Promise<void> {
    this.#enter('append')
    try {
      const bytes = batch.bytes
      if (bytes.length < BATCH_HEADER_SIZE || bytes.length !== BATCH_LOG_OVERHEAD + batch.batchLength) {
        throw new BackupError(
          'KB_BATCH_CORRUPT',
          `segment ${this.name}: a batch must hold exactly 12 + batchLength bytes (expected ${bytes.length >= 12 ? BATCH_LOG_OVERHEAD + batch.batchLength : BATCH_HEADER_SIZE}, found ${bytes.length})`,
          {
            segment: this.name,
            expected: BATCH_LOG_OVERHEAD + (bytes.length >= 12 ? batch.batchLength : 0),
            found: bytes.length
          }
        )
      }
      const baseOffset = batch.baseOffset
      if (this.#lastOffset !== NONE && baseOffset <= this.#lastOffset) {
        throw new BackupError(
          'KB_INTERNAL',
          `segment ${this.name}: batches must be appended in offset order (expected base offset > ${this.#lastOffset}, found ${baseOffset})`,
          { segment: this.name, expected: this.#lastOffset + 1n, found: baseOffset }
        )
      }
      const records = this.storeRecords === 'decompressed' ? decompressedRecords(batch) : undefined
      const size = records === undefined ? bytes.length : BATCH_HEADER_SIZE + records.length
      if (this.#frameUsed > 0 && this.#frameUsed + size > this.frameMaxBytes) {
        this.#fillsFrames = true
        await this.#flushFrame()
      }
      this.#stats.add(batch)
      this.#lastOffset = batch.lastOffset
      this.#lastLeaderEpoch = batch.partitionLeaderEpoch
      if (records !== undefined) {
        this.#frameFlags |= FrameFlag.recordsDecompressed
      }
      if (size > this.frameMaxBytes) {
        // Larger than a frame: compressed straight from the caller's bytes, no copy, and done
        // before append returns, since the caller may reuse its buffer then.
        let whole = bytes
        if (records !== undefined) {
          whole = Buffer.allocUnsafe(size)
          writeWithRecords(batch, records, whole, 0)
        }
        await this.#compressFrame(whole, size)
        await this.#framesDone()
        return
      }
      const frame = this.#reserve(size)
      if (records === undefined) {
        bytes.copy(frame, this.#frameUsed)
      } else {
        writeWithRecords(batch, records, frame, this.#frameUsed)
      }
      this.#frameUsed += size
    } catch (error) {
      this.#fail(error)
      throw error
    } finally {
      this.#leave()
    }
  }

  /** Flushes the open frame, writes footer and trailer, and ends `readable`. */
  async finish(): Promise<SegmentSummary> {
    this.#enter('finish')
    try {
      if (this.#frameUsed > 0) {
        await this.#flushFrame()
      }
      await this.#framesDone()
      this.#releaseFrame()
      const totals = totalsOf(this.#rows)
      const footer = encodeFooter({
        ...totals,
        codec: this.codec,
        headerLength: this.#headerLength,
        headerCrc: this.#headerCrc,
        frames: this.#rows
      })
      const footerCrc = crc32c(footer)
      const trailer = encodeTrailer({
        footerOffset: this.#position,
        footerLength: footer.length,
        footerCrc,
        version: this.#version
      })
      await this.#push(Buffer.concat([footer, trailer]))
      this.#position += footer.length + trailer.length
      this.#state = 'finished'
      this.readable.push(null)
      return {
        ...totals,
        name: this.name,
        codec: this.codec,
        frameCount: this.#rows.length,
        sizeBytes: this.#position,
        checksum: footerCrc,
        lastLeaderEpoch: this.#lastLeaderEpoch
      }
    } catch (error) {
      this.#fail(error)
      throw error
    } finally {
      this.#leave()
    }
  }

  /** Ends the segment unfinished: `readable` errors with `error`, so storage keeps no object. */
  abort(error: unknown): void {
    this.#fail(error)
  }

  #enter(operation: string): void {
    if (this.#state !== 'open') {
      throw new BackupError(
        'KB_INTERNAL',
        `segment ${this.name}: ${operation} after the writer ${this.#state === 'finished' ? 'finished' : 'failed'}`,
        { segment: this.name, cause: this.#failure }
      )
    }
    if (this.#busy) {
      throw new BackupError(
        'KB_INTERNAL',
        `segment ${this.name}: ${operation} while a previous call is pending; await each call`,
        {
          segment: this.name
        }
      )
    }
    this.#busy = true
  }

  #leave(): void {
    this.#busy = false
    if (this.#state === 'failed') {
      // Deferred from #fail while a compression may still have been reading the buffer.
      this.#releaseFrame()
    }
  }

  #fail(error: unknown): void {
    if (this.#state !== 'open') {
      return
    }
    this.#state = 'failed'
    this.#failure = error
    const wakeUp = this.#wakeUp
    this.#wakeUp = undefined
    wakeUp?.reject(error)
    if (!this.readable.destroyed) {
      this.readable.destroy(error instanceof Error ? error : new BackupError('KB_INTERNAL', String(error)))
    }
    if (!this.#busy) {
      this.#releaseFrame()
    }
  }

  /**
   * Room for `size` more bytes in the open frame. A writer starts with a small frame buffer that
   * doubles as batches come, and takes full-size pooled buffers once it has filled a frame: a
   * partition with a few records then holds kilobytes, not a 1 MiB buffer, until its segment
   * closes (2,000 such partitions held 2 GiB of buffers, docs/benchmarks.md, "Many partitions").
   */
  #reserve(size: number): Buffer {
    const needed = this.#frameUsed + size
    if (this.#frame !== undefined && needed <= this.#frame.length) {
      return this.#frame
    }
    const capacity = this.#fillsFrames
      ? this.frameMaxBytes
      : Math.min(this.frameMaxBytes, 2 ** Math.ceil(Math.log2(Math.max(needed, MIN_FRAME_BUFFER_BYTES))))
    const frame = capacity === this.frameMaxBytes ? this.#pool.acquire() : Buffer.allocUnsafeSlow(capacity)
    if (this.#frame !== undefined) {
      this.#frame.copy(frame, 0, 0, this.#frameUsed)
      this.#pool.release(this.#frame)
    }
    this.#frame = frame
    return frame
  }

  #releaseFrame(): void {
    if (this.#frame !== undefined) {
      this.#pool.release(this.#frame)
      this.#frame = undefined
      this.#frameUsed = 0
    }
  }

  /** Hands the open frame to #compressFrame and starts a new one. */
  async #flushFrame(): Promise<void> {
    const frame = this.#frame!
    const uncompressedLength = this.#frameUsed
    this.#frame = undefined
    this.#frameUsed = 0
    await this.#compressFrame(frame.subarray(0, uncompressedLength), uncompressedLength, frame)
  }

  /**
   * Starts compressing a frame and returns: frames compress on the libuv pool while the next
   * ones fill, up to FRAMES_IN_FLIGHT per writer, so that one partition can keep two cores
   * busy, and up to COMPRESSIONS_AT_ONCE across writers, so that many partitions do not queue
   * a frame buffer each behind the pool's threads. Frames are stored in order; `pooled` goes
   * back to the pool once compressed.
   */
  async #compressFrame(bytes: Buffer, uncompressedLength: number, pooled?: Buffer): Promise<void> {
    while (this.#inFlight.length >= FRAMES_IN_FLIGHT) {
      await this.#inFlight.shift()
    }
    const stats = this.#stats
    const row = {
      uncompressedLength,
      firstOffset: stats.firstOffset,
      lastOffset: stats.lastOffset,
      minTimestamp: stats.minTimestamp,
      maxTimestamp: stats.maxTimestamp,
      recordCount: stats.recordCount,
      batchCount: stats.batchCount,
      flags: stats.flags | this.#frameFlags
    }
    stats.reset()
    this.#frameFlags = 0
    await compressionSlots.acquire()
    const compressing = this.#codec.compress(bytes, this.level).finally(() => {
      compressionSlots.release()
      if (pooled !== undefined) {
        this.#pool.release(pooled)
      }
    })
    const previous = this.#inFlight.at(-1)
    const stored = Promise.all([compressing, previous]).then(
      async ([compressed]) => {
        // Encrypted after compression (ciphertext does not compress), in frame order: the
        // nonce is the frame's index.
        // The cipher takes one buffer: joining the codec's pieces costs a copy only when encrypting.
        const pieces =
          this.#cipher?.seal(compressed.length === 1 ? compressed[0]! : Buffer.concat(compressed), {
            frame: this.#rows.length,
            segmentFirstOffset: this.#rows[0]?.firstOffset ?? row.firstOffset,
            firstOffset: row.firstOffset,
            lastOffset: row.lastOffset,
            uncompressedLength
          }) ?? compressed
        let storedLength = 0
        let checksum = 0
        for (const piece of pieces) {
          storedLength += piece.length
          checksum = crc32c(piece, checksum)
        }
        this.#rows.push({ ...row, frameOffset: this.#position, storedLength, checksum })
        this.#position += storedLength
        for (const piece of pieces) {
          await this.#push(piece)
        }
      },
      (error: unknown) => {
        this.#fail(error)
        throw error
      }
    )
    // Awaited by a later frame or finish; this only keeps a failure nobody awaits from being unhandled.
    stored.catch(noop)
    this.#inFlight.push(stored)
  }

  /** Every frame in compression is stored and pushed to `readable`. */
  async #framesDone(): Promise<void> {
    while (this.#inFlight.length > 0) {
      await this.#inFlight.shift()
    }
  }

  async #push(chunk: Buffer): Promise<void> {
    if (this.#state === 'failed') {
      throw this.#failure
    }
    if (!this.readable.push(chunk)) {
      await new Promise<void>((resolve, reject) => {
        this.#wakeUp = { resolve, reject }
      })
    }
  }
}
