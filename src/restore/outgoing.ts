/**
 * Turns backed-up batches into batches the target broker accepts, with the source offsets
 * each of their records came from. A batch passes with its record bytes untouched unless it
 * must be rebuilt: it straddles the time window, has compaction holes (the broker requires
 * offset deltas 0..n-1), starts below a resume point, carries LogAppendTime (the target would
 * otherwise show the producer's create times; we keep the append time consumers saw) or a
 * delete horizon from the source cluster. Producer fields and the CRC are set later, when the
 * sender assigns sequences (batch/rewrite.ts).
 */
import { Attribute, type RecordBatchView, RecordBatchView as View } from '../batch/header.ts'
import { decodeRecords, encodeBatch, type KafkaRecord } from '../batch/records.ts'
import { coalesce, hasOffsetHoles } from '../batch/rewrite.ts'
import { inWindow, matchBatch, type TimeWindow } from './window.ts'

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

/** Re-encodes the chosen records contiguously, each with the timestamp its consumer saw. */
function rebuild(batch: RecordBatchView, records: Array<{ record: KafkaRecord; offset: bigint; timestamp: bigint }>) {
  const baseTimestamp = records[0]!.timestamp
  const encoded = encodeBatch(
    {
      codec: batch.codec,
      baseTimestamp,
      producerId: batch.producerId,
      producerEpoch: batch.producerEpoch,
      baseSequence: batch.baseSequence
    },
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

/**
 * The outgoing batch for one backed-up batch, or undefined when none of its records is to be
 * restored. `fromOffset` drops records below a resume point.
 */
export function toOutgoing(batch: RecordBatchView, window: TimeWindow, fromOffset: bigint): OutgoingBatch | undefined {
  const sourceNextAfter = batch.nextOffset
  if (batch.isControl || batch.recordCount === 0 || batch.lastOffset < fromOffset) {
    return undefined
  }
  const match = matchBatch(batch, window)
  if (match === 'none') {
    return undefined
  }
  if (match === 'all' && batch.baseOffset >= fromOffset && !needsRebuild(batch)) {
    return {
      batch,
      runs: [{ sourceOffset: batch.baseOffset, targetDelta: 0, count: batch.recordCount }],
      sourceNextAfter
    }
  }
  const kept = []
  for (const record of decodeRecords(batch)) {
    const offset = batch.baseOffset + BigInt(record.offsetDelta)
    const timestamp = batch.isLogAppendTime ? batch.maxTimestamp : batch.baseTimestamp + record.timestampDelta
    if (offset >= fromOffset && (match === 'all' || inWindow(window, timestamp))) {
      kept.push({ record, offset, timestamp })
    }
  }
  if (kept.length === 0) {
    return undefined
  }
  return { ...rebuild(batch, kept), sourceNextAfter }
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
  return { ...rebuild(outgoing.batch, rest), sourceNextAfter: outgoing.sourceNextAfter }
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
    sourceNextAfter: batches.at(-1)!.sourceNextAfter
  }
}
