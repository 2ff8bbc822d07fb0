/**
 * Re-partitioning on restore (restore.repartition; docs/architecture.md, "Re-partitioning on
 * restore"): the records of a topic are restored into a different number of partitions, each to
 * the partition Kafka's default partitioner picks for its key, so that producers and consumers
 * of the target find keys where they expect them.
 *
 * One reader per topic reads the source partitions one after the other, each once, decodes every
 * batch and routes each record to a lane, one per target partition; a lane gathers its records
 * into batches (in the codec of the first record's source batch) for that partition's feed. A
 * target partition therefore holds the records of source partition 0 routed to it, then those of
 * source partition 1, and so on: each key's records keep their order, and every target
 * partition is the same sequence on every run, which is what resuming exactly needs. Progress
 * and offset maps are kept per source and target partition pair.
 */

import type { CodecId } from '../batch/header.ts'
import { partitionForKey } from '../batch/partitioner.ts'
import type { Storage } from '../storage/storage.ts'
import type { KeyEraser } from './erase.ts'
import { type OutgoingBatch, rebuildRecords, restoreFloor, type SelectedRecord, selectRecords } from './outgoing.ts'
import type { PartitionPlan } from './plan.ts'
import type { PartitionProgress } from './progress.ts'
import { readPartitionBatches } from './source.ts'
import { mayOverlap, type TimeWindow } from './window.ts'

/**
 * The target partition of a record: Kafka's default partitioner for a key; a record without a
 * key stays with the other keyless records of its source partition (source partition modulo the
 * target count), which keeps their relative order and is the same on every run. (Kafka's
 * producer would spread them by batch, in no order a restore could reproduce.)
 */
export function targetPartitionOf(key: Uint8Array | null, sourcePartition: number, partitionCount: number): number {
  return key === null ? sourcePartition % partitionCount : partitionForKey(key, partitionCount)
}

/** Batches waiting for one lane's feed; the reader waits while it is full. */
class LaneQueue implements AsyncIterable<OutgoingBatch> {
  readonly #items: OutgoingBatch[] = []
  #ended = false
  #error: unknown
  #wakeReader: (() => void) | undefined
  #wakeWriter: (() => void) | undefined

  static readonly MAX_BATCHES = 8

  push(batch: OutgoingBatch): void {
    this.#items.push(batch)
    this.#wake()
  }

  /** Resolves once there is room (or `signal` aborts). */
  async room(signal: AbortSignal): Promise<void> {
    while (this.#items.length >= LaneQueue.MAX_BATCHES && !signal.aborted) {
      let onAbort: (() => void) | undefined
      await new Promise<void>(resolve => {
        this.#wakeWriter = resolve
        onAbort = resolve
        signal.addEventListener('abort', onAbort, { once: true })
      })
      signal.removeEventListener('abort', onAbort!)
    }
  }

  end(error?: unknown): void {
    this.#ended = true
    this.#error = error
    this.#wake()
  }

  #wake(): void {
    const resolve = this.#wakeReader
    this.#wakeReader = undefined
    resolve?.()
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<OutgoingBatch> {
    for (;;) {
      const next = this.#items.shift()
      if (next) {
        const resolve = this.#wakeWriter
        this.#wakeWriter = undefined
        resolve?.()
        yield next
        continue
      }
      if (this.#error !== undefined) {
        throw this.#error
      }
      if (this.#ended) {
        return
      }
      await new Promise<void>(resolve => {
        this.#wakeReader = resolve
      })
    }
  }
}

interface Lane {
  targetPartition: number
  queue: LaneQueue
  /** Per source partition: its progress into this target partition, if still to restore. */
  pairs: Map<number, PartitionProgress>
  /** Per source partition: where this lane resumes (records below are restored already). */
  floors: Map<number, bigint>
  pending: SelectedRecord[]
  pendingBytes: number
  pendingCodec: CodecId
  pendingErased: number
}

export interface RouterOptions {
  storage: Storage
  backupId: string
  window: TimeWindow
  eraser: KeyEraser | undefined
  /** One plan per source partition to read, in source partition order. */
  sources: PartitionPlan[]
  partitionCount: number
  /** Per target partition: the progress of each source partition not done yet. */
  pairs: Map<number, Map<number, PartitionProgress>>
  /** Records of one lane are sent once they add up to about this many bytes. */
  maxBatchBytes: number
  signal: AbortSignal
}

/** One topic's reader and its lanes; `lane(t)` is what target partition t's feed sends. */
export class TopicRouter {
  readonly #options: RouterOptions
  readonly #lanes = new Map<number, Lane>()

  constructor(options: RouterOptions) {
    this.#options = options
    for (const [targetPartition, pairs] of options.pairs) {
      this.#lanes.set(targetPartition, {
        targetPartition,
        queue: new LaneQueue(),
        pairs,
        floors: new Map([...pairs].map(([source, progress]) => [source, BigInt(progress.state.sourceNextOffset)])),
        pending: [],
        pendingBytes: 0,
        pendingCodec: 0,
        pendingErased: 0
      })
    }
  }

  lane(targetPartition: number): AsyncIterable<OutgoingBatch> {
    return this.#lanes.get(targetPartition)!.queue
  }

  /** Reads and routes everything, then ends every lane (with the error, when one occurs). */
  async run(): Promise<void> {
    try {
      for (const source of this.#options.sources) {
        await this.#routeSource(source)
      }
      for (const lane of this.#lanes.values()) {
        lane.queue.end()
      }
    } catch (error) {
      for (const lane of this.#lanes.values()) {
        lane.queue.end(error)
      }
    }
  }

  async #routeSource(source: PartitionPlan): Promise<void> {
    const { storage, backupId, window, eraser, partitionCount, maxBatchBytes, signal } = this.#options
    const sourcePartition = source.sourcePartition
    const lanes = [...this.#lanes.values()].filter(lane => lane.pairs.has(sourcePartition))
    if (lanes.length === 0) {
      return
    }
    const floorOf = (lane: Lane) => lane.floors.get(sourcePartition)!
    const fromOffset = lanes.map(floorOf).reduce((a, b) => (a < b ? a : b))
    const planned = new Set(source.segments)
    const byTarget = new Map(lanes.map(lane => [lane.targetPartition, lane]))
    let sourceNext = fromOffset
    for await (const batch of readPartitionBatches(storage, backupId, source.index, {
      fromOffset,
      segmentFilter: segment => planned.has(segment),
      frameFilter: row => mayOverlap(window, row.maxTimestamp),
      signal
    })) {
      const { kept } = selectRecords(batch, window, restoreFloor(batch, fromOffset, source.index.gaps))
      for (const selected of kept) {
        const lane = byTarget.get(targetPartitionOf(selected.record.key, sourcePartition, partitionCount))
        if (!lane || selected.offset < floorOf(lane)) {
          continue
        }
        if (eraser?.matches(selected.record.key)) {
          lane.pendingErased++
          continue
        }
        const { key, value, headers } = selected.record
        const size =
          24 +
          (key?.length ?? 0) +
          (value?.length ?? 0) +
          headers.reduce((sum, [k, v]) => sum + k.length + (v?.length ?? 0), 0)
        // A batch must stay within the target's max.message.bytes: one source batch may send
        // all its records to one lane, so the limit is checked per record, not per source batch.
        if (lane.pending.length > 0 && lane.pendingBytes + size > maxBatchBytes) {
          await this.#flush(lane, sourcePartition, selected.offset)
        }
        if (lane.pending.length === 0) {
          lane.pendingCodec = batch.codec
        }
        lane.pending.push(selected)
        lane.pendingBytes += size
      }
      sourceNext = batch.nextOffset
    }
    for (const lane of lanes) {
      await this.#flush(lane, sourcePartition, sourceNext)
      // Erased after the lane's last record of this source: counted when the lane is done.
      lane.pairs.get(sourcePartition)!.erasedAtEnd = lane.pendingErased
      lane.pendingErased = 0
    }
  }

  async #flush(lane: Lane, sourcePartition: number, sourceNextAfter: bigint): Promise<void> {
    if (lane.pending.length === 0) {
      return
    }
    const outgoing: OutgoingBatch = {
      ...rebuildRecords(lane.pendingCodec, lane.pending),
      sourceNextAfter,
      erased: lane.pendingErased,
      sourcePartition
    }
    lane.pending = []
    lane.pendingBytes = 0
    lane.pendingErased = 0
    await lane.queue.room(this.#options.signal)
    this.#options.signal.throwIfAborted()
    lane.queue.push(outgoing)
  }
}
