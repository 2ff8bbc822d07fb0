/**
 * Turns backed-up batches into batches the target broker accepts, with the source offsets
 * each of their records came from. A batch passes with its record bytes untouched unless it
 * must be rebuilt: it straddles the time window, has compaction holes (the broker requires
 * offset deltas 0..n-1), starts below a resume point, carries LogAppendTime (the target would
 * otherwise show the producer's create times; we keep the append time consumers saw) or a
 * delete horizon from the source cluster, or holds a record whose key `restore.erase` names
 * (erase.ts: every batch is scanned for such keys, only those holding one are rebuilt). Producer
 * fields and the CRC are set later, when the sender assigns sequences (batch/rewrite.ts).
 */
import { Attribute, type CodecId, type RecordBatchView, RecordBatchView as View } from '../batch/header.ts'
import { decodeRecords, encodeBatch, iterateRecords, type KafkaRecord } from '../batch/records.ts'
import { coalesce, hasOffsetHoles } from '../batch/rewrite.ts'
import type { KeyEraser } from './erase.ts'
import { inWindow, matchBatch, type TimeWindow, type WindowMatch } from './window.ts'

/** Source offsets `sourceOffset .. +count-1` become target offsets `base + targetDelta ..`. */
export interface OutgoingRun {
  sourceOffset: bigint
  targetDelta: number
  count: number
}

export interface OutgoingBatch {
  /** Contiguous (offset deltas 0..n-1), recordCount >= 1, not control. */
  batch: RecordBatchView
  runs: OutgoingRun[]
  /** The source position once this batch is restored. */
  sourceNextAfter: bigint
  /**
   * Records left out because `restore.erase` names their key, counted with this batch: those
   * of its own source batch, and of earlier source batches that had nothing else to restore.
   */
  erased: number
  /** Re-partitioned only: the source partition the records came from (whose progress they move). */
  sourcePartition?: number
}

/** A record chosen for the target, with the source offset and the timestamp its consumer saw. */
export interface SelectedRecord {
  record: KafkaRecord
  offset: bigint
  timestamp: bigint
}

function runsOf(sourceOffsets: readonly bigint[]): OutgoingRun[] {
  const runs: OutgoingRun[] = []
  for (const [i, sourceOffset] of sourceOffsets.entries()) {
    const last = runs.at(-1)
    if (last && last.sourceOffset + BigInt(last.count) === sourceOffset) {
      last.count++
    } else {
      runs.push({ sourceOffset, targetDelta: i, count: 1 })
    }
  }
  return runs
}

/**
 * Re-encodes the chosen records contiguously in `codec`, each with the timestamp its consumer
 * saw, as a CreateTime batch without producer (the sender stamps its own).
 */
export function rebuildRecords(codec: CodecId, records: readonly SelectedRecord[]) {
  const baseTimestamp = records[0]!.timestamp
  const encoded = encodeBatch(
    { codec, baseTimestamp },
    records.map(({ record, timestamp }, i) => ({
      attributes: record.attributes,
      timestampDelta: timestamp - baseTimestamp,
      offsetDelta: i,
      key: record.key,
      value: record.value,
      headers: record.headers
    }))
  )
  return { batch: new View(encoded), runs: runsOf(records.map(r => r.offset)) }
}

function rebuild(batch: RecordBatchView, records: readonly SelectedRecord[]) {
  return rebuildRecords(batch.codec, records)
}

function needsRebuild(batch: RecordBatchView): boolean {
  return hasOffsetHoles(batch) || (batch.attributes & (Attribute.logAppendTime | Attribute.deleteHorizon)) !== 0
}

/**
 * The lowest source offset of `batch` to restore: the resume point, or the end of a gap the
 * batch overlaps. A gap's records may still be in the backup: when DeleteRecords moved the log
 * start into a batch, the backup kept that batch whole (it never rebuilds batches), and the
 * gap in the index is what says that its records below the new log start were deleted.
 */
export function restoreFloor(
  batch: RecordBatchView,
  fromOffset: bigint,
  gaps: ReadonlyArray<{ fromOffset: string; toOffset: string }>
): bigint {
  let floor = fromOffset
  for (const gap of gaps) {
    const gapEnd = BigInt(gap.toOffset)
    if (gapEnd > floor && batch.baseOffset < gapEnd && batch.lastOffset >= BigInt(gap.fromOffset)) {
      floor = gapEnd
    }
  }
  return floor
}

/** Whether `eraser` names the key of any record of `batch`. */
function holdsErasedKey(batch: RecordBatchView, eraser: KeyEraser | undefined): boolean {
  if (!eraser) {
    return false
  }
  for (const record of iterateRecords(batch)) {
    if (eraser.matches(record.key)) {
      return true
    }
  }
  return false
}

/**
 * The records of `batch` a restore writes: at or above `fromOffset`, inside the window, and not
 * erased; `erased` counts those left out only because of their key. Control and empty batches
 * hold none.
 */
export function selectRecords(
  batch: RecordBatchView,
  window: TimeWindow,
  fromOffset: bigint,
  eraser?: KeyEraser
): { kept: SelectedRecord[]; erased: number; match: WindowMatch } {
  if (batch.isControl || batch.recordCount === 0 || batch.lastOffset < fromOffset) {
    return { kept: [], erased: 0, match: 'none' }
  }
  const match = matchBatch(batch, window)
  if (match === 'none') {
    return { kept: [], erased: 0, match }
  }
  const kept: SelectedRecord[] = []
  let erased = 0
  for (const record of decodeRecords(batch)) {
    const offset = batch.baseOffset + BigInt(record.offsetDelta)
    const timestamp = batch.isLogAppendTime ? batch.maxTimestamp : batch.baseTimestamp + record.timestampDelta
    if (offset < fromOffset || (match === 'some' && !inWindow(window, timestamp))) {
      continue
    }
    if (eraser?.matches(record.key)) {
      erased++
    } else {
      kept.push({ record, offset, timestamp })
    }
  }
  return { kept, erased, match }
}

/**
 * The outgoing batch for one backed-up batch, or undefined when none of its records is to be
 * restored. `fromOffset` drops records below a resume point. Records erased from a batch that
 * has nothing else to restore are added to `pending.erased`; the caller counts them with the
 * next outgoing batch (or when the partition is done), so that a rerun counts them once.
 */
export function toOutgoing(
  batch: RecordBatchView,
  window: TimeWindow,
  fromOffset: bigint,
  eraser?: KeyEraser,
  pending?: { erased: number }
): OutgoingBatch | undefined {
  const sourceNextAfter = batch.nextOffset
  if (batch.isControl || batch.recordCount === 0 || batch.lastOffset < fromOffset) {
    return undefined
  }
  if (
    batch.baseOffset >= fromOffset &&
    !needsRebuild(batch) &&
    matchBatch(batch, window) === 'all' &&
    !holdsErasedKey(batch, eraser)
  ) {
    return {
      batch,
      runs: [{ sourceOffset: batch.baseOffset, targetDelta: 0, count: batch.recordCount }],
      sourceNextAfter,
      erased: 0
    }
  }
  const { kept, erased } = selectRecords(batch, window, fromOffset, eraser)
  if (kept.length === 0) {
    if (pending) {
      pending.erased += erased
    }
    return undefined
  }
  return { ...rebuild(batch, kept), sourceNextAfter, erased }
}

/** Splits off the first `count` records (already in the target) and returns the rest, if any. */
export function dropLeadingRecords(outgoing: OutgoingBatch, count: number): OutgoingBatch | undefined {
  const records = decodeRecords(outgoing.batch)
  if (count >= records.length) {
    return undefined
  }
  const offsets: bigint[] = []
  for (const run of outgoing.runs) {
    for (let i = 0; i < run.count; i++) {
      offsets.push(run.sourceOffset + BigInt(i))
    }
  }
  const baseTimestamp = outgoing.batch.baseTimestamp
  const rest = records.slice(count).map((record, i) => ({
    record,
    offset: offsets[count + i]!,
    timestamp: baseTimestamp + record.timestampDelta
  }))
  return { ...rebuild(outgoing.batch, rest), sourceNextAfter: outgoing.sourceNextAfter, erased: outgoing.erased }
}

/** The runs of the first `count` records (for mapping records found already in the target). */
export function leadingRuns(outgoing: OutgoingBatch, count: number): OutgoingRun[] {
  const runs: OutgoingRun[] = []
  let remaining = count
  for (const run of outgoing.runs) {
    if (remaining <= 0) {
      break
    }
    const take = Math.min(run.count, remaining)
    runs.push({ ...run, count: take })
    remaining -= take
  }
  return runs
}

/** One batch from several consecutive ones (decoded and re-encoded); a single one passes as it is. */
export function mergeOutgoing(batches: readonly OutgoingBatch[]): OutgoingBatch {
  if (batches.length === 1) {
    return batches[0]!
  }
  const runs: OutgoingRun[] = []
  let delta = 0
  for (const outgoing of batches) {
    for (const run of outgoing.runs) {
      const last = runs.at(-1)
      const targetDelta = delta + run.targetDelta
      if (
        last &&
        last.sourceOffset + BigInt(last.count) === run.sourceOffset &&
        last.targetDelta + last.count === targetDelta
      ) {
        last.count += run.count
      } else {
        runs.push({ ...run, targetDelta })
      }
    }
    delta += outgoing.batch.recordCount
  }
  return {
    batch: coalesce(batches.map(b => b.batch)),
    runs,
    sourceNextAfter: batches.at(-1)!.sourceNextAfter,
    erased: batches.reduce((sum, b) => sum + b.erased, 0)
  }
}
