/**
 * The segment file format, versions 1 and 2: constants, the byte layout and the (de)serialisers
 * of its fixed parts. docs/segment-format.md is the reference for readers in other languages;
 * keep the two in step. All integers are big-endian (as in Kafka's own protocol), checksums are CRC-32C.
 *
 *     header    magic(8) version(2) codec(1) level(1) partition(4) createdAtMs(8)
 *               topicLength(2) topic(n, UTF-8) headerCrc(4)                    30 + n bytes
 *               version 2 (encrypted) adds before headerCrc: cipher(1) keyIdLength(1)
 *               keyId(k) wrappedKeyLength(2) wrappedKey(w)                      +4 + k + w
 *     frames    frameCount independently compressed blocks of whole RecordBatches, back to back
 *     footer    summary(88) + frameCount index rows (rowSize, 64 in v1)
 *     trailer   footerOffset(8) footerLength(4) footerCrc(4) version(2) reserved(2)
 *               trailerCrc(4) magic(8)                                          32 bytes
 *
 * The footer is binary and fixed-width rather than JSON: a reader locates row i by arithmetic,
 * validates the whole index with one CRC, and a planner reading thousands of segments pays one
 * small range read and no parser per segment. docs/segment-format.md makes it readable without
 * our code.
 */

import { crc32c } from '../batch/crc.ts'
import { CipherIds, type CipherName, type SegmentEncryptionHeader } from '../crypto/frames.ts'
import { KEY_ID_PATTERN } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'

/**
 * PNG-style signature: the high-bit first byte catches 7-bit transfers, CR LF catches line-ending
 * conversion, and `KBSEG` names the file to a person running `xxd`.
 */
export const SEGMENT_MAGIC = Buffer.from([0x89, 0x4b, 0x42, 0x53, 0x45, 0x47, 0x0d, 0x0a])
export const FORMAT_VERSION = 1
/**
 * Version 2 is version 1 with an encryption block between the topic and the header CRC
 * (docs/encryption.md); only encrypted segments use it, so a reader that predates encryption
 * refuses them as an unknown version instead of misreading them.
 */
export const ENCRYPTED_FORMAT_VERSION = 2

/** Kafka's own codec ids (RecordBatch attributes bits 0-2); snappy (2) is not a segment codec. */
export const SegmentCodecIds = { none: 0, gzip: 1, lz4: 3, zstd: 4 } as const
export type SegmentCodecName = keyof typeof SegmentCodecIds
export type SegmentCodecId = (typeof SegmentCodecIds)[SegmentCodecName]

export function codecName(id: number): SegmentCodecName | undefined {
  for (const [name, value] of Object.entries(SegmentCodecIds)) {
    if (value === id) {
      return name as SegmentCodecName
    }
  }
  return undefined
}

/** Kafka limits topic names to 249 characters from [a-zA-Z0-9._-], so one byte each. */
export const MAX_TOPIC_BYTES = 249
export const HEADER_FIXED_SIZE = 26
export const HEADER_CRC_SIZE = 4
export const MIN_HEADER_SIZE = HEADER_FIXED_SIZE + HEADER_CRC_SIZE
/** Encryption block: cipher(1) keyIdLength(1) keyId(k) wrappedKeyLength(2) wrappedKey(w). */
export const ENCRYPTION_FIXED_SIZE = 4
export const MAX_KEY_ID_BYTES = 64
/** Room for a cloud KMS's ciphertext blob; the keyring's wrapped keys are 60 bytes. */
export const MAX_WRAPPED_KEY_BYTES = 1024
export const MAX_HEADER_SIZE =
  MIN_HEADER_SIZE + MAX_TOPIC_BYTES + ENCRYPTION_FIXED_SIZE + MAX_KEY_ID_BYTES + MAX_WRAPPED_KEY_BYTES

export const HeaderField = {
  magic: 0,
  version: 8,
  codec: 10,
  level: 11,
  partition: 12,
  createdAtMs: 16,
  topicLength: 24,
  topic: 26
} as const

export const FOOTER_SUMMARY_SIZE = 88
export const FooterField = {
  frameCount: 0,
  rowSize: 4,
  codec: 6,
  reserved: 7,
  headerLength: 8,
  headerCrc: 12,
  firstOffset: 16,
  lastOffset: 24,
  nextOffset: 32,
  minTimestamp: 40,
  maxTimestamp: 48,
  recordCount: 56,
  batchCount: 64,
  uncompressedBytes: 72,
  flags: 80,
  reserved2: 84
} as const

export const FRAME_ROW_SIZE = 64
export const RowField = {
  frameOffset: 0,
  storedLength: 8,
  uncompressedLength: 12,
  firstOffset: 16,
  lastOffset: 24,
  minTimestamp: 32,
  maxTimestamp: 40,
  recordCount: 48,
  batchCount: 52,
  checksum: 56,
  flags: 60
} as const

export const TRAILER_SIZE = 32
export const TrailerField = {
  footerOffset: 0,
  footerLength: 8,
  footerCrc: 12,
  version: 16,
  reserved: 18,
  trailerCrc: 20,
  magic: 24
} as const

/** Per frame (and OR-ed into the footer): facts a restore planner needs before reading a frame. */
export const FrameFlag = {
  /** A batch carries a delete horizon in baseTimestamp: its first record time is unknown. */
  deleteHorizon: 0x01,
  /** A batch has no timestamps (-1): it cannot be placed in a time window. */
  noTimestamp: 0x02,
  /** A batch uses LogAppendTime: every record's time is the batch's maxTimestamp. */
  logAppendTime: 0x04,
  /** A control batch (transaction marker) is stored. */
  control: 0x08,
  /** A transactional batch is stored. */
  transactional: 0x10,
  /**
   * Every batch of the frame whose attributes name a codec holds its records decompressed
   * (`backup.store_records: decompressed`), with its batchLength and CRC set for those bytes;
   * a reader compresses them again with that codec before handing the batch on.
   */
  recordsDecompressed: 0x20
} as const

/** No offset / no timestamp, as Kafka writes it. */
export const NONE = -1n

export interface SegmentHeader {
  version: number
  codec: SegmentCodecName
  /** The compression level the writer used; informational. */
  level: number
  topic: string
  partition: number
  createdAtMs: bigint
  /** Set in version 2: how the frames are encrypted. */
  encryption?: SegmentEncryptionHeader
  /** Bytes, including the header CRC: frames start here. */
  length: number
  crc: number
}

export interface FrameIndexRow {
  /** Byte position of the stored (compressed) frame in the segment. */
  frameOffset: number
  storedLength: number
  uncompressedLength: number
  /** baseOffset of the first batch. */
  firstOffset: bigint
  /** lastOffset (baseOffset + lastOffsetDelta) of the last batch. */
  lastOffset: bigint
  /** Least known first-record time of its batches, -1 when none is known (see FrameFlag). */
  minTimestamp: bigint
  /** Greatest maxTimestamp of its batches, -1 when none has one. */
  maxTimestamp: bigint
  recordCount: number
  batchCount: number
  /** CRC-32C of the stored bytes. */
  checksum: number
  flags: number
}

export interface SegmentTotals {
  firstOffset: bigint
  lastOffset: bigint
  /** lastOffset + 1: where the next segment of the partition starts reading. */
  nextOffset: bigint
  minTimestamp: bigint
  maxTimestamp: bigint
  recordCount: number
  batchCount: number
  uncompressedBytes: number
  flags: number
}

export interface SegmentFooter extends SegmentTotals {
  codec: SegmentCodecName
  headerLength: number
  headerCrc: number
  frames: FrameIndexRow[]
}

export interface SegmentTrailer {
  footerOffset: number
  footerLength: number
  footerCrc: number
  version: number
}

/** Where a corruption was found: the segment key and which part of it. */
export function corrupt(
  segment: string,
  part: string,
  frame: number | undefined,
  problem: string,
  expected: unknown,
  found: unknown
): BackupError {
  const where = frame === undefined ? part : `frame ${frame}`
  return new BackupError(
    'KB_SEGMENT_CORRUPT',
    `segment ${segment}: ${where}: ${problem} (expected ${String(expected)}, found ${String(found)})`,
    { segment, part, frame, expected, found }
  )
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

export function encodeHeader(header: Omit<SegmentHeader, 'length' | 'crc' | 'version'>): Buffer {
  const topic = Buffer.from(header.topic, 'utf8')
  if (topic.length === 0 || topic.length > MAX_TOPIC_BYTES) {
    throw new BackupError(
      'KB_INTERNAL',
      `topic name must be 1 to ${MAX_TOPIC_BYTES} bytes, found ${topic.length}: ${header.topic}`,
      { topic: header.topic }
    )
  }
  const encryption = header.encryption === undefined ? undefined : encodeEncryption(header.encryption)
  const bytes = Buffer.alloc(MIN_HEADER_SIZE + topic.length + (encryption?.length ?? 0))
  SEGMENT_MAGIC.copy(bytes, HeaderField.magic)
  bytes.writeUInt16BE(encryption === undefined ? FORMAT_VERSION : ENCRYPTED_FORMAT_VERSION, HeaderField.version)
  bytes.writeUInt8(SegmentCodecIds[header.codec], HeaderField.codec)
  bytes.writeInt8(header.level, HeaderField.level)
  bytes.writeInt32BE(header.partition, HeaderField.partition)
  bytes.writeBigInt64BE(header.createdAtMs, HeaderField.createdAtMs)
  bytes.writeUInt16BE(topic.length, HeaderField.topicLength)
  topic.copy(bytes, HeaderField.topic)
  encryption?.copy(bytes, HeaderField.topic + topic.length)
  const crcAt = bytes.length - HEADER_CRC_SIZE
  bytes.writeUInt32BE(crc32c(bytes.subarray(0, crcAt)), crcAt)
  return bytes
}

function encodeEncryption(encryption: SegmentEncryptionHeader): Buffer {
  const { keyId, wrappedKey } = encryption
  if (!KEY_ID_PATTERN.test(keyId) || wrappedKey.length === 0 || wrappedKey.length > MAX_WRAPPED_KEY_BYTES) {
    throw new BackupError(
      'KB_INTERNAL',
      `a key id must match ${KEY_ID_PATTERN} and a wrapped key be 1 to ${MAX_WRAPPED_KEY_BYTES} bytes, found key id ${keyId} and ${wrappedKey.length} bytes`,
      { keyId }
    )
  }
  const bytes = Buffer.alloc(ENCRYPTION_FIXED_SIZE + keyId.length + wrappedKey.length)
  let at = bytes.writeUInt8(CipherIds[encryption.cipher], 0)
  at = bytes.writeUInt8(keyId.length, at)
  at += bytes.write(keyId, at, 'ascii')
  at = bytes.writeUInt16BE(wrappedKey.length, at)
  wrappedKey.copy(bytes, at)
  return bytes
}

/** The encryption block at `at`, and where the header CRC follows it. */
function decodeEncryption(
  bytes: Buffer,
  at: number,
  segment: string
): { encryption: SegmentEncryptionHeader; end: number } {
  const cutShort = (field: string) =>
    corrupt(segment, 'header', undefined, `encryption block cut short at its ${field}`, 'more bytes', bytes.length)
  if (bytes.length < at + 2) {
    throw cutShort('key id length')
  }
  const cipherId = bytes.readUInt8(at)
  const cipher = (Object.keys(CipherIds) as CipherName[]).find(name => CipherIds[name] === cipherId)
  if (cipher === undefined) {
    throw corrupt(segment, 'header', undefined, 'unknown cipher id', Object.values(CipherIds).join('|'), cipherId)
  }
  const keyIdLength = bytes.readUInt8(at + 1)
  if (bytes.length < at + 2 + keyIdLength + 2) {
    throw cutShort('key id')
  }
  const keyId = bytes.toString('ascii', at + 2, at + 2 + keyIdLength)
  if (!KEY_ID_PATTERN.test(keyId)) {
    throw corrupt(segment, 'header', undefined, 'key id is not 1 to 64 of A-Z a-z 0-9 . _ -', 'a key id', keyIdLength)
  }
  const wrappedAt = at + 2 + keyIdLength + 2
  const wrappedLength = bytes.readUInt16BE(wrappedAt - 2)
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_KEY_BYTES || bytes.length < wrappedAt + wrappedLength) {
    throw corrupt(
      segment,
      'header',
      undefined,
      'wrapped key length out of range or header cut short',
      `1..${MAX_WRAPPED_KEY_BYTES} bytes within ${bytes.length - wrappedAt}`,
      wrappedLength
    )
  }
  return {
    encryption: { cipher, keyId, wrappedKey: Buffer.from(bytes.subarray(wrappedAt, wrappedAt + wrappedLength)) },
    end: wrappedAt + wrappedLength
  }
}

/** `bytes` starts at segment byte 0 and may extend past the header. */
export function decodeHeader(bytes: Buffer, segment: string): SegmentHeader {
  if (bytes.length < MIN_HEADER_SIZE) {
    throw corrupt(segment, 'header', undefined, 'too short for a header', `>= ${MIN_HEADER_SIZE} bytes`, bytes.length)
  }
  const magic = bytes.subarray(HeaderField.magic, HeaderField.magic + SEGMENT_MAGIC.length)
  if (!magic.equals(SEGMENT_MAGIC)) {
    throw corrupt(
      segment,
      'header',
      undefined,
      'not a kafka-backup segment: wrong magic',
      hex(SEGMENT_MAGIC),
      hex(magic)
    )
  }
  const version = bytes.readUInt16BE(HeaderField.version)
  if (version !== FORMAT_VERSION && version !== ENCRYPTED_FORMAT_VERSION) {
    throw corrupt(
      segment,
      'header',
      undefined,
      'unsupported format version',
      `${FORMAT_VERSION} or ${ENCRYPTED_FORMAT_VERSION}`,
      version
    )
  }
  const topicLength = bytes.readUInt16BE(HeaderField.topicLength)
  if (topicLength === 0 || topicLength > MAX_TOPIC_BYTES || bytes.length < MIN_HEADER_SIZE + topicLength) {
    throw corrupt(
      segment,
      'header',
      undefined,
      'topic length out of range or header cut short',
      `1..${MAX_TOPIC_BYTES} topic bytes within ${bytes.length} bytes`,
      topicLength
    )
  }
  const { encryption, end: crcAt } =
    version === ENCRYPTED_FORMAT_VERSION
      ? decodeEncryption(bytes, HEADER_FIXED_SIZE + topicLength, segment)
      : { encryption: undefined, end: HEADER_FIXED_SIZE + topicLength }
  if (bytes.length < crcAt + HEADER_CRC_SIZE) {
    throw corrupt(
      segment,
      'header',
      undefined,
      'header cut short before its CRC',
      crcAt + HEADER_CRC_SIZE,
      bytes.length
    )
  }
  const length = crcAt + HEADER_CRC_SIZE
  const crc = bytes.readUInt32BE(crcAt)
  const computed = crc32c(bytes.subarray(0, crcAt))
  if (crc !== computed) {
    throw corrupt(segment, 'header', undefined, 'header checksum mismatch', crc, computed)
  }
  const codecId = bytes.readUInt8(HeaderField.codec)
  const codec = codecName(codecId)
  if (codec === undefined) {
    throw new BackupError('KB_UNSUPPORTED_CODEC', `segment ${segment}: unknown frame codec id ${codecId}`, {
      segment,
      part: 'header',
      expected: Object.values(SegmentCodecIds).join('|'),
      found: codecId
    })
  }
  return {
    version,
    codec,
    level: bytes.readInt8(HeaderField.level),
    partition: bytes.readInt32BE(HeaderField.partition),
    createdAtMs: bytes.readBigInt64BE(HeaderField.createdAtMs),
    topic: bytes.toString('utf8', HeaderField.topic, HeaderField.topic + topicLength),
    ...(encryption === undefined ? {} : { encryption }),
    length,
    crc
  }
}

export function encodeFooter(footer: SegmentFooter): Buffer {
  const bytes = Buffer.alloc(FOOTER_SUMMARY_SIZE + footer.frames.length * FRAME_ROW_SIZE)
  bytes.writeUInt32BE(footer.frames.length, FooterField.frameCount)
  bytes.writeUInt16BE(FRAME_ROW_SIZE, FooterField.rowSize)
  bytes.writeUInt8(SegmentCodecIds[footer.codec], FooterField.codec)
  bytes.writeUInt32BE(footer.headerLength, FooterField.headerLength)
  bytes.writeUInt32BE(footer.headerCrc, FooterField.headerCrc)
  bytes.writeBigInt64BE(footer.firstOffset, FooterField.firstOffset)
  bytes.writeBigInt64BE(footer.lastOffset, FooterField.lastOffset)
  bytes.writeBigInt64BE(footer.nextOffset, FooterField.nextOffset)
  bytes.writeBigInt64BE(footer.minTimestamp, FooterField.minTimestamp)
  bytes.writeBigInt64BE(footer.maxTimestamp, FooterField.maxTimestamp)
  bytes.writeBigInt64BE(BigInt(footer.recordCount), FooterField.recordCount)
  bytes.writeBigInt64BE(BigInt(footer.batchCount), FooterField.batchCount)
  bytes.writeBigInt64BE(BigInt(footer.uncompressedBytes), FooterField.uncompressedBytes)
  bytes.writeUInt32BE(footer.flags, FooterField.flags)
  let at = FOOTER_SUMMARY_SIZE
  for (const row of footer.frames) {
    bytes.writeBigInt64BE(BigInt(row.frameOffset), at + RowField.frameOffset)
    bytes.writeUInt32BE(row.storedLength, at + RowField.storedLength)
    bytes.writeUInt32BE(row.uncompressedLength, at + RowField.uncompressedLength)
    bytes.writeBigInt64BE(row.firstOffset, at + RowField.firstOffset)
    bytes.writeBigInt64BE(row.lastOffset, at + RowField.lastOffset)
    bytes.writeBigInt64BE(row.minTimestamp, at + RowField.minTimestamp)
    bytes.writeBigInt64BE(row.maxTimestamp, at + RowField.maxTimestamp)
    bytes.writeUInt32BE(row.recordCount, at + RowField.recordCount)
    bytes.writeUInt32BE(row.batchCount, at + RowField.batchCount)
    bytes.writeUInt32BE(row.checksum, at + RowField.checksum)
    bytes.writeUInt32BE(row.flags, at + RowField.flags)
    at += FRAME_ROW_SIZE
  }
  return bytes
}

function safeNumber(value: bigint, segment: string, part: string, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(segment, part, undefined, `${field} out of range`, `0..2^53`, value)
  }
  return Number(value)
}

/**
 * Decodes a footer whose CRC the caller has verified, and checks that it is self-consistent:
 * frames contiguous from the header to the footer, offsets increasing, totals equal to the sums
 * of the rows. `footerOffset` is where the footer starts in the segment.
 */
export function decodeFooter(bytes: Buffer, segment: string, footerOffset: number): SegmentFooter {
  if (bytes.length < FOOTER_SUMMARY_SIZE) {
    throw corrupt(segment, 'footer', undefined, 'too short', `>= ${FOOTER_SUMMARY_SIZE} bytes`, bytes.length)
  }
  const frameCount = bytes.readUInt32BE(FooterField.frameCount)
  const rowSize = bytes.readUInt16BE(FooterField.rowSize)
  if (rowSize < FRAME_ROW_SIZE) {
    throw corrupt(segment, 'footer', undefined, 'index row size too small', `>= ${FRAME_ROW_SIZE}`, rowSize)
  }
  const expectedLength = FOOTER_SUMMARY_SIZE + frameCount * rowSize
  if (bytes.length !== expectedLength) {
    throw corrupt(
      segment,
      'footer',
      undefined,
      `length disagrees with ${frameCount} rows`,
      expectedLength,
      bytes.length
    )
  }
  const codecId = bytes.readUInt8(FooterField.codec)
  const codec = codecName(codecId)
  if (codec === undefined) {
    throw new BackupError('KB_UNSUPPORTED_CODEC', `segment ${segment}: unknown frame codec id ${codecId}`, {
      segment,
      part: 'footer',
      expected: Object.values(SegmentCodecIds).join('|'),
      found: codecId
    })
  }
  const footer: SegmentFooter = {
    codec,
    headerLength: bytes.readUInt32BE(FooterField.headerLength),
    headerCrc: bytes.readUInt32BE(FooterField.headerCrc),
    firstOffset: bytes.readBigInt64BE(FooterField.firstOffset),
    lastOffset: bytes.readBigInt64BE(FooterField.lastOffset),
    nextOffset: bytes.readBigInt64BE(FooterField.nextOffset),
    minTimestamp: bytes.readBigInt64BE(FooterField.minTimestamp),
    maxTimestamp: bytes.readBigInt64BE(FooterField.maxTimestamp),
    recordCount: safeNumber(bytes.readBigInt64BE(FooterField.recordCount), segment, 'footer', 'recordCount'),
    batchCount: safeNumber(bytes.readBigInt64BE(FooterField.batchCount), segment, 'footer', 'batchCount'),
    uncompressedBytes: safeNumber(
      bytes.readBigInt64BE(FooterField.uncompressedBytes),
      segment,
      'footer',
      'uncompressedBytes'
    ),
    flags: bytes.readUInt32BE(FooterField.flags),
    frames: new Array(frameCount)
  }
  if (footer.headerLength < MIN_HEADER_SIZE || footer.headerLength > MAX_HEADER_SIZE) {
    throw corrupt(
      segment,
      'footer',
      undefined,
      'header length out of range',
      `${MIN_HEADER_SIZE}..${MAX_HEADER_SIZE}`,
      footer.headerLength
    )
  }

  let expectedFrameOffset = footer.headerLength
  let previousLastOffset = NONE
  for (let i = 0; i < frameCount; i++) {
    const at = FOOTER_SUMMARY_SIZE + i * rowSize
    const row: FrameIndexRow = {
      frameOffset: safeNumber(bytes.readBigInt64BE(at + RowField.frameOffset), segment, `frame ${i}`, 'frameOffset'),
      storedLength: bytes.readUInt32BE(at + RowField.storedLength),
      uncompressedLength: bytes.readUInt32BE(at + RowField.uncompressedLength),
      firstOffset: bytes.readBigInt64BE(at + RowField.firstOffset),
      lastOffset: bytes.readBigInt64BE(at + RowField.lastOffset),
      minTimestamp: bytes.readBigInt64BE(at + RowField.minTimestamp),
      maxTimestamp: bytes.readBigInt64BE(at + RowField.maxTimestamp),
      recordCount: bytes.readUInt32BE(at + RowField.recordCount),
      batchCount: bytes.readUInt32BE(at + RowField.batchCount),
      checksum: bytes.readUInt32BE(at + RowField.checksum),
      flags: bytes.readUInt32BE(at + RowField.flags)
    }
    if (row.frameOffset !== expectedFrameOffset) {
      throw corrupt(
        segment,
        'footer',
        i,
        'index row byte range is not contiguous',
        expectedFrameOffset,
        row.frameOffset
      )
    }
    if (row.storedLength === 0 || row.batchCount === 0) {
      throw corrupt(
        segment,
        'footer',
        i,
        'index row describes an empty frame',
        '> 0 bytes and batches',
        `${row.storedLength} bytes, ${row.batchCount} batches`
      )
    }
    if (row.firstOffset < 0n || row.lastOffset < row.firstOffset || row.firstOffset <= previousLastOffset) {
      throw corrupt(
        segment,
        'footer',
        i,
        'index row offsets are not increasing',
        `${previousLastOffset} < firstOffset <= lastOffset`,
        `${row.firstOffset}..${row.lastOffset}`
      )
    }
    previousLastOffset = row.lastOffset
    expectedFrameOffset += row.storedLength
    footer.frames[i] = row
  }
  if (expectedFrameOffset !== footerOffset) {
    throw corrupt(
      segment,
      'footer',
      undefined,
      'frames do not end where the footer starts',
      footerOffset,
      expectedFrameOffset
    )
  }
  const totals = totalsOf(footer.frames)
  const check = (field: keyof SegmentTotals, found: bigint | number) => {
    if (totals[field] !== found) {
      throw corrupt(segment, 'footer', undefined, `${field} disagrees with the index rows`, totals[field], found)
    }
  }
  check('firstOffset', footer.firstOffset)
  check('lastOffset', footer.lastOffset)
  check('nextOffset', footer.nextOffset)
  check('minTimestamp', footer.minTimestamp)
  check('maxTimestamp', footer.maxTimestamp)
  check('recordCount', footer.recordCount)
  check('batchCount', footer.batchCount)
  check('uncompressedBytes', footer.uncompressedBytes)
  check('flags', footer.flags)
  return footer
}

/** The segment totals implied by its index rows. */
export function totalsOf(frames: readonly FrameIndexRow[]): SegmentTotals {
  const totals: SegmentTotals = {
    firstOffset: NONE,
    lastOffset: NONE,
    nextOffset: NONE,
    minTimestamp: NONE,
    maxTimestamp: NONE,
    recordCount: 0,
    batchCount: 0,
    uncompressedBytes: 0,
    flags: 0
  }
  for (const row of frames) {
    if (totals.firstOffset === NONE) {
      totals.firstOffset = row.firstOffset
    }
    totals.lastOffset = row.lastOffset
    totals.nextOffset = row.lastOffset + 1n
    if (row.minTimestamp !== NONE && (totals.minTimestamp === NONE || row.minTimestamp < totals.minTimestamp)) {
      totals.minTimestamp = row.minTimestamp
    }
    if (row.maxTimestamp > totals.maxTimestamp) {
      totals.maxTimestamp = row.maxTimestamp
    }
    totals.recordCount += row.recordCount
    totals.batchCount += row.batchCount
    totals.uncompressedBytes += row.uncompressedLength
    totals.flags |= row.flags
  }
  return totals
}

/** `version` is the header's: 2 when the segment is encrypted. */
export function encodeTrailer(trailer: SegmentTrailer): Buffer {
  const bytes = Buffer.alloc(TRAILER_SIZE)
  bytes.writeBigInt64BE(BigInt(trailer.footerOffset), TrailerField.footerOffset)
  bytes.writeUInt32BE(trailer.footerLength, TrailerField.footerLength)
  bytes.writeUInt32BE(trailer.footerCrc, TrailerField.footerCrc)
  bytes.writeUInt16BE(trailer.version, TrailerField.version)
  bytes.writeUInt32BE(crc32c(bytes.subarray(0, TrailerField.trailerCrc)), TrailerField.trailerCrc)
  SEGMENT_MAGIC.copy(bytes, TrailerField.magic)
  return bytes
}

/** `bytes` is the last TRAILER_SIZE bytes of a segment of `segmentSize` bytes. */
export function decodeTrailer(bytes: Buffer, segment: string, segmentSize: number): SegmentTrailer {
  if (bytes.length !== TRAILER_SIZE) {
    throw corrupt(segment, 'trailer', undefined, 'too short', TRAILER_SIZE, bytes.length)
  }
  const magic = bytes.subarray(TrailerField.magic, TrailerField.magic + SEGMENT_MAGIC.length)
  if (!magic.equals(SEGMENT_MAGIC)) {
    throw corrupt(
      segment,
      'trailer',
      undefined,
      'wrong trailer magic (truncated or not a segment)',
      hex(SEGMENT_MAGIC),
      hex(magic)
    )
  }
  const version = bytes.readUInt16BE(TrailerField.version)
  if (version !== FORMAT_VERSION && version !== ENCRYPTED_FORMAT_VERSION) {
    throw corrupt(
      segment,
      'trailer',
      undefined,
      'unsupported format version',
      `${FORMAT_VERSION} or ${ENCRYPTED_FORMAT_VERSION}`,
      version
    )
  }
  const trailerCrc = bytes.readUInt32BE(TrailerField.trailerCrc)
  const computed = crc32c(bytes.subarray(0, TrailerField.trailerCrc))
  if (trailerCrc !== computed) {
    throw corrupt(segment, 'trailer', undefined, 'trailer checksum mismatch', trailerCrc, computed)
  }
  const footerOffset = bytes.readBigInt64BE(TrailerField.footerOffset)
  const footerLength = bytes.readUInt32BE(TrailerField.footerLength)
  const expectedEnd = BigInt(segmentSize - TRAILER_SIZE)
  if (footerOffset < BigInt(MIN_HEADER_SIZE) || footerOffset + BigInt(footerLength) !== expectedEnd) {
    throw corrupt(
      segment,
      'trailer',
      undefined,
      'footer location does not end at the trailer',
      `footer ending at ${expectedEnd}`,
      `offset ${footerOffset} length ${footerLength}`
    )
  }
  return {
    footerOffset: Number(footerOffset),
    footerLength,
    footerCrc: bytes.readUInt32BE(TrailerField.footerCrc),
    version
  }
}
