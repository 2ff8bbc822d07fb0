/**
 * Splitting a raw record set (the `records` bytes of one Fetch partition) into RecordBatch
 * views without copying. This is the hot path of backup: per batch it reads a few header
 * fields, makes one `subarray` and one view object, and (when asked) runs the native CRC32C.
 * A record set may end with a truncated batch (docs/architecture.md, "Fetch responses"): that is reported as
 * `truncatedBytes`, never thrown, so the caller refetches from the last whole batch.
 */
import { BackupError } from '../errors.ts'
import { crc32c } from './crc.ts'
import { BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, Offset, RecordBatchView } from './header.ts'

/** The smallest legal batchLength: a v2 header without records (61 - 12). */
export const MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD
export const CURRENT_MAGIC = 2

export interface SplitOptions {
  /** Check each batch's CRC32C (default true). The native CRC runs at several GB/s. */
  verifyCrc?: boolean
}

export interface SplitResult {
  batches: RecordBatchView[]
  /** Bytes of a truncated trailing batch left unread (0 when the set ends on a batch edge). */
  truncatedBytes: number
}

/**
 * Reads the batches of one record set in order, one `next()` at a time, so that a caller can
 * hand each batch on without building an array. After `next()` returns null, `truncatedBytes`
 * says how many trailing bytes did not form a whole batch.
 */
export class RecordSetReader {
  readonly records: Buffer
  readonly verifyCrc: boolean
  /** Byte position of the next batch in `records`. */
  position = 0

  constructor(records: Buffer, options: SplitOptions = {}) {
    this.records = records
    this.verifyCrc = options.verifyCrc ?? true
  }

  get truncatedBytes(): number {
    return this.records.length - this.position
  }

  next(): RecordBatchView | null {
    const records = this.records
    const position = this.position
    const remaining = records.length - position
    if (remaining < BATCH_LOG_OVERHEAD) {
      return null
    }
    const batchLength = records.readInt32BE(position + Offset.batchLength)
    // The magic byte is checked before the length, so that a legacy (v0/v1) message, whose
    // minimum size is smaller, is named for what it is.
    if (remaining > Offset.magic) {
      const magic = records[position + Offset.magic]!
      if (magic !== CURRENT_MAGIC) {
        throw corrupt(
          records,
          position,
          'magic',
          CURRENT_MAGIC,
          magic,
          magic < 2 ? ' (legacy message format v0/v1)' : ''
        )
      }
    }
    if (batchLength < MIN_BATCH_LENGTH) {
      throw corrupt(records, position, 'batchLength', `>= ${MIN_BATCH_LENGTH}`, batchLength)
    }
    const size = BATCH_LOG_OVERHEAD + batchLength
    if (remaining < size) {
      return null
    }
    const end = position + size
    const lastOffsetDelta = records.readInt32BE(position + Offset.lastOffsetDelta)
    if (lastOffsetDelta < 0) {
      throw corrupt(records, position, 'lastOffsetDelta', '>= 0', lastOffsetDelta)
    }
    const recordCount = records.readInt32BE(position + Offset.recordCount)
    // Compaction can leave fewer records than offsets (holes), never more.
    if (recordCount < 0 || recordCount > lastOffsetDelta + 1) {
      throw corrupt(records, position, 'recordCount', `0..${lastOffsetDelta + 1} (lastOffsetDelta + 1)`, recordCount)
    }
    if (this.verifyCrc) {
      const expected = records.readUInt32BE(position + Offset.crc)
      const found = crc32c(records.subarray(position + Offset.attributes, end))
      if (expected !== found) {
        throw corrupt(records, position, 'crc', hex(expected), hex(found), ' (CRC-32C of bytes 21..end)')
      }
    }
    this.position = end
    return new RecordBatchView(records.subarray(position, end))
  }

  *[Symbol.iterator](): Iterator<RecordBatchView> {
    for (let batch = this.next(); batch !== null; batch = this.next()) {
      yield batch
    }
  }
}

export function splitRecordSet(records: Buffer, options?: SplitOptions): SplitResult {
  const reader = new RecordSetReader(records, options)
  const batches: RecordBatchView[] = []
  for (let batch = reader.next(); batch !== null; batch = reader.next()) {
    batches.push(batch)
  }
  return { batches, truncatedBytes: reader.truncatedBytes }
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`
}

function corrupt(
  records: Buffer,
  position: number,
  field: string,
  expected: unknown,
  found: unknown,
  detail = ''
): BackupError {
  const baseOffset = records.length - position >= 8 ? records.readBigInt64BE(position + Offset.baseOffset) : undefined
  const at = baseOffset === undefined ? `position ${position}` : `position ${position} (baseOffset ${baseOffset})`
  return new BackupError(
    'KB_BATCH_CORRUPT',
    `record batch at ${at}: ${field} expected ${expected}, found ${found}${detail}`,
    { position, baseOffset, field, expected, found }
  )
}
