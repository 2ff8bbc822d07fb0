import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import fc from 'fast-check'
import type Lz4 from 'lz4-napi'
import { compressLz4Frame, decompressLz4Frames } from '../../src/batch/lz4.ts'

const lz4 = createRequire(import.meta.url)('lz4-napi') as typeof Lz4
const compressBlock = (block: Buffer) => lz4.compressSync(block)

/** Buffers from random bytes to long repeats, so that blocks are compressed, stored, short and long. */
const arbitraryData = fc.oneof(
  fc.uint8Array({ maxLength: 200_000 }),
  fc
    .tuple(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 2_000 }))
    .map(([unit, times]) => Buffer.concat(Array.from({ length: times }, () => unit))),
  fc
    .array(fc.constantFrom('order', 'shipped', '{"id":', '12', ', ', 'customer', '"}\n'), { maxLength: 30_000 })
    .map(words => Buffer.from(words.join('')))
)

test('frames we write decompress with lz4-napi to the same bytes, in 64 KiB blocks as Kafka writes them', () => {
  fc.assert(
    fc.property(arbitraryData, data => {
      const frame = compressLz4Frame(Buffer.from(data), compressBlock)
      assert.deepEqual([...frame.subarray(0, 7)], [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82])
      assert.ok(lz4.decompressFrameSync(frame).equals(Buffer.from(data)))
      assert.ok(decompressLz4Frames(frame).equals(Buffer.from(data)))
    }),
    { numRuns: 150 }
  )
})

test('frames lz4-napi writes decompress to the same bytes (its header checksum is the one we write)', () => {
  assert.deepEqual(
    [...lz4.compressFrameSync(Buffer.from('x')).subarray(0, 7)],
    [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82]
  )
  fc.assert(
    fc.property(arbitraryData, data => {
      assert.ok(decompressLz4Frames(lz4.compressFrameSync(Buffer.from(data))).equals(Buffer.from(data)))
    }),
    { numRuns: 150 }
  )
})

/** A frame with every optional field: content size, block and content checksums (not verified). */
function fullFrame(data: Buffer): Buffer {
  const pieces: Buffer[] = [Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x60 | 0x10 | 0x08 | 0x04, 0x70])]
  const size = Buffer.alloc(8)
  size.writeBigUInt64LE(BigInt(data.length))
  pieces.push(size, Buffer.from([0x00]))
  for (let start = 0; start < data.length; start += 100_000) {
    const block = data.subarray(start, start + 100_000)
    const compressed = compressBlock(block).subarray(4)
    const field = Buffer.alloc(4)
    const stored = start === 0 ? block : compressed
    field.writeUInt32LE(start === 0 ? (block.length | 0x80000000) >>> 0 : compressed.length)
    pieces.push(field, stored, Buffer.from([1, 2, 3, 4]))
  }
  pieces.push(Buffer.alloc(4), Buffer.from([9, 9, 9, 9]))
  return Buffer.concat(pieces)
}

test('reads frames with a content size, checksums, 4 MiB blocks, a stored block, and frames one after another', () => {
  const data = Buffer.from('0123456789abcdef'.repeat(20_000))
  assert.ok(decompressLz4Frames(fullFrame(data)).equals(data))
  const two = Buffer.concat([fullFrame(data), compressLz4Frame(data.subarray(5, 70_000), compressBlock)])
  assert.ok(decompressLz4Frames(two).equals(Buffer.concat([data, data.subarray(5, 70_000)])))
})

test('damaged frames fail with an error instead of returning other bytes', () => {
  const data = Buffer.from('{"order":"shipped","customer":1234}\n'.repeat(3_000))
  const frame = compressLz4Frame(data, compressBlock)
  const damaged: Array<[string, Buffer]> = [
    ['magic', Buffer.concat([Buffer.from([0]), frame.subarray(1)])],
    ['cut off', frame.subarray(0, frame.length - 10)],
    ['no end mark', frame.subarray(0, frame.length - 4)],
    ['version', Buffer.concat([frame.subarray(0, 4), Buffer.from([0xa0]), frame.subarray(5)])],
    ['dictionary', Buffer.concat([frame.subarray(0, 4), Buffer.from([0x61]), frame.subarray(5)])],
    ['content size', fullFrame(data).fill(0xff, 6, 13)]
  ]
  // A match offset pointing before the start of the output: token 0x00 (no literals, match 4),
  // offset 1 while nothing was written yet.
  const badBlock = Buffer.from([0x00, 0x01, 0x00, 0x10])
  const field = Buffer.alloc(4)
  field.writeUInt32LE(badBlock.length)
  damaged.push(['match offset', Buffer.concat([frame.subarray(0, 7), field, badBlock, Buffer.alloc(4)])])
  for (const [what, bytes] of damaged) {
    assert.throws(() => decompressLz4Frames(bytes), Error, what)
  }
})
