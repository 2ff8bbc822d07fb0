/**
 * Reads a backed-up partition back as raw batches, segment by segment, frame by frame, with
 * range reads: frames wholly below `fromOffset`, or that `frameFilter` rejects (a restore
 * window), are never fetched; the next frame is read while the current one is consumed.
 *
 * Nothing is taken on trust from the index: the index was checked when it was read (entries
 * in offset order, each once, filed under its own partition), every segment is opened and
 * checked against its entry before the entry's numbers decide anything (its header must name
 * this partition, its footer must equal the entry), and every frame checksum and every batch's
 * own Kafka CRC is verified before a batch is handed on, so that nothing downstream (which may
 * decode, merge and re-encode batches with a fresh CRC) ever sees bytes that differ from what
 * the backup fetched.
 */

import type { RecordBatchView } from '../batch/header.ts'
import { openIndexedSegment } from '../catalog/audit.ts'
import type { PartitionIndex, SegmentEntry } from '../catalog/manifest.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import type { FrameIndexRow } from '../segment/format.ts'
import { checkSegmentKey, readSegmentBatches } from '../segment/reader.ts'
import type { Storage } from '../storage/storage.ts'

export interface ReadPartitionOptions {
  /** Skip everything below this source offset (a checkpoint). */
  fromOffset?: bigint
  /** Keep only segments this accepts (e.g. by their time range); decided after the check. */
  segmentFilter?: (segment: SegmentEntry) => boolean
  frameFilter?: (row: FrameIndexRow) => boolean
  /** Decrypts encrypted segments; plaintext segments of the same backup need none. */
  keys?: KeyProvider
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
    options.signal?.throwIfAborted()
    const opened = await openIndexedSegment(storage, backupId, index.topic, index.partition, segment)
    if (BigInt(segment.lastOffset) < fromOffset || !(options.segmentFilter?.(segment) ?? true)) {
      continue
    }
    yield* readSegmentBatches(opened.source, opened.index.name, {
      index: opened.index,
      verifyBatchCrc: true,
      keys: options.keys,
      signal: options.signal,
      frameFilter: row => row.lastOffset >= fromOffset && (options.frameFilter?.(row) ?? true)
    })
  }
}

/**
 * Unwraps one data key per key id the segments name, so that a missing or wrong key stops a
 * restore before it writes anything rather than at the first encrypted segment.
 */
export async function checkBackupKeys(
  storage: Storage,
  backupId: string,
  partitions: ReadonlyArray<{ index: PartitionIndex; segments: readonly SegmentEntry[] }>,
  keys: KeyProvider | undefined
): Promise<void> {
  const checked = new Set<string>()
  for (const { index, segments } of partitions) {
    for (const segment of segments) {
      if (segment.keyId === undefined || checked.has(segment.keyId)) {
        continue
      }
      const opened = await openIndexedSegment(storage, backupId, index.topic, index.partition, segment)
      await checkSegmentKey(opened.index, keys)
      checked.add(segment.keyId)
    }
  }
}
