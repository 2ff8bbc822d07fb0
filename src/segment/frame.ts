/**
 * What the writer records about a frame's batches and what the reader checks against it. Both
 * sides use the same accumulator, so a frame read back agrees with its index row by
 * construction, and any disagreement is corruption.
 */
import { Attribute, BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, Offset, RecordBatchView } from '../batch/header.ts'
import { corrupt, FrameFlag, type FrameIndexRow, NONE } from './format.ts'

export class FrameStats {
  firstOffset = NONE
  lastOffset = NONE
  minTimestamp = NONE
  maxTimestamp = NONE
  recordCount = 0
  batchCount = 0
  flags = 0

  reset(): void {
    this.firstOffset = NONE
    this.lastOffset = NONE
    this.minTimestamp = NONE
    this.maxTimestamp = NONE
    this.recordCount = 0
    this.batchCount = 0
    this.flags = 0
  }

  add(batch: RecordBatchView): void {
    const attributes = batch.attributes
    const maxTimestamp = batch.maxTimestamp
    let firstTimestamp: bigint
    if ((attributes & Attribute.deleteHorizon) !== 0) {
      // baseTimestamp holds the cleaner's delete horizon, not a record time (docs/architecture.md, "Record batch layout and CRC coverage").
      this.flags |= FrameFlag.deleteHorizon
      firstTimestamp = NONE
    } else if ((attributes & Attribute.logAppendTime) !== 0) {
      // Consumers see maxTimestamp (the broker's append time) as every record's time.
      this.flags |= FrameFlag.logAppendTime
      firstTimestamp = maxTimestamp
    } else {
      firstTimestamp = batch.baseTimestamp
    }
    if (firstTimestamp < 0n || maxTimestamp < 0n) {
      this.flags |= FrameFlag.noTimestamp
    }
    if (firstTimestamp >= 0n && (this.minTimestamp === NONE || firstTimestamp < this.minTimestamp)) {
      this.minTimestamp = firstTimestamp
    }
    if (maxTimestamp > this.maxTimestamp) {
      this.maxTimestamp = maxTimestamp
    }
    if ((attributes & Attribute.control) !== 0) {
      this.flags |= FrameFlag.control
    }
    if ((attributes & Attribute.transactional) !== 0) {
      this.flags |= FrameFlag.transactional
    }
    if (this.batchCount === 0) {
      this.firstOffset = batch.baseOffset
    }
    this.lastOffset = batch.lastOffset
    this.recordCount += batch.recordCount
    this.batchCount++
  }
}

export interface DecodeFrameOptions {
  /** Verify every batch's Kafka CRC-32C as well (the frame checksum already covers the bytes). */
  verifyBatchCrc?: boolean
}

/**
 * Splits a decompressed frame into its batches and checks them against the frame's index row:
 * whole batches only, magic 2, offsets increasing, and first/last offset, counts, timestamps and
 * flags equal to the row. The views share `frame`'s memory.
 */
export function splitFrame(
  frame: Buffer,
  row: FrameIndexRow,
  segment: string,
  frameIndex: number,
  options: DecodeFrameOptions = {}
): RecordBatchView[] {
  const batches: RecordBatchView[] = []
  const stats = new FrameStats()
  let position = 0
  while (position < frame.length) {
    const remaining = frame.length - position
    if (remaining < BATCH_HEADER_SIZE) {
      throw corrupt(
        segment,
        'frame',
        frameIndex,
        `batch ${batches.length} at byte ${position} is cut short`,
        `>= ${BATCH_HEADER_SIZE} bytes`,
        remaining
      )
    }
    const batchLength = frame.readInt32BE(position + Offset.batchLength)
    const size = BATCH_LOG_OVERHEAD + batchLength
    if (batchLength < BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD || size > remaining) {
      throw corrupt(
        segment,
        'frame',
        frameIndex,
        `batch ${batches.length} at byte ${position} has an impossible batchLength`,
        `${BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD}..${remaining - BATCH_LOG_OVERHEAD}`,
        batchLength
      )
    }
    const batch = new RecordBatchView(frame.subarray(position, position + size))
    if (batch.magic !== 2) {
      throw corrupt(
        segment,
        'frame',
        frameIndex,
        `batch ${batches.length} at byte ${position} has a wrong magic`,
        2,
        batch.magic
      )
    }
    if (stats.batchCount > 0 && batch.baseOffset <= stats.lastOffset) {
      throw corrupt(
        segment,
        'frame',
        frameIndex,
        `batch ${batches.length} offsets go backwards`,
        `> ${stats.lastOffset}`,
        batch.baseOffset
      )
    }
    if (options.verifyBatchCrc) {
      const computed = batch.computeCrc()
      if (computed !== batch.crc) {
        throw corrupt(
          segment,
          'frame',
          frameIndex,
          `batch ${batches.length} (base offset ${batch.baseOffset}) fails its Kafka CRC-32C`,
          batch.crc,
          computed
        )
      }
    }
    stats.add(batch)
    batches.push(batch)
    position += size
  }
  const check = (field: keyof FrameStats & keyof FrameIndexRow) => {
    if (stats[field] !== row[field]) {
      throw corrupt(
        segment,
        'frame',
        frameIndex,
        `${field} of its batches disagrees with the index row`,
        row[field],
        stats[field]
      )
    }
  }
  check('batchCount')
  check('recordCount')
  check('firstOffset')
  check('lastOffset')
  check('minTimestamp')
  check('maxTimestamp')
  check('flags')
  return batches
}
