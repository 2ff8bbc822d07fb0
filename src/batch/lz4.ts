/**
 * Kafka's lz4 codec: the LZ4 frame format around LZ4 blocks (docs/architecture.md, "lz4 records").
 * The frame is handled here and blocks are decoded in JavaScript: lz4-napi's frame calls ran at
 * a third to half the speed of its block calls on Kafka-sized batches, and its block decoder
 * cannot write into a buffer of ours, so this decoder (about twice lz4-napi's frame speed) took
 * lz4 work from a fifth of an lz4 topic's backup to a tenth (docs/benchmarks.md, "lz4 records").
 * Blocks are still compressed by lz4-napi, one 64 KiB block per call, as Kafka's Java producer
 * frames them.
 */

const MAGIC = 0x184d2204
const Flag = {
  version: 0xc0,
  versionOne: 0x40,
  blockChecksum: 0x10,
  contentSize: 0x08,
  contentChecksum: 0x04,
  dictId: 0x01
}
const UNCOMPRESSED_BLOCK = 0x80000000
const BLOCK_BYTES = 64 * 1024

/**
 * Version 1, independent blocks, no checksums, 64 KiB blocks, and the header checksum of those
 * two bytes (xxHash32 >> 8): what Kafka's Java producer writes.
 */
const FRAME_HEADER = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82])
const END_MARK = Buffer.alloc(4)

class Lz4Error extends Error {}

/** Blocks are decoded into `out` from `at`; returns where the block's output ends. */
function decodeBlock(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  let s = start
  let d = at
  const outEnd = out.length
  while (s < end) {
    const token = src[s++]!
    let literals = token >>> 4
    if (literals === 15) {
      let more: number
      do {
        if (s >= end) {
          throw new Lz4Error('a literal length runs past the block')
        }
        more = src[s++]!
        literals += more
      } while (more === 255)
    }
    if (literals > 0) {
      if (s + literals > end || d + literals > outEnd) {
        throw new Lz4Error('literals run past the block or its output')
      }
      if (literals < 16) {
        for (let i = 0; i < literals; i++) {
          out[d + i] = src[s + i]!
        }
      } else {
        out.set(src.subarray(s, s + literals), d)
      }
      s += literals
      d += literals
    }
    if (s === end) {
      break
    }
    if (s + 2 > end) {
      throw new Lz4Error('a match offset is cut off')
    }
    const offset = src[s]! | (src[s + 1]! << 8)
    s += 2
    let length = token & 15
    if (length === 15) {
      let more: number
      do {
        if (s >= end) {
          throw new Lz4Error('a match length runs past the block')
        }
        more = src[s++]!
        length += more
      } while (more === 255)
    }
    length += 4
    const from = d - offset
    if (offset === 0 || from < 0 || d + length > outEnd) {
      throw new Lz4Error(`a match (offset ${offset}, length ${length}) reaches outside the output`)
    }
    if (length < 16 || offset < length) {
      // Short, or overlapping its own output (a repeat): byte by byte, as the format means it.
      for (let i = 0; i < length; i++) {
        out[d + i] = out[from + i]!
      }
    } else {
      out.copyWithin(d, from, from + length)
    }
    d += length
  }
  return d
}

interface FrameLayout {
  /** Where the first block's size field starts. */
  blocksAt: number
  blockChecksum: boolean
  contentChecksum: boolean
  contentSize: number | undefined
  blockMax: number
}

function frameLayout(data: Buffer, at: number): FrameLayout {
  if (data.length < at + 7 || data.readUInt32LE(at) !== MAGIC) {
    throw new Lz4Error(`no LZ4 frame magic at byte ${at}`)
  }
  const flags = data[at + 4]!
  if ((flags & Flag.version) !== Flag.versionOne) {
    throw new Lz4Error(`LZ4 frame version ${(flags & Flag.version) >>> 6} is not 1`)
  }
  if ((flags & Flag.dictId) !== 0) {
    throw new Lz4Error('LZ4 frames with a dictionary are not supported')
  }
  const blockSizeId = (data[at + 5]! >>> 4) & 7
  if (blockSizeId < 4) {
    throw new Lz4Error(`LZ4 block size id ${blockSizeId} is not 4..7`)
  }
  let position = at + 6
  let contentSize: number | undefined
  if (flags & Flag.contentSize) {
    if (data.length < position + 9) {
      throw new Lz4Error('the LZ4 frame header is cut off')
    }
    contentSize = Number(data.readBigUInt64LE(position))
    position += 8
  }
  // The header checksum byte is not verified: the batch's CRC-32C covers these bytes.
  return {
    blocksAt: position + 1,
    blockChecksum: (flags & Flag.blockChecksum) !== 0,
    contentChecksum: (flags & Flag.contentChecksum) !== 0,
    contentSize,
    blockMax: 1 << (2 * blockSizeId + 8)
  }
}

/** Decompresses one or more concatenated LZ4 frames. Checksums inside frames are skipped, not verified. */
export function decompressLz4Frames(data: Buffer): Buffer {
  // Output room: the declared content sizes, else what each block can decompress to at most:
  // blockMax, or 256 bytes per compressed byte (LZ4 cannot expand further), whichever is less.
  let capacity = 0
  const frames: FrameLayout[] = []
  for (let at = 0; at < data.length; ) {
    const frame = frameLayout(data, at)
    frames.push(frame)
    let position = frame.blocksAt
    let blocksRoom = 0
    for (;;) {
      if (position + 4 > data.length) {
        throw new Lz4Error('an LZ4 block size is cut off')
      }
      const field = data.readUInt32LE(position)
      position += 4
      if (field === 0) {
        break
      }
      const size = (field & ~UNCOMPRESSED_BLOCK) >>> 0
      if (size > frame.blockMax) {
        throw new Lz4Error(`an LZ4 block of ${size} bytes exceeds the frame's ${frame.blockMax}`)
      }
      blocksRoom += field & UNCOMPRESSED_BLOCK ? size : Math.min(frame.blockMax, 256 * size + 64)
      position += size + (frame.blockChecksum ? 4 : 0)
    }
    if (frame.contentSize !== undefined && frame.contentSize > blocksRoom) {
      throw new Lz4Error(`the LZ4 frame declares ${frame.contentSize} bytes, more than its blocks can hold`)
    }
    capacity += frame.contentSize ?? blocksRoom
    at = position + (frame.contentChecksum ? 4 : 0)
    if (at > data.length) {
      throw new Lz4Error('the LZ4 frame ends early')
    }
  }
  const out = Buffer.allocUnsafe(capacity)
  let written = 0
  for (const frame of frames) {
    const frameStart = written
    let position = frame.blocksAt
    for (;;) {
      const field = data.readUInt32LE(position)
      position += 4
      if (field === 0) {
        break
      }
      const size = (field & ~UNCOMPRESSED_BLOCK) >>> 0
      if (field & UNCOMPRESSED_BLOCK) {
        if (written + size > out.length) {
          throw new Lz4Error('an uncompressed LZ4 block exceeds the declared content size')
        }
        data.copy(out, written, position, position + size)
        written += size
      } else {
        const blockEnd = decodeBlock(data, position, position + size, out, written)
        if (blockEnd - written > frame.blockMax) {
          throw new Lz4Error(`an LZ4 block decompresses past the frame's ${frame.blockMax} bytes`)
        }
        written = blockEnd
      }
      position += size + (frame.blockChecksum ? 4 : 0)
    }
    if (frame.contentSize !== undefined && written - frameStart !== frame.contentSize) {
      throw new Lz4Error(`the LZ4 frame declares ${frame.contentSize} bytes and holds ${written - frameStart}`)
    }
  }
  return out.subarray(0, written)
}

/**
 * One LZ4 frame as Kafka's Java producer writes it: 64 KiB independent blocks, each compressed
 * by `compressBlock` (which returns the block after a 4-byte size, as lz4-napi's compressSync
 * does), or stored as is when it would not shrink.
 */
export function compressLz4Frame(data: Buffer, compressBlock: (block: Buffer) => Buffer): Buffer {
  const pieces: Buffer[] = [FRAME_HEADER]
  for (let start = 0; start < data.length; start += BLOCK_BYTES) {
    const block = data.subarray(start, start + BLOCK_BYTES)
    const compressed = compressBlock(block).subarray(4)
    const size = Buffer.allocUnsafe(4)
    if (compressed.length < block.length) {
      size.writeUInt32LE(compressed.length)
      pieces.push(size, compressed)
    } else {
      size.writeUInt32LE((block.length | UNCOMPRESSED_BLOCK) >>> 0)
      pieces.push(size, block)
    }
  }
  pieces.push(END_MARK)
  return Buffer.concat(pieces)
}
