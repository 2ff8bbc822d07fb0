/**
 * Reads a backed-up partition back as raw batches, segment by segment, frame by frame, with
 * range reads: frames wholly below `fromOffset`, or that `frameFilter` rejects (a restore
 * window), are never fetched; the next frame is read while the current one is consumed.
 * Each frame's CRC-32C is verified; batch CRCs were verified when the backup fetched them
 * (`validate --deep` checks them again).
 */

import type { RecordBatchView } from '../batch/header.ts'
import type { PartitionIndex, SegmentEntry } from '../catalog/manifest.ts'
import type { FrameIndexRow } from '../segment/format.ts'
import { readSegmentBatches, readSegmentIndex } from '../segment/reader.ts'
import { openRangeSource } from '../storage/range-source.ts'
import type { Storage } from '../storage/storage.ts'

export interface ReadPartitionOptions {
  /** Skip everything below this source offset (a checkpoint). */
  fromOffset?: bigint
  /** Keep only segments this accepts (e.g. by their time range). */
  segmentFilter?: (segment: SegmentEntry) => boolean
  frameFilter?: (row: FrameIndexRow) => boolean
  signal?: AbortSignal
}

export async function* readPartitionBatches(
  storage: Storage,
  backupId: string,
  index: PartitionIndex,
  options: ReadPartitionOptions = {}
): AsyncGenerator<RecordBatchView> {
  const fromOffset = options.fromOffset ?? -1n
  for (const segment of index.segments) {
    if (BigInt(segment.lastOffset) < fromOffset || !(options.segmentFilter?.(segment) ?? true)) {
      continue
    }
    const key = `${backupId}/${segment.key}`
    const source = await openRangeSource(storage, key, { size: segment.sizeBytes })
    const segmentIndex = await readSegmentIndex(source, key)
    yield* readSegmentBatches(source, key, {
      index: segmentIndex,
      signal: options.signal,
      frameFilter: row => row.lastOffset >= fromOffset && (options.frameFilter?.(row) ?? true)
    })
  }
}
