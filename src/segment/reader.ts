/**
 * Reads segments through range reads: the index (trailer + footer, and the header beside it) in
 * one or two requests issued together, any frame with one more, the whole segment frame by frame
 * with the next frame prefetched. Every byte is checked before it is returned: nothing here
 * yields a batch from a frame whose checksum failed, and malformed input gives
 * KB_SEGMENT_CORRUPT naming the segment and the frame, never a RangeError.
 */
import { crc32c } from '../batch/crc.ts'
import { Codec, type RecordBatchView } from '../batch/header.ts'
import { FrameCipher, wrapContext } from '../crypto/frames.ts'
import { type KeyProvider, keyNotFound } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { frameCodec } from './codecs.ts'
import {
  corrupt,
  decodeFooter,
  decodeHeader,
  decodeTrailer,
  FOOTER_SUMMARY_SIZE,
  FrameFlag,
  type FrameIndexRow,
  MAX_HEADER_SIZE,
  MIN_HEADER_SIZE,
  type SegmentFooter,
  type SegmentHeader,
  type SegmentTrailer,
  TRAILER_SIZE
} from './format.ts'
import { type DecodeFrameOptions, splitFrame } from './frame.ts'

/** Random access to a stored segment; storage backends adapt `getRange` to it. */
export interface RangeSource {
  readonly size: number
  /** Exactly `length` bytes from `offset`. */
  read(offset: number, length: number): Promise<Buffer>
}

export function bufferSource(bytes: Buffer): RangeSource {
  return {
    size: bytes.length,
    async read(offset, length) {
      return bytes.subarray(offset, offset + length)
    }
  }
}

export interface SegmentIndex {
  name: string
  size: number
  header: SegmentHeader
  footer: SegmentFooter
  trailer: SegmentTrailer
}

export interface ReadIndexOptions {
  /** Bytes read from the end in the first request; a footer of up to ~1000 frames fits in 64 KiB. */
  tailBytes?: number
}

const SMALLEST_SEGMENT = MIN_HEADER_SIZE + FOOTER_SUMMARY_SIZE + TRAILER_SIZE

async function readExactly(
  source: RangeSource,
  segment: string,
  offset: number,
  length: number,
  part: string,
  frame?: number
): Promise<Buffer> {
  const bytes = await source.read(offset, length)
  if (bytes.length !== length) {
    throw corrupt(segment, part, frame, `short read at byte ${offset}`, `${length} bytes`, bytes.length)
  }
  return bytes
}

/** Header, footer and trailer, validated against each other; no frame is read. */
export async function readSegmentIndex(
  source: RangeSource,
  name: string,
  options: ReadIndexOptions = {}
): Promise<SegmentIndex> {
  const size = source.size
  if (size < SMALLEST_SEGMENT) {
    throw corrupt(name, 'segment', undefined, 'too short to be a segment', `>= ${SMALLEST_SEGMENT} bytes`, size)
  }
  const tailLength = Math.min(size, Math.max(options.tailBytes ?? 64 * 1024, TRAILER_SIZE))
  let head: Buffer
  let tail: Buffer
  if (tailLength === size) {
    tail = await readExactly(source, name, 0, size, 'segment')
    head = tail
  } else {
    ;[head, tail] = await Promise.all([
      readExactly(source, name, 0, Math.min(size, MAX_HEADER_SIZE), 'header'),
      readExactly(source, name, size - tailLength, tailLength, 'trailer')
    ])
  }
  const trailer = decodeTrailer(tail.subarray(tailLength - TRAILER_SIZE), name, size)
  const footerBytes =
    trailer.footerLength + TRAILER_SIZE <= tailLength
      ? tail.subarray(tailLength - TRAILER_SIZE - trailer.footerLength, tailLength - TRAILER_SIZE)
      : await readExactly(source, name, trailer.footerOffset, trailer.footerLength, 'footer')
  const footerCrc = crc32c(footerBytes)
  if (footerCrc !== trailer.footerCrc) {
    throw corrupt(name, 'footer', undefined, 'footer checksum mismatch', trailer.footerCrc, footerCrc)
  }
  const footer = decodeFooter(footerBytes, name, trailer.footerOffset)
  const header = decodeHeader(head, name)
  if (header.version !== trailer.version) {
    throw corrupt(name, 'trailer', undefined, 'format version differs from the header', header.version, trailer.version)
  }
  if (header.length !== footer.headerLength || header.crc !== footer.headerCrc || header.codec !== footer.codec) {
    throw corrupt(
      name,
      'header',
      undefined,
      'header disagrees with the footer',
      `length ${footer.headerLength}, crc ${footer.headerCrc}, codec ${footer.codec}`,
      `length ${header.length}, crc ${header.crc}, codec ${header.codec}`
    )
  }
  return { name, size, header, footer, trailer }
}

function frameRow(index: SegmentIndex, frame: number): FrameIndexRow {
  const row = index.footer.frames[frame]
  if (row === undefined) {
    throw new BackupError(
      'KB_INTERNAL',
      `segment ${index.name} has ${index.footer.frames.length} frames, frame ${frame} was asked for`,
      { segment: index.name, frame, expected: `0..${index.footer.frames.length - 1}`, found: frame }
    )
  }
  return row
}

/** The stored bytes of one frame, checksum verified, still compressed. */
export async function readStoredFrame(source: RangeSource, index: SegmentIndex, frame: number): Promise<Buffer> {
  const row = frameRow(index, frame)
  const stored = await readExactly(source, index.name, row.frameOffset, row.storedLength, 'frame', frame)
  const checksum = crc32c(stored)
  if (checksum !== row.checksum) {
    throw corrupt(index.name, 'frame', frame, 'checksum mismatch', row.checksum, checksum)
  }
  return stored
}

export interface FrameReadOptions extends DecodeFrameOptions {
  /** Unwraps the data keys of encrypted segments; without it their frames cannot be read. */
  keys?: KeyProvider
}

const ciphers = new WeakMap<SegmentIndex, Promise<FrameCipher>>()

/** The segment's frame cipher, its data key unwrapped once per opened index. */
function segmentCipher(index: SegmentIndex, keys: KeyProvider | undefined): Promise<FrameCipher> {
  let cipher = ciphers.get(index)
  if (cipher === undefined) {
    cipher = unwrapSegmentKey(index, keys)
    ciphers.set(index, cipher)
  }
  return cipher
}

async function unwrapSegmentKey(index: SegmentIndex, keys: KeyProvider | undefined): Promise<FrameCipher> {
  const { topic, partition, encryption } = index.header
  if (encryption === undefined) {
    throw new BackupError('KB_INTERNAL', `segment ${index.name} is not encrypted`, { segment: index.name })
  }
  const where = `segment ${index.name}`
  if (keys === undefined) {
    throw keyNotFound(encryption.keyId, where, undefined)
  }
  const context = wrapContext(topic, partition, encryption.keyId)
  const dataKey = await keys.unwrap(encryption.keyId, encryption.wrappedKey, context, where)
  return new FrameCipher(dataKey, topic, partition, encryption.keyId)
}

/**
 * Checks that `keys` unwraps the segment's data key (nothing to do for a plaintext segment):
 * a restore calls it before it writes anything, so a missing or wrong key stops it cleanly.
 */
export async function checkSegmentKey(index: SegmentIndex, keys: KeyProvider | undefined): Promise<void> {
  if (index.header.encryption !== undefined) {
    await segmentCipher(index, keys)
  }
}

/**
 * Decrypts (when the segment is encrypted) and decompresses stored frame bytes (checksum
 * already verified), and splits them into batches.
 */
export async function decodeFrame(
  index: SegmentIndex,
  frame: number,
  stored: Buffer,
  options: FrameReadOptions = {}
): Promise<RecordBatchView[]> {
  const row = frameRow(index, frame)
  let compressed = stored
  if (index.header.encryption !== undefined) {
    const cipher = await segmentCipher(index, options.keys)
    compressed = cipher.open(
      stored,
      {
        frame,
        segmentFirstOffset: index.footer.firstOffset,
        firstOffset: row.firstOffset,
        lastOffset: row.lastOffset,
        uncompressedLength: row.uncompressedLength
      },
      index.name
    )
  }
  let bytes: Buffer
  try {
    bytes = await frameCodec(index.footer.codec).decompress(compressed, row.uncompressedLength)
  } catch (error) {
    throw new BackupError(
      'KB_SEGMENT_CORRUPT',
      `segment ${index.name}: frame ${frame}: ${index.footer.codec} could not decompress it (expected ${row.uncompressedLength} bytes, found ${(error as Error).message})`,
      {
        segment: index.name,
        part: 'frame',
        frame,
        expected: row.uncompressedLength,
        found: (error as Error).message,
        cause: error
      }
    )
  }
  if (bytes.length !== row.uncompressedLength) {
    throw corrupt(
      index.name,
      'frame',
      frame,
      'decompressed length differs from the index row',
      row.uncompressedLength,
      bytes.length
    )
  }
  if ((row.flags & FrameFlag.recordsDecompressed) === 0) {
    return splitFrame(bytes, row, index.name, frame, options)
  }
  // The batches' own attributes give every flag but this one.
  const batches = splitFrame(
    bytes,
    { ...row, flags: row.flags & ~FrameFlag.recordsDecompressed },
    index.name,
    frame,
    options
  )
  if (!batches.some(batch => batch.codec !== Codec.none)) {
    throw corrupt(
      index.name,
      'frame',
      frame,
      'flagged recordsDecompressed but holds no compressed batch',
      'a batch with a codec',
      'none'
    )
  }
  // Loaded here, not at the top: its record codecs load the snappy addon (+9 MiB RSS, ~10 ms),
  // which read-only commands (list, describe) and segments without the flag never need.
  const { compressedAgain } = await import('./stored-records.ts')
  return Promise.all(
    batches.map((batch, position) =>
      batch.codec === Codec.none
        ? batch
        : compressedAgain(batch, index.name, frame, position, { crcChecked: options.verifyBatchCrc === true })
    )
  )
}

/** One frame's batches, by its index row: one range read. */
export async function readFrame(
  source: RangeSource,
  index: SegmentIndex,
  frame: number,
  options: FrameReadOptions = {}
): Promise<RecordBatchView[]> {
  return decodeFrame(index, frame, await readStoredFrame(source, index, frame), options)
}

export interface ReadBatchesOptions extends FrameReadOptions {
  /** The index, when the caller already read it. */
  index?: SegmentIndex
  /** Read only the frames this accepts (e.g. those overlapping a restore window). */
  frameFilter?: (row: FrameIndexRow, frame: number) => boolean
  signal?: AbortSignal
}

function noop(): void {}

/**
 * Bytes of frames decompressed ahead of their reader, across every segment read at once in the
 * process. A restore reads every partition ahead by a frame, so without a shared budget the
 * frames waiting decompressed grow with partitions x frame size (32 MiB at 8 partitions of 4 MiB
 * frames; docs/benchmarks.md, "Frame size and peak RSS"). Past the budget a reader still fetches
 * its next stored frame ahead, and decompresses it when it reaches it.
 */
export const READ_AHEAD_DECOMPRESSED_BYTES = 8 * 1024 * 1024

let readAheadFree = READ_AHEAD_DECOMPRESSED_BYTES

/** What is left of READ_AHEAD_DECOMPRESSED_BYTES now (for tests). */
export function readAheadBudgetFree(): number {
  return readAheadFree
}

interface FrameAhead {
  frame: number
  stored: Promise<Buffer>
  /** Set when the frame is decompressed ahead, under `reserved` bytes of the budget. */
  decoded?: Promise<RecordBatchView[]>
  reserved: number
}

/** Every batch of the segment in offset order; the next frame is read while this one is consumed. */
export async function* readSegmentBatches(
  source: RangeSource,
  name: string,
  options: ReadBatchesOptions = {}
): AsyncGenerator<RecordBatchView> {
  const index = options.index ?? (await readSegmentIndex(source, name))
  const frames: number[] = []
  for (const [i, row] of index.footer.frames.entries()) {
    if (options.frameFilter?.(row, i) ?? true) {
      frames.push(i)
    }
  }
  const load = (position: number): FrameAhead | undefined => {
    const frame = frames[position]
    if (frame === undefined) {
      return undefined
    }
    const stored = readStoredFrame(source, index, frame)
    // Awaited below; this only keeps an abandoned prefetch from being an unhandled rejection.
    stored.catch(noop)
    const size = index.footer.frames[frame]!.uncompressedLength
    if (size > readAheadFree) {
      return { frame, stored, reserved: 0 }
    }
    readAheadFree -= size
    const decoded = stored.then(bytes => decodeFrame(index, frame, bytes, options))
    decoded.catch(noop)
    return { frame, stored, decoded, reserved: size }
  }
  let next = load(0)
  try {
    for (let position = 0; next !== undefined; position++) {
      options.signal?.throwIfAborted()
      const ahead = next
      let batches: RecordBatchView[]
      try {
        batches = await (ahead.decoded ?? decodeFrame(index, ahead.frame, await ahead.stored, options))
      } finally {
        // From here the frame is this reader's current one, no longer ahead.
        readAheadFree += ahead.reserved
        ahead.reserved = 0
      }
      next = load(position + 1)
      yield* batches
    }
  } finally {
    if (next !== undefined) {
      readAheadFree += next.reserved
      next.reserved = 0
    }
  }
}

export interface ValidateOptions {
  /** Also decompress every frame, check every batch's Kafka CRC and that batches match their row. */
  deep?: boolean
  /** Needed by a deep validation of an encrypted segment: every frame's tag is checked. */
  keys?: KeyProvider
  signal?: AbortSignal
}

export interface SegmentValidation {
  index: SegmentIndex
  frameCount: number
  batchCount: number
  recordCount: number
}

/**
 * Throws the first problem found (KB_SEGMENT_CORRUPT / KB_UNSUPPORTED_CODEC) or returns what was
 * checked. Without `deep`, frames are checksummed but not decompressed.
 */
export async function validateSegment(
  source: RangeSource,
  name: string,
  options: ValidateOptions = {}
): Promise<SegmentValidation> {
  const index = await readSegmentIndex(source, name)
  const frameCount = index.footer.frames.length
  const load = (frame: number): Promise<Buffer> | undefined => {
    if (frame >= frameCount) {
      return undefined
    }
    const pending = readStoredFrame(source, index, frame)
    pending.catch(noop)
    return pending
  }
  let next = load(0)
  let batchCount = 0
  let recordCount = 0
  for (let frame = 0; next !== undefined; frame++) {
    options.signal?.throwIfAborted()
    const stored = await next
    next = load(frame + 1)
    if (options.deep) {
      const batches = await decodeFrame(index, frame, stored, { verifyBatchCrc: true, keys: options.keys })
      batchCount += batches.length
      for (const batch of batches) {
        recordCount += batch.recordCount
      }
    }
  }
  if (!options.deep) {
    batchCount = index.footer.batchCount
    recordCount = index.footer.recordCount
  }
  return { index, frameCount, batchCount, recordCount }
}
