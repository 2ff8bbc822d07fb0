/**
 * One partition's side of a backup: batches handed over by the fetcher are appended, in
 * order, to the open segment, which streams to storage. A segment becomes durable when its
 * upload completes; only then does the partition's index (its checkpoint) advance, so a run
 * killed at any point resumes from the last durable segment with no gap and no duplicate.
 *
 * Many partitions with little data each (docs/benchmarks.md, "Many partitions with little data
 * each"): a segment's upload starts only once the writer may put out a frame, so a segment that
 * closes within its first frame is written in one go when it closes instead of holding an open
 * upload (a file, a stream, their promises) through the whole fetch; and the engine bounds how
 * many partitions close segments and write indexes at once (`closeSlots`).
 */

import { Codec, type RecordBatchView } from '../batch/header.ts'
import { type PartitionIndex, type SegmentEntry, segmentKey, writePartitionIndex } from '../catalog/manifest.ts'
import { newSegmentKey } from '../crypto/frames.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError, isBackupError } from '../errors.ts'
import type { SegmentCodec } from '../segment/codecs.ts'
import { type SegmentSummary, SegmentWriter, type StoreRecords } from '../segment/writer.ts'
import type { Slots } from '../slots.ts'
import type { Storage } from '../storage/storage.ts'
import type { Throttle } from '../throttle.ts'

export interface PartitionTaskOptions {
  storage: Storage
  backupId: string
  index: PartitionIndex
  /** The topic id backed up; a topic of the same name with another id is another topic. */
  topicId: string
  codec: SegmentCodec
  compressionLevel: number
  frameMaxBytes: number
  storeRecords: StoreRecords
  /** Encrypt new segments with a data key wrapped by the provider's active key. */
  keys?: KeyProvider
  segmentMaxBytes: number
  /** A segment with data is closed after this long, bounding how long fetched data stays non-durable. */
  segmentMaxIntervalMs: number
  /**
   * With workers: the epoch of this worker's claim on the partition (the index's owner.epoch).
   * Segments carry it in their names, and a write the claim of another worker refused ends the
   * task with KB_PARTITION_FENCED.
   */
  ownerEpoch?: number
  /**
   * Taken while a segment is finished, uploaded and indexed: shared by the tasks of a run, it
   * bounds how many do so at once (2,000 partitions closing together held the objects of 2,000
   * uploads and index writes at once, docs/benchmarks.md). Unset: no bound.
   */
  closeSlots?: Slots
  /** Waits until `bytes` more may be written (backup.rate_limit_bytes_per_sec, shared by all tasks). */
  throttle?: Throttle
  /** A segment became durable; `durationMs` is how long finishing and uploading its end took. */
  onSegmentDurable?: (task: PartitionTask, entry: SegmentEntry, durationMs: number) => void
  /** One fetched record set was appended to the segment, `durationMs` after it was handed over. */
  onBatchesWritten?: (task: PartitionTask, records: number, bytes: number, durationMs: number) => void
}

interface OpenSegment {
  writer: SegmentWriter
  /** Started by #startUpload: before the first frame can leave the writer, or at the close. */
  upload: Promise<void> | undefined
  key: string
  /** The key that wraps the segment's data key; unset when it is not encrypted. */
  keyId: string | undefined
  openedAt: number
  appendedBytes: number
  /** Closes the segment when segmentMaxIntervalMs has passed since it opened. */
  timer?: NodeJS.Timeout
}

export class PartitionTask {
  readonly topic: string
  readonly topicId: string
  readonly partition: number
  readonly index: PartitionIndex
  /** Where the next fetch starts; ahead of the checkpoint while data is in an open segment. */
  fetchOffset: bigint
  /** Where this run started (for progress). */
  readonly runStartOffset: bigint
  /** One-shot runs stop here (the last stable offset when the run started). */
  stopOffset: bigint | undefined
  /** Set when the topic vanished from the cluster; the task then takes no more data. */
  deleted = false
  recordsWritten = 0
  bytesWritten = 0
  /** Bytes handed over by the fetcher and not yet appended to a segment. */
  bufferedBytes = 0
  /** The partition's last stable offset in the latest Fetch response (for lag). */
  lastStableOffset: bigint | undefined

  readonly #options: PartitionTaskOptions
  #chain: Promise<void> = Promise.resolve()
  #failure: unknown
  /** Aborted by discardQueued: batches not yet appended are dropped instead of written. */
  readonly #discard = new AbortController()
  #segment: OpenSegment | undefined
  /** The fetch position covered by everything appended to the open segment so far. */
  #appendedThrough: bigint
  #indexDirty = false

  constructor(options: PartitionTaskOptions) {
    this.#options = options
    this.index = options.index
    this.topic = options.index.topic
    this.topicId = options.topicId
    this.partition = options.index.partition
    this.fetchOffset = BigInt(options.index.nextOffset)
    this.runStartOffset = this.fetchOffset
    this.#appendedThrough = this.fetchOffset
  }

  get done(): boolean {
    return this.deleted || (this.stopOffset !== undefined && this.fetchOffset >= this.stopOffset)
  }

  get checkpoint(): bigint {
    return BigInt(this.index.nextOffset)
  }

  get failed(): boolean {
    return this.#failure !== undefined
  }

  /** Throws the error that stopped this task's writes, if any. */
  assertHealthy(): void {
    if (this.#failure !== undefined) {
      throw this.#failure
    }
  }

  /**
   * Queues batches for writing. `positionAfter` is the fetch position once they are consumed,
   * which may lie past the last batch when control or aborted batches were dropped.
   */
  enqueue(batches: RecordBatchView[], positionAfter: bigint, release: () => void): void {
    const bytes = batches.reduce((sum, batch) => sum + batch.bytes.length, 0)
    const handedOverAt = performance.now()
    this.bufferedBytes += bytes
    this.#run(
      async () => {
        try {
          if (this.#discard.signal.aborted) {
            return
          }
          await this.#options.throttle?.(bytes, this.#discard.signal)
          if (this.#discard.signal.aborted) {
            return
          }
          let records = 0
          for (const batch of batches) {
            await this.#append(batch)
            records += batch.recordCount
          }
          if (batches.length > 0) {
            this.#options.onBatchesWritten?.(this, records, bytes, performance.now() - handedOverAt)
          }
          this.#appendedThrough = positionAfter
          if (!this.#segment && positionAfter > this.checkpoint) {
            this.index.nextOffset = positionAfter.toString()
            this.#indexDirty = true
          }
        } finally {
          this.bufferedBytes -= bytes
          release()
        }
      },
      () => {
        // A failed task takes no more batches, but their bytes still leave the budget.
        this.bufferedBytes -= bytes
        release()
      }
    )
  }

  /** Records offsets lost to retention before they could be backed up (OFFSET_OUT_OF_RANGE). */
  recordGap(fromOffset: bigint, toOffset: bigint): void {
    this.fetchOffset = toOffset
    this.#run(async () => {
      await this.#closeSegment()
      this.index.gaps.push({
        fromOffset: fromOffset.toString(),
        toOffset: toOffset.toString(),
        reason: 'log-start-moved',
        detectedAt: new Date().toISOString()
      })
      this.index.nextOffset = toOffset.toString()
      this.#appendedThrough = toOffset
      await this.#writeIndex()
    })
  }

  /** Closes the open segment when it has been open longer than the interval. */
  tick(now = Date.now()): void {
    const segment = this.#segment
    if (segment && now - segment.openedAt >= this.#options.segmentMaxIntervalMs) {
      this.#closeOnTime(segment)
    }
  }

  #closeOnTime(segment: OpenSegment): void {
    this.#run(async () => {
      if (this.#segment === segment) {
        await this.#closeSegment()
      }
    })
  }

  /**
   * Drops the batches queued but not yet appended (their bytes leave the budget at once). A
   * worker giving its partitions up in a rebalance makes durable only what it appended: writing
   * the queue first would hold the whole group's rebalance for as long as the rate limit takes
   * over up to max_bytes_in_flight, and the next owner fetches those offsets again from the
   * checkpoint anyway.
   */
  discardQueued(): void {
    this.#discard.abort()
  }

  /** Makes everything appended so far durable and writes the index. */
  async flush(): Promise<void> {
    this.#run(() => this.#closeSegment())
    await this.#chain
    this.assertHealthy()
  }

  /** Drops the open segment without making it durable (on failure of the run). */
  async abort(reason: unknown): Promise<void> {
    await this.#chain.catch(() => {})
    const segment = this.#segment
    this.#segment = undefined
    if (segment) {
      clearTimeout(segment.timer)
      segment.writer.abort(reason instanceof Error ? reason : new Error(String(reason)))
      await segment.upload?.catch(() => {})
    }
  }

  /** Runs `step` after the queued ones; after a failure, steps are skipped and `onSkip` runs instead. */
  #run(step: () => Promise<void>, onSkip?: () => void): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#failure !== undefined) {
        onSkip?.()
        return
      }
      try {
        await step()
      } catch (error) {
        this.#failure = error
      }
    })
  }

  async #append(batch: RecordBatchView): Promise<void> {
    if (!this.#segment) {
      this.#segment = await this.#openSegment(batch.baseOffset)
    }
    const segment = this.#segment
    if (segment.upload === undefined && !staysInOpenFrame(segment.writer, batch)) {
      this.#startUpload(segment)
    }
    try {
      await segment.writer.append(batch)
    } catch (error) {
      throw await this.#uploadFailure(segment, error)
    }
    segment.appendedBytes += batch.bytes.length
    this.recordsWritten += batch.recordCount
    this.bytesWritten += batch.bytes.length
    if (segment.appendedBytes >= this.#options.segmentMaxBytes) {
      await this.#closeSegment()
    }
  }

  /**
   * The error to report when appending failed: usually the upload failed first and the stream
   * was torn down, leaving the append only an abort; the upload's error says what happened.
   */
  async #uploadFailure(segment: OpenSegment, appendError: unknown): Promise<unknown> {
    const uploadError = await Promise.race([
      (segment.upload ?? Promise.resolve()).then(
        () => undefined,
        (error: unknown) => error
      ),
      new Promise(resolve => setTimeout(resolve, 5000, undefined).unref())
    ])
    const error = uploadError ?? appendError
    if (isBackupError(error, 'KB_STORAGE_EXISTS') && this.#options.ownerEpoch !== undefined) {
      return this.#fenced(segment.key, error)
    }
    if (isBackupError(error, 'KB_STORAGE_EXISTS')) {
      return new BackupError(
        'KB_BACKUP_BUSY',
        `segment ${segment.key} of ${this.topic}/${this.partition} was written by another process at the same time: ` +
          'two processes are writing this backup; this one stops without overwriting it',
        { cause: error, topic: this.topic, partition: this.partition, key: segment.key }
      )
    }
    return isBackupError(error)
      ? error
      : new BackupError(
          'KB_STORAGE',
          `segment ${segment.key} of ${this.topic}/${this.partition} could not be written: ${(error as Error).message}`,
          { cause: error, topic: this.topic, partition: this.partition, key: segment.key }
        )
  }

  async #openSegment(firstOffset: bigint): Promise<OpenSegment> {
    const { storage, backupId, codec, compressionLevel, frameMaxBytes, storeRecords, keys } = this.#options
    const key = segmentKey(backupId, this.topic, this.partition, firstOffset, this.#options.ownerEpoch)
    // A segment is never written over: whatever led here (a checkpoint gone backwards, a second
    // writer), the data already stored is what a restore would read.
    const last = this.index.segments.at(-1)
    if (last && firstOffset < BigInt(last.nextOffset)) {
      throw new BackupError(
        'KB_BACKUP_CORRUPT',
        `${this.topic}/${this.partition}: a new segment would start at offset ${firstOffset}, inside ${backupId}/${last.key} (which ends before ${last.nextOffset})`,
        { topic: this.topic, partition: this.partition, offset: firstOffset.toString(), key: `${backupId}/${last.key}` }
      )
    }
    if ((await storage.head(key)) !== undefined) {
      throw new BackupError(
        'KB_BACKUP_CORRUPT',
        `${this.topic}/${this.partition}: segment ${key} at ${storage.location} already exists outside the partition index; it is not overwritten`,
        { topic: this.topic, partition: this.partition, offset: firstOffset.toString(), key }
      )
    }
    const encryption = keys && (await newSegmentKey(keys, this.topic, this.partition))
    const writer = new SegmentWriter({
      topic: this.topic,
      partition: this.partition,
      codec,
      level: compressionLevel,
      frameMaxBytes,
      storeRecords,
      name: key,
      encryption
    })
    const segment: OpenSegment = {
      writer,
      upload: undefined,
      key,
      keyId: encryption?.keyId,
      openedAt: Date.now(),
      appendedBytes: 0
    }
    // Its own timer, so that how long data waits to be durable is bounded by the interval
    // itself, not by the engine's once-a-second tick on top (docs/benchmarks.md, "Continuous backup").
    segment.timer = setTimeout(() => this.#closeOnTime(segment), this.#options.segmentMaxIntervalMs).unref()
    return segment
  }

  /**
   * Starts streaming the segment to storage. Until then the writer's output stays in its
   * readable; nothing waits on it as long as every batch stays in the open frame (staysInOpenFrame).
   */
  #startUpload(segment: OpenSegment): Promise<void> {
    if (segment.upload === undefined) {
      // create, not put: a segment key is written once, and a writer racing us for it loses.
      const upload = this.#options.storage.create(segment.key, segment.writer.readable)
      // A failed upload must also fail pending appends, which would otherwise wait on backpressure.
      upload.catch(error => segment.writer.abort(error))
      segment.upload = upload
    }
    return segment.upload
  }

  async #closeSegment(): Promise<void> {
    const slots = this.#options.closeSlots
    if (slots === undefined || (this.#segment === undefined && !this.#indexDirty)) {
      return this.#closeSegmentNow()
    }
    return slots.run(() => this.#closeSegmentNow())
  }

  async #closeSegmentNow(): Promise<void> {
    const segment = this.#segment
    if (!segment) {
      if (this.#indexDirty) {
        await this.#writeIndex()
      }
      return
    }
    this.#segment = undefined
    clearTimeout(segment.timer)
    const closingAt = performance.now()
    let summary: SegmentSummary
    const upload = this.#startUpload(segment)
    try {
      summary = await segment.writer.finish()
      await upload
    } catch (error) {
      throw await this.#uploadFailure(segment, error)
    }
    const entry: SegmentEntry = {
      key: segment.key.slice(this.#options.backupId.length + 1),
      firstOffset: summary.firstOffset.toString(),
      lastOffset: summary.lastOffset.toString(),
      nextOffset: summary.nextOffset.toString(),
      minTimestamp: summary.minTimestamp.toString(),
      maxTimestamp: summary.maxTimestamp.toString(),
      recordCount: summary.recordCount,
      batchCount: summary.batchCount,
      frameCount: summary.frameCount,
      sizeBytes: summary.sizeBytes,
      uncompressedBytes: summary.uncompressedBytes,
      codec: this.#options.codec,
      ...(segment.keyId === undefined ? {} : { keyId: segment.keyId }),
      lastLeaderEpoch: summary.lastLeaderEpoch,
      createdAt: new Date().toISOString()
    }
    this.index.segments.push(entry)
    this.index.nextOffset = (
      this.#appendedThrough > summary.nextOffset ? this.#appendedThrough : summary.nextOffset
    ).toString()
    await this.#writeIndex()
    this.#options.onSegmentDurable?.(this, entry, performance.now() - closingAt)
  }

  async #writeIndex(): Promise<void> {
    try {
      await writePartitionIndex(this.#options.storage, this.#options.backupId, this.index)
    } catch (error) {
      if (isBackupError(error, 'KB_BACKUP_BUSY') && this.#options.ownerEpoch !== undefined) {
        throw this.#fenced(error.key as string, error)
      }
      throw error
    }
    this.#indexDirty = false
  }

  #fenced(key: string, cause: unknown): BackupError {
    return new BackupError(
      'KB_PARTITION_FENCED',
      `${this.topic}/${this.partition} moved to another worker: ${key} was written by its new owner, so this worker's write (owner epoch ${this.#options.ownerEpoch}) was refused and it drops the partition`,
      { cause, topic: this.topic, partition: this.partition, key, epoch: this.#options.ownerEpoch }
    )
  }
}

/**
 * Whether appending `batch` only copies it into the writer's open frame: no frame is compressed
 * and nothing reaches the writer's readable, so the append cannot wait for an upload that has
 * not started. A batch stored with its records decompressed has a size known only once
 * decompressed, so it counts as one that may not stay.
 */
function staysInOpenFrame(writer: SegmentWriter, batch: RecordBatchView): boolean {
  const storedAsFetched = writer.storeRecords === 'as_fetched' || batch.codec === Codec.none
  return storedAsFetched && writer.pendingBytes + batch.bytes.length <= writer.frameMaxBytes
}
