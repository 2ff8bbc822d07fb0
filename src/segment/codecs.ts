/**
 * Frame codecs. Each frame is compressed on its own so any frame can be read with one range
 * request. Compression runs asynchronously (zlib and lz4-napi both use the libuv threadpool),
 * so a 1 MiB frame never blocks the event loop and partitions compress in parallel; the
 * measurements behind this are in docs/benchmarks.md, "Codec ceilings".
 */
import { createRequire } from 'node:module'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import type Lz4 from 'lz4-napi'
import { BackupError } from '../errors.ts'
import { Slots } from '../slots.ts'
import { type SegmentCodecId, SegmentCodecIds, type SegmentCodecName } from './format.ts'
import { compressionLevels } from './levels.ts'

// A native library (~4 ms of start-up): loaded by the first lz4 frame, not by every run.
const loadPackage = createRequire(import.meta.url)
let lz4Module: typeof Lz4 | undefined
const lz4Native = () => (lz4Module ??= loadPackage('lz4-napi') as typeof Lz4)

const zstdDecompress = promisify(zlib.zstdDecompress)
const gunzip = promisify(zlib.gunzip)

/** The libuv pool's threads, where frames (de)compress: 4 unless UV_THREADPOOL_SIZE says otherwise. */
export const POOL_THREADS = Math.max(1, Number(process.env.UV_THREADPOOL_SIZE) || 4)

/**
 * Frame decompressions at once: as many as the libuv pool runs. More would only wait in its
 * queue, each holding the native context and output buffer its call allocates at once: a
 * restore of 2,000 small partitions decompressing every first frame together held 100 MiB more
 * (docs/benchmarks.md, "Many partitions with little data each").
 */
const decompressionSlots = new Slots(POOL_THREADS)

/** A frame codec's name as the config spells it: `none`, `gzip`, `lz4`, `zstd`. */
export type SegmentCodec = SegmentCodecName

export interface FrameCodec {
  readonly name: SegmentCodecName
  readonly id: SegmentCodecId
  /**
   * The stored frame in the pieces the codec wrote it in (joined, they are the frame), new
   * Buffers the caller may keep: `frame` may be a pooled buffer reused afterwards.
   */
  compress(frame: Buffer, level: number): Promise<Buffer[]>
  /**
   * zstd and gzip stop at `uncompressedLength` bytes, so a bad row cannot exhaust memory; lz4-napi
   * has no such limit, but readers verify the frame checksum before they decompress.
   */
  decompress(stored: Buffer, uncompressedLength: number): Promise<Buffer>
}

const none: FrameCodec = {
  name: 'none',
  id: SegmentCodecIds.none,
  async compress(frame) {
    return [Buffer.from(frame)]
  },
  async decompress(stored) {
    return stored
  }
}

/**
 * zlib's one-shot calls hand output back in `chunkSize` pieces, one threadpool round trip each
 * (16 KiB by default: 64 round trips to inflate a 1 MiB frame). A compressed frame of this data
 * (JSON events, about 4:1 at zstd-3) fits in one chunk of a quarter of its input, at least
 * 256 KiB; a decompressed one in a chunk of its known length; measured in docs/benchmarks.md,
 * this roughly doubles compression and multiplies decompression speed.
 */
function compressChunkSize(inputLength: number): number {
  return Math.min(Math.max(256 * 1024, Math.ceil(inputLength / 4)), inputLength + 1024)
}

/**
 * A zstd window as large as the frame (2^10 to 2^27 bytes), so that a value that recurs anywhere
 * in the frame is found: level 3 keeps a 2 MiB window, which leaves the second half of a 4 MiB
 * frame blind to the first (docs/benchmarks.md, "Stored bytes beside OSO"). Frames of 2 MiB or
 * less get the window zstd would pick itself. 2^27 is the largest window a zstd decoder accepts
 * without being told to (the format's default limit), so any standard tool still reads a frame.
 */
export function zstdWindowLog(frameLength: number): number {
  return Math.min(27, Math.max(10, Math.ceil(Math.log2(Math.max(1, frameLength)))))
}

/**
 * Runs one frame through a fresh compression stream and keeps its output chunks apart: zlib's
 * one-shot calls join them with Buffer.concat, a copy of every stored byte (zstd ends each
 * frame in a chunk of its own) that cost 6% of a backup's event loop.
 */
function compressedPieces(stream: zlib.ZstdCompress | zlib.Gzip, frame: Buffer): Promise<Buffer[]> {
  const { promise, resolve, reject } = Promise.withResolvers<Buffer[]>()
  const pieces: Buffer[] = []
  stream.on('data', (piece: Buffer) => pieces.push(piece))
  stream.once('error', reject)
  stream.once('end', () => {
    stream.close()
    resolve(pieces)
  })
  stream.end(frame)
  return promise
}

function decompressChunkSize(uncompressedLength: number): number {
  // A little room past the end lets the stream see that the frame ended in the same call.
  return uncompressedLength + 1024
}

const zstd: FrameCodec = {
  name: 'zstd',
  id: SegmentCodecIds.zstd,
  compress(frame, level) {
    const stream = zlib.createZstdCompress({
      chunkSize: compressChunkSize(frame.length),
      // The decompressor learns the size up front and allocates once.
      pledgedSrcSize: frame.length,
      params: {
        [zlib.constants.ZSTD_c_compressionLevel]: level,
        [zlib.constants.ZSTD_c_windowLog]: zstdWindowLog(frame.length),
        [zlib.constants.ZSTD_c_contentSizeFlag]: 1
      }
    })
    return compressedPieces(stream, frame)
  },
  decompress(stored, uncompressedLength) {
    return decompressionSlots.run(() =>
      zstdDecompress(stored, {
        chunkSize: decompressChunkSize(uncompressedLength),
        maxOutputLength: Math.max(1, uncompressedLength)
      })
    )
  }
}

const gzipCodec: FrameCodec = {
  name: 'gzip',
  id: SegmentCodecIds.gzip,
  compress(frame, level) {
    return compressedPieces(zlib.createGzip({ level, chunkSize: compressChunkSize(frame.length) }), frame)
  },
  decompress(stored, uncompressedLength) {
    return decompressionSlots.run(() =>
      gunzip(stored, {
        chunkSize: decompressChunkSize(uncompressedLength),
        maxOutputLength: Math.max(1, uncompressedLength)
      })
    )
  }
}

/**
 * LZ4 frame format (the one Kafka uses), from lz4-napi: native and asynchronous. Measured
 * against @platformatic/kafka's WASM lz4 in bench/codec.ts; both write the same format.
 */
const lz4: FrameCodec = {
  name: 'lz4',
  id: SegmentCodecIds.lz4,
  async compress(frame) {
    return [await lz4Native().compressFrame(frame)]
  },
  decompress(stored) {
    return decompressionSlots.run(() => lz4Native().decompressFrame(stored))
  }
}

const codecs: Record<SegmentCodecName, FrameCodec> = { none, zstd, gzip: gzipCodec, lz4 }

export function frameCodec(name: string): FrameCodec {
  const codec = Object.hasOwn(codecs, name) ? codecs[name as SegmentCodecName] : undefined
  if (codec === undefined) {
    throw new BackupError(
      'KB_UNSUPPORTED_CODEC',
      `segment codec ${name} is not supported (expected one of ${Object.keys(codecs).join(', ')})`,
      { expected: Object.keys(codecs), found: name }
    )
  }
  return codec
}

/** The level to use: the codec default when unset; an out-of-range level is a config error. */
export function resolveLevel(codec: FrameCodec, level: number | undefined): number {
  const range = compressionLevels[codec.name]
  // lz4 and none have no levels: a configured level (shared by all codecs) is not an error.
  if (range === undefined) {
    return 0
  }
  if (level === undefined) {
    return range.default
  }
  if (!Number.isInteger(level) || level < range.min || level > range.max) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `compression level ${level} is out of range for ${codec.name} (${range.min} to ${range.max})`,
      { expected: `${range.min}..${range.max}`, found: level }
    )
  }
  return level
}
