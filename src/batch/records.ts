/**
 * Decoding and encoding the records inside a RecordBatch v2, for every codec. This is the rare
 * path (window edges, holes, coalescing): backup never calls it, restore only for the batches
 * it must rebuild. Every length and varint is checked against the end of its buffer, so that a
 * malformed batch ends in KB_BATCH_CORRUPT, never a RangeError or a silent misread.
 * Record layout: docs/architecture.md, "Record batch layout and CRC coverage".
 *
 * Header keys are kept as bytes: Kafka's Java client writes them as UTF-8 strings, but other
 * clients may write any bytes, and a restore must give them back byte for byte. Encoding takes
 * a string or bytes.
 */
import { createRequire } from 'node:module'
import { gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import type Lz4 from 'lz4-napi'
import type Snappy from 'snappy'
import { BackupError } from '../errors.ts'
import { crc32c } from './crc.ts'
import {
  Attribute,
  BATCH_HEADER_SIZE,
  BATCH_LOG_OVERHEAD,
  Codec,
  type CodecId,
  Offset,
  RecordBatchView
} from './header.ts'

// Each loads a native library (~11 ms of start-up for both, docs/benchmarks.md "Start-up"):
// loaded by the first batch that needs it (many runs need neither).
const loadPackage = createRequire(import.meta.url)
let lz4Module: typeof Lz4 | undefined
let snappyModule: typeof Snappy | undefined
const lz4 = () => (lz4Module ??= loadPackage('lz4-napi') as typeof Lz4)
const snappy = () => (snappyModule ??= loadPackage('snappy') as typeof Snappy)

export type RecordHeader = [key: Buffer, value: Buffer | null]

/** One record as stored: deltas are relative to its batch's baseOffset and baseTimestamp. */
export interface KafkaRecord {
  /** Unused by Kafka so far; kept so that a rebuild writes back what it read. */
  attributes: number
  timestampDelta: bigint
  offsetDelta: number
  /** Views into the batch (or into its decompressed records) where possible. */
  key: Buffer | null
  value: Buffer | null
  headers: RecordHeader[]
}

export interface RecordInput {
  attributes?: number
  timestampDelta: bigint
  offsetDelta: number
  key: Uint8Array | null
  value: Uint8Array | null
  headers?: ReadonlyArray<readonly [key: string | Uint8Array, value: Uint8Array | null]>
}

export const ControlRecordType = { abort: 0, commit: 1 } as const

// The xerial snappy-java stream header the Java producer writes (SnappyOutputStream): magic,
// then int32 version 1 and int32 minimum compatible version 1; chunks follow as int32 length +
// raw snappy block.
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00])
const XERIAL_HEADER_SIZE = 16
/** snappy-java's default block size, which Kafka's SnappyFactory uses. */
const XERIAL_BLOCK_SIZE = 32 * 1024

// ---------------------------------------------------------------------------------------------
// Compression

function codecName(codec: number): string {
  return (Object.keys(Codec) as Array<keyof typeof Codec>).find(name => Codec[name] === codec) ?? `#${codec}`
}

function unsupportedCodec(codec: number, baseOffset?: bigint): BackupError {
  const where = baseOffset === undefined ? '' : ` in batch at baseOffset ${baseOffset}`
  return new BackupError(
    'KB_UNSUPPORTED_CODEC',
    `compression codec (attributes bits 0-2)${where}: expected 0..4 (none, gzip, snappy, lz4, zstd), found ${codec}`,
    {
      baseOffset,
      field: 'attributes',
      expected: '0..4',
      found: codec
    }
  )
}

function decompressSnappy(data: Buffer): Buffer {
  if (data.length < XERIAL_HEADER_SIZE || !data.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC)) {
    return snappy().uncompressSync(data) as Buffer
  }
  const chunks: Buffer[] = []
  let position = XERIAL_HEADER_SIZE
  while (position < data.length) {
    if (position + 4 > data.length) {
      throw new Error(`xerial snappy chunk length at ${position} is cut off`)
    }
    const chunkLength = data.readUInt32BE(position)
    position += 4
    if (position + chunkLength > data.length) {
      throw new Error(
        `xerial snappy chunk at ${position} claims ${chunkLength} bytes, ${data.length - position} remain`
      )
    }
    chunks.push(snappy().uncompressSync(data.subarray(position, position + chunkLength)) as Buffer)
    position += chunkLength
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

function compressSnappyXerial(data: Buffer): Buffer {
  const header = Buffer.alloc(XERIAL_HEADER_SIZE)
  XERIAL_MAGIC.copy(header)
  header.writeInt32BE(1, 8)
  header.writeInt32BE(1, 12)
  const parts: Buffer[] = [header]
  for (let start = 0; start < data.length; start += XERIAL_BLOCK_SIZE) {
    const block = snappy().compressSync(data.subarray(start, start + XERIAL_BLOCK_SIZE))
    const length = Buffer.allocUnsafe(4)
    length.writeUInt32BE(block.length)
    parts.push(length, block)
  }
  return Buffer.concat(parts)
}

/** Decompresses a batch's records section. The caller names the batch in errors. */
export function decompressRecords(codec: number, data: Buffer, baseOffset?: bigint): Buffer {
  try {
    switch (codec) {
      case Codec.none:
        return data
      case Codec.gzip:
        return gunzipSync(data)
      case Codec.snappy:
        return decompressSnappy(data)
      case Codec.lz4:
        // Kafka's lz4 is the LZ4 frame format; lz4-napi is native (lz4_flex).
        return lz4().decompressFrameSync(data)
      case Codec.zstd:
        return zstdDecompressSync(data)
    }
  } catch (error) {
    throw undecompressable(codec, data, baseOffset, error)
  }
  throw unsupportedCodec(codec, baseOffset)
}

function undecompressable(codec: number, data: Buffer, baseOffset: bigint | undefined, error: unknown): BackupError {
  const where = baseOffset === undefined ? '' : ` of batch at baseOffset ${baseOffset}`
  return new BackupError(
    'KB_BATCH_CORRUPT',
    `the ${codecName(codec)} records${where} do not decompress: ${(error as Error).message}`,
    {
      cause: error,
      baseOffset,
      field: 'records',
      expected: `${codecName(codec)} data`,
      found: `${data.length} bytes`
    }
  )
}

/**
 * Compresses a records section the way Kafka's Java producer does: gzip (level 6), snappy in
 * xerial framing, lz4 frame with independent blocks (Kafka's reader refuses linked blocks),
 * zstd (level 3).
 */
export function compressRecords(codec: number, data: Buffer): Buffer {
  switch (codec) {
    case Codec.none:
      return data
    case Codec.gzip:
      return gzipSync(data)
    case Codec.snappy:
      return compressSnappyXerial(data)
    case Codec.lz4:
      return lz4().compressFrameSync(data)
    case Codec.zstd:
      return zstdCompressSync(data)
  }
  throw unsupportedCodec(codec)
}

/**
 * compressRecords and decompressRecords for a restore that compresses stored records again:
 * lz4 (Kafka's most common codec) runs on the libuv pool, so that the batches of a frame
 * compress on every core while the event loop produces (an lz4 topic's restore kept one core
 * busy and the other half idle, docs/benchmarks.md "Data path, round 2"); the other codecs
 * run here as before.
 */
export function compressRecordsOffThread(codec: number, data: Buffer): Promise<Buffer> {
  return codec === Codec.lz4 ? lz4().compressFrame(data) : Promise.resolve().then(() => compressRecords(codec, data))
}

export function decompressRecordsOffThread(codec: number, data: Buffer, baseOffset?: bigint): Promise<Buffer> {
  return codec === Codec.lz4
    ? lz4()
        .decompressFrame(data)
        .catch((error: unknown) => {
          throw undecompressable(codec, data, baseOffset, error)
        })
    : Promise.resolve().then(() => decompressRecords(codec, data, baseOffset))
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** A bounds-checked reader over one records section; `end` is exclusive. */
class RecordReader {
  readonly data: Buffer
  readonly baseOffset: bigint
  position = 0
  end: number
  recordIndex = 0

  constructor(data: Buffer, baseOffset: bigint) {
    this.data = data
    this.baseOffset = baseOffset
    this.end = data.length
  }

  corrupt(field: string, expected: unknown, found: unknown): BackupError {
    const position = this.position
    return new BackupError(
      'KB_BATCH_CORRUPT',
      `record ${this.recordIndex} of batch at baseOffset ${this.baseOffset}, records byte ${position}: ${field} expected ${expected}, found ${found}`,
      { baseOffset: this.baseOffset, recordIndex: this.recordIndex, position, field, expected, found }
    )
  }

  readInt8(field: string): number {
    if (this.position >= this.end) {
      throw this.corrupt(field, '1 byte', 'end of record')
    }
    return this.data.readInt8(this.position++)
  }

  readVarint(field: string): number {
    const data = this.data
    let value = 0
    for (let i = 0; i < 5; i++) {
      if (this.position >= this.end) {
        throw this.corrupt(field, 'a varint', 'end of record')
      }
      const byte = data[this.position++]!
      value |= (byte & 0x7f) << (7 * i)
      if ((byte & 0x80) === 0) {
        return (value >>> 1) ^ -(value & 1)
      }
    }
    throw this.corrupt(field, 'a varint of at most 5 bytes', 'a longer one')
  }

  readVarlong(field: string): bigint {
    const data = this.data
    // Up to 7 bytes (49 bits) fit a double exactly; longer ones take the bigint path.
    let value = 0
    let multiplier = 1
    for (let i = 0; i < 7; i++) {
      if (this.position >= this.end) {
        throw this.corrupt(field, 'a varlong', 'end of record')
      }
      const byte = data[this.position++]!
      value += (byte & 0x7f) * multiplier
      if ((byte & 0x80) === 0) {
        return BigInt(value % 2 === 0 ? value / 2 : -(value + 1) / 2)
      }
      multiplier *= 128
    }
    let unsigned = BigInt(value)
    for (let i = 7; i < 10; i++) {
      if (this.position >= this.end) {
        throw this.corrupt(field, 'a varlong', 'end of record')
      }
      const byte = data[this.position++]!
      unsigned |= BigInt(byte & 0x7f) << BigInt(7 * i)
      if ((byte & 0x80) === 0) {
        unsigned = BigInt.asUintN(64, unsigned)
        return BigInt.asIntN(64, (unsigned >> 1n) ^ -(unsigned & 1n))
      }
    }
    throw this.corrupt(field, 'a varlong of at most 10 bytes', 'a longer one')
  }

  /** Length-prefixed bytes; -1 is null. A view, not a copy. */
  readNullableBytes(field: string): Buffer | null {
    const length = this.readVarint(`${field} length`)
    if (length === -1) {
      return null
    }
    if (length < 0) {
      throw this.corrupt(`${field} length`, '>= -1', length)
    }
    if (length > this.end - this.position) {
      throw this.corrupt(`${field} length`, `<= ${this.end - this.position} (bytes left in the record)`, length)
    }
    const bytes = this.data.subarray(this.position, this.position + length)
    this.position += length
    return bytes
  }

  readRecord(): KafkaRecord {
    const sectionEnd = this.data.length
    const length = this.readVarint('record length')
    if (length < 0 || length > sectionEnd - this.position) {
      throw this.corrupt('record length', `0..${sectionEnd - this.position} (bytes left in the batch)`, length)
    }
    this.end = this.position + length
    const attributes = this.readInt8('record attributes')
    const timestampDelta = this.readVarlong('timestampDelta')
    const offsetDelta = this.readVarint('offsetDelta')
    const key = this.readNullableBytes('key')
    const value = this.readNullableBytes('value')
    const headerCount = this.readVarint('header count')
    // Each header takes at least 2 bytes, which bounds the count before anything is allocated.
    if (headerCount < 0 || headerCount * 2 > this.end - this.position) {
      throw this.corrupt('header count', `0..${(this.end - this.position) >> 1}`, headerCount)
    }
    const headers: RecordHeader[] = new Array(headerCount)
    for (let i = 0; i < headerCount; i++) {
      const headerKey = this.readNullableBytes('header key')
      if (headerKey === null) {
        throw this.corrupt('header key length', '>= 0', -1)
      }
      headers[i] = [headerKey, this.readNullableBytes('header value')]
    }
    if (this.position !== this.end) {
      throw this.corrupt('record length', `${length - (this.end - this.position)} (bytes the fields use)`, length)
    }
    this.end = sectionEnd
    this.recordIndex++
    return { attributes, timestampDelta, offsetDelta, key, value, headers }
  }
}

/** The records section of a batch, decompressed when its codec says so. */
export function uncompressedRecords(batch: RecordBatchView): Buffer {
  return decompressRecords(batch.codec, batch.records, batch.baseOffset)
}

export function decodeRecords(batch: RecordBatchView): KafkaRecord[] {
  const records: KafkaRecord[] = []
  for (const record of iterateRecords(batch)) {
    records.push(record)
  }
  return records
}

export function* iterateRecords(batch: RecordBatchView): Generator<KafkaRecord> {
  const recordCount = batch.recordCount
  const lastOffsetDelta = batch.lastOffsetDelta
  const reader = new RecordReader(uncompressedRecords(batch), batch.baseOffset)
  // Two bytes per record is less than any record can take: a cheap bound before the loop.
  if (recordCount < 0 || recordCount > reader.data.length) {
    throw reader.corrupt('recordCount', `0..${reader.data.length}`, recordCount)
  }
  let previousOffsetDelta = -1
  for (let i = 0; i < recordCount; i++) {
    if (reader.position >= reader.data.length) {
      throw reader.corrupt('records', `${recordCount} records (recordCount)`, `${i} records before the end`)
    }
    const record = reader.readRecord()
    if (record.offsetDelta <= previousOffsetDelta || record.offsetDelta > lastOffsetDelta) {
      reader.recordIndex--
      throw reader.corrupt('offsetDelta', `${previousOffsetDelta + 1}..${lastOffsetDelta}`, record.offsetDelta)
    }
    previousOffsetDelta = record.offsetDelta
    yield record
  }
  if (reader.position !== reader.data.length) {
    throw reader.corrupt(
      'records',
      `${recordCount} records ending the batch`,
      `${reader.data.length - reader.position} bytes more`
    )
  }
}

export function recordOffset(batch: RecordBatchView, record: KafkaRecord): bigint {
  return batch.baseOffset + BigInt(record.offsetDelta)
}

/**
 * The timestamp a consumer sees: the batch's maxTimestamp for LogAppendTime batches, else
 * baseTimestamp + timestampDelta (also when baseTimestamp holds the delete horizon: the
 * cleaner rebases the deltas when it sets it).
 */
export function recordTimestamp(batch: RecordBatchView, record: KafkaRecord): bigint {
  return batch.isLogAppendTime ? batch.maxTimestamp : batch.baseTimestamp + record.timestampDelta
}

/**
 * The type of a control batch's marker (ControlRecordType: 0 abort, 1 commit, others for
 * KRaft's own records): int16 version, int16 type in the first record's key.
 */
export function controlRecordType(batch: RecordBatchView): number {
  for (const record of iterateRecords(batch)) {
    if (record.key === null || record.key.length < 4) {
      throw new BackupError(
        'KB_BATCH_CORRUPT',
        `control batch at baseOffset ${batch.baseOffset}: control record key expected >= 4 bytes, found ${record.key?.length ?? 'null'}`,
        {
          baseOffset: batch.baseOffset,
          field: 'control record key',
          expected: '>= 4 bytes',
          found: record.key?.length ?? null
        }
      )
    }
    return record.key.readInt16BE(2)
  }
  throw new BackupError('KB_BATCH_CORRUPT', `control batch at baseOffset ${batch.baseOffset} has no record`, {
    baseOffset: batch.baseOffset,
    field: 'recordCount',
    expected: '>= 1',
    found: 0
  })
}

// ---------------------------------------------------------------------------------------------
// Encoding

function sizeOfUnsignedVarint(value: number): number {
  let size = 1
  while (value >= 0x80) {
    value = Math.floor(value / 128)
    size++
  }
  return size
}

function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0
}

const SAFE_ZIGZAG = 2n ** 52n

function zigzag64(value: bigint): number | bigint {
  if (value > -SAFE_ZIGZAG && value < SAFE_ZIGZAG) {
    const n = Number(value)
    return n >= 0 ? n * 2 : -n * 2 - 1
  }
  return BigInt.asUintN(64, (value << 1n) ^ (value >> 63n))
}

function sizeOfZigzag64(zigzag: number | bigint): number {
  if (typeof zigzag === 'number') {
    return sizeOfUnsignedVarint(zigzag)
  }
  let size = 1
  while (zigzag >= 0x80n) {
    zigzag >>= 7n
    size++
  }
  return size
}

function sizeOfNullableBytes(bytes: Uint8Array | null): number {
  return bytes === null ? 1 : sizeOfUnsignedVarint(zigzag32(bytes.length)) + bytes.length
}

class RecordWriter {
  readonly buffer: Buffer
  position = 0

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size)
  }

  writeUnsigned(value: number | bigint): void {
    const buffer = this.buffer
    if (typeof value === 'number') {
      while (value >= 0x80) {
        buffer[this.position++] = (value & 0x7f) | 0x80
        value = Math.floor(value / 128)
      }
      buffer[this.position++] = value
      return
    }
    while (value >= 0x80n) {
      buffer[this.position++] = Number(value & 0x7fn) | 0x80
      value >>= 7n
    }
    buffer[this.position++] = Number(value)
  }

  writeBytes(bytes: Uint8Array): void {
    this.buffer.set(bytes, this.position)
    this.position += bytes.length
  }

  writeNullableBytes(bytes: Uint8Array | null): void {
    if (bytes === null) {
      this.buffer[this.position++] = 1 // zigzag(-1)
      return
    }
    this.writeUnsigned(zigzag32(bytes.length))
    this.writeBytes(bytes)
  }
}

interface PreparedRecord {
  record: RecordInput
  timestampZigzag: number | bigint
  headerKeys: Uint8Array[]
  bodySize: number
}

function invalidInput(message: string, context: Record<string, unknown>): BackupError {
  return new BackupError('KB_INTERNAL', message, context)
}

/** Encodes records into an uncompressed records section (no batch header). */
export function encodeRecords(records: readonly RecordInput[]): Buffer {
  const prepared: PreparedRecord[] = new Array(records.length)
  let total = 0
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    if (!Number.isInteger(record.offsetDelta) || record.offsetDelta < 0 || record.offsetDelta > 0x7fffffff) {
      throw invalidInput(`record ${i}: offsetDelta must be an int32 >= 0, found ${record.offsetDelta}`, {
        field: 'offsetDelta',
        found: record.offsetDelta
      })
    }
    const timestampZigzag = zigzag64(record.timestampDelta)
    const headers = record.headers ?? []
    const headerKeys = headers.map(([key]) => (typeof key === 'string' ? Buffer.from(key, 'utf8') : key))
    let bodySize =
      1 +
      sizeOfZigzag64(timestampZigzag) +
      sizeOfUnsignedVarint(zigzag32(record.offsetDelta)) +
      sizeOfNullableBytes(record.key) +
      sizeOfNullableBytes(record.value) +
      sizeOfUnsignedVarint(zigzag32(headers.length))
    for (let h = 0; h < headers.length; h++) {
      bodySize += sizeOfNullableBytes(headerKeys[h]!) + sizeOfNullableBytes(headers[h]![1])
    }
    total += sizeOfUnsignedVarint(zigzag32(bodySize)) + bodySize
    prepared[i] = { record, timestampZigzag, headerKeys, bodySize }
  }
  const writer = new RecordWriter(total)
  for (const { record, timestampZigzag, headerKeys, bodySize } of prepared) {
    writer.writeUnsigned(zigzag32(bodySize))
    writer.buffer[writer.position++] = (record.attributes ?? 0) & 0xff
    writer.writeUnsigned(timestampZigzag)
    writer.writeUnsigned(zigzag32(record.offsetDelta))
    writer.writeNullableBytes(record.key)
    writer.writeNullableBytes(record.value)
    const headers = record.headers ?? []
    writer.writeUnsigned(zigzag32(headers.length))
    for (let h = 0; h < headers.length; h++) {
      writer.writeNullableBytes(headerKeys[h]!)
      writer.writeNullableBytes(headers[h]![1])
    }
  }
  return writer.buffer
}

export interface BatchFields {
  /** Default 0: what the broker requires of a produced batch. */
  baseOffset?: bigint
  /** Default -1: the broker stamps its own. */
  partitionLeaderEpoch?: number
  /** The non-codec attribute bits (LogAppendTime, transactional, control, delete horizon). */
  attributes?: number
  codec?: CodecId
  baseTimestamp: bigint
  /** Default: the largest record timestamp, or -1 without records. */
  maxTimestamp?: bigint
  /** Default: the last record's offsetDelta (0 without records). */
  lastOffsetDelta?: number
  /** Default -1/-1/-1: no idempotent producer. */
  producerId?: bigint
  producerEpoch?: number
  baseSequence?: number
}

/** Builds a complete batch (header, records compressed with `codec`, CRC). */
export function encodeBatch(fields: BatchFields, records: readonly RecordInput[]): Buffer {
  const codec = fields.codec ?? Codec.none
  let previousOffsetDelta = -1
  let maxTimestampDelta: bigint | undefined
  for (const [i, record] of records.entries()) {
    if (record.offsetDelta <= previousOffsetDelta) {
      throw invalidInput(`record ${i}: offsetDelta ${record.offsetDelta} does not increase on ${previousOffsetDelta}`, {
        field: 'offsetDelta',
        expected: `> ${previousOffsetDelta}`,
        found: record.offsetDelta
      })
    }
    previousOffsetDelta = record.offsetDelta
    if (maxTimestampDelta === undefined || record.timestampDelta > maxTimestampDelta) {
      maxTimestampDelta = record.timestampDelta
    }
  }
  const lastOffsetDelta = fields.lastOffsetDelta ?? Math.max(previousOffsetDelta, 0)
  if (lastOffsetDelta < previousOffsetDelta) {
    throw invalidInput(
      `lastOffsetDelta ${lastOffsetDelta} is below the last record's offsetDelta ${previousOffsetDelta}`,
      {
        field: 'lastOffsetDelta',
        expected: `>= ${previousOffsetDelta}`,
        found: lastOffsetDelta
      }
    )
  }
  const maxTimestamp =
    fields.maxTimestamp ?? (maxTimestampDelta === undefined ? -1n : fields.baseTimestamp + maxTimestampDelta)
  if (BigInt.asIntN(64, maxTimestamp) !== maxTimestamp) {
    throw invalidInput(`maxTimestamp ${maxTimestamp} does not fit an int64`, {
      field: 'maxTimestamp',
      found: maxTimestamp
    })
  }
  const body = compressRecords(codec, encodeRecords(records))
  const batch = Buffer.allocUnsafe(BATCH_HEADER_SIZE + body.length)
  batch.writeBigInt64BE(fields.baseOffset ?? 0n, Offset.baseOffset)
  batch.writeInt32BE(BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD + body.length, Offset.batchLength)
  batch.writeInt32BE(fields.partitionLeaderEpoch ?? -1, Offset.partitionLeaderEpoch)
  batch.writeInt8(2, Offset.magic)
  batch.writeInt16BE(((fields.attributes ?? 0) & ~Attribute.codecMask & 0x7fff) | codec, Offset.attributes)
  batch.writeInt32BE(lastOffsetDelta, Offset.lastOffsetDelta)
  batch.writeBigInt64BE(fields.baseTimestamp, Offset.baseTimestamp)
  batch.writeBigInt64BE(maxTimestamp, Offset.maxTimestamp)
  batch.writeBigInt64BE(fields.producerId ?? -1n, Offset.producerId)
  batch.writeInt16BE(fields.producerEpoch ?? -1, Offset.producerEpoch)
  batch.writeInt32BE(fields.baseSequence ?? -1, Offset.baseSequence)
  batch.writeInt32BE(records.length, Offset.recordCount)
  body.copy(batch, Offset.records)
  batch.writeUInt32BE(crc32c(batch.subarray(Offset.attributes)), Offset.crc)
  return batch
}

/** `encodeBatch` wrapped in a view. */
export function buildBatch(fields: BatchFields, records: readonly RecordInput[]): RecordBatchView {
  return new RecordBatchView(encodeBatch(fields, records))
}
