/**
 * A partition's records summed up so that two copies can be compared without holding either:
 * count, offset and time ranges, and a SHA-256 of the record contents (docs/verification-report.md).
 *
 * The digest covers, per record in offset order: timestamp (int64 big-endian), key and value
 * (int32 length, -1 for null, then the bytes), header count (int32) and each header's key and
 * value the same way. Offsets are left out on purpose: a restore writes the same records at
 * other offsets, and the digest of a backed-up range must equal the digest of its restored copy.
 */
import { createHash, type Hash } from 'node:crypto'
import type { RecordHeader } from '../batch/records.ts'

export interface RecordSummary {
  records: number
  /** null when there are no records. */
  firstOffset: string | null
  lastOffset: string | null
  minTimestamp: string | null
  maxTimestamp: string | null
  sha256: string
}

export class RecordDigest {
  #hash: Hash = createHash('sha256')
  #records = 0
  #firstOffset: bigint | undefined
  #lastOffset: bigint | undefined
  #minTimestamp: bigint | undefined
  #maxTimestamp: bigint | undefined
  readonly #scratch = Buffer.alloc(8)

  add(offset: bigint, timestamp: bigint, key: Buffer | null, value: Buffer | null, headers: RecordHeader[]): void {
    this.#records++
    this.#firstOffset ??= offset
    this.#lastOffset = offset
    if (this.#minTimestamp === undefined || timestamp < this.#minTimestamp) this.#minTimestamp = timestamp
    if (this.#maxTimestamp === undefined || timestamp > this.#maxTimestamp) this.#maxTimestamp = timestamp
    this.#scratch.writeBigInt64BE(timestamp)
    this.#hash.update(this.#scratch)
    this.#bytes(key)
    this.#bytes(value)
    this.#int32(headers.length)
    for (const [headerKey, headerValue] of headers) {
      this.#bytes(headerKey)
      this.#bytes(headerValue)
    }
  }

  #int32(value: number): void {
    this.#scratch.writeInt32BE(value)
    this.#hash.update(this.#scratch.subarray(0, 4))
  }

  #bytes(bytes: Buffer | null): void {
    this.#int32(bytes === null ? -1 : bytes.length)
    if (bytes !== null) {
      this.#hash.update(bytes)
    }
  }

  summary(): RecordSummary {
    return {
      records: this.#records,
      firstOffset: this.#firstOffset?.toString() ?? null,
      lastOffset: this.#lastOffset?.toString() ?? null,
      minTimestamp: this.#minTimestamp?.toString() ?? null,
      maxTimestamp: this.#maxTimestamp?.toString() ?? null,
      sha256: this.#hash.digest('hex')
    }
  }
}

/** The fields on which two summaries must agree; offsets only when both sides keep them. */
export function summaryDifferences(a: RecordSummary, b: RecordSummary, compareOffsets: boolean): string[] {
  const fields: Array<keyof RecordSummary> = ['records', 'minTimestamp', 'maxTimestamp', 'sha256']
  if (compareOffsets) {
    fields.splice(1, 0, 'firstOffset', 'lastOffset')
  }
  return fields.filter(field => a[field] !== b[field])
}
