/**
 * A zero-copy view over one RecordBatch v2 (magic 2): the 61-byte header read in place from
 * the Buffer Kafka sent. Layout and field rules: docs/architecture.md, "Record batch layout and CRC coverage".
 */
import { crc32c } from './crc.ts'

export const BATCH_HEADER_SIZE = 61
/** baseOffset (8) + batchLength (4): batchLength counts the bytes after these. */
export const BATCH_LOG_OVERHEAD = 12

export const Offset = {
  baseOffset: 0,
  batchLength: 8,
  partitionLeaderEpoch: 12,
  magic: 16,
  crc: 17,
  attributes: 21,
  lastOffsetDelta: 23,
  baseTimestamp: 27,
  maxTimestamp: 35,
  producerId: 43,
  producerEpoch: 51,
  baseSequence: 53,
  recordCount: 57,
  records: 61
} as const

export const Codec = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const
export type CodecId = (typeof Codec)[keyof typeof Codec]

export const Attribute = {
  codecMask: 0x07,
  logAppendTime: 0x08,
  transactional: 0x10,
  control: 0x20,
  deleteHorizon: 0x40
} as const

/** `bytes` holds exactly one batch: BATCH_LOG_OVERHEAD + batchLength bytes. */
export class RecordBatchView {
  readonly bytes: Buffer

  constructor(bytes: Buffer) {
    this.bytes = bytes
  }

  get baseOffset(): bigint {
    return this.bytes.readBigInt64BE(Offset.baseOffset)
  }

  get batchLength(): number {
    return this.bytes.readInt32BE(Offset.batchLength)
  }

  get partitionLeaderEpoch(): number {
    return this.bytes.readInt32BE(Offset.partitionLeaderEpoch)
  }

  get magic(): number {
    return this.bytes.readInt8(Offset.magic)
  }

  get crc(): number {
    return this.bytes.readUInt32BE(Offset.crc)
  }

  get attributes(): number {
    return this.bytes.readInt16BE(Offset.attributes)
  }

  get codec(): CodecId {
    return (this.attributes & Attribute.codecMask) as CodecId
  }

  get isLogAppendTime(): boolean {
    return (this.attributes & Attribute.logAppendTime) !== 0
  }

  get isTransactional(): boolean {
    return (this.attributes & Attribute.transactional) !== 0
  }

  get isControl(): boolean {
    return (this.attributes & Attribute.control) !== 0
  }

  get lastOffsetDelta(): number {
    return this.bytes.readInt32BE(Offset.lastOffsetDelta)
  }

  /** The offset after this batch; fetches resume here even when compaction emptied its tail. */
  get nextOffset(): bigint {
    return this.baseOffset + BigInt(this.lastOffsetDelta) + 1n
  }

  get lastOffset(): bigint {
    return this.baseOffset + BigInt(this.lastOffsetDelta)
  }

  /** The first record's timestamp, or the delete horizon when that attribute bit is set. */
  get baseTimestamp(): bigint {
    return this.bytes.readBigInt64BE(Offset.baseTimestamp)
  }

  get maxTimestamp(): bigint {
    return this.bytes.readBigInt64BE(Offset.maxTimestamp)
  }

  get producerId(): bigint {
    return this.bytes.readBigInt64BE(Offset.producerId)
  }

  get producerEpoch(): number {
    return this.bytes.readInt16BE(Offset.producerEpoch)
  }

  get baseSequence(): number {
    return this.bytes.readInt32BE(Offset.baseSequence)
  }

  get recordCount(): number {
    return this.bytes.readInt32BE(Offset.recordCount)
  }

  /** The records section: one compressed blob when codec != none. */
  get records(): Buffer {
    return this.bytes.subarray(Offset.records)
  }

  computeCrc(): number {
    return crc32c(this.bytes.subarray(Offset.attributes))
  }

  isCrcValid(): boolean {
    return this.computeCrc() === this.crc
  }
}
