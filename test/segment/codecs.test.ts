import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import zlib from 'node:zlib'
import { isBackupError } from '../../src/errors.ts'
import { frameCodec, resolveLevel, zstdWindowLog } from '../../src/segment/codecs.ts'
import { jsonValue, segmentCodecs } from './batches.ts'

const sample = Buffer.concat(Array.from({ length: 200 }, (_, i) => jsonValue(BigInt(i), 500)))

for (const name of segmentCodecs) {
  test(`${name} compresses into a new buffer and decompresses to the same bytes`, async () => {
    const codec = frameCodec(name)
    const input = Buffer.from(sample)
    const pieces = await codec.compress(input, resolveLevel(codec, undefined))
    for (const piece of pieces) {
      assert.notEqual(piece.buffer, input.buffer, 'the stored bytes do not alias the (pooled) input')
    }
    input.fill(0)
    const stored = Buffer.concat(pieces)
    assert.deepEqual(await codec.decompress(stored, sample.length), sample)
    if (name !== 'none') {
      assert.ok(stored.length < sample.length / 2, `${name} compresses JSON-like values`)
    }
  })
}

test('zstd and gzip refuse to inflate past the length the index row allows', async () => {
  for (const name of ['zstd', 'gzip'] as const) {
    const codec = frameCodec(name)
    const stored = Buffer.concat(await codec.compress(sample, resolveLevel(codec, undefined)))
    await assert.rejects(codec.decompress(stored, 1000), {
      code: 'ERR_BUFFER_TOO_LARGE',
      message: /larger than 1000 bytes/
    })
  }
})

test('zstd frames use the level asked for and are plain zstd (readable by any zstd tool)', async () => {
  const codec = frameCodec('zstd')
  const fast = Buffer.concat(await codec.compress(sample, 1))
  const strong = Buffer.concat(await codec.compress(sample, 19))
  assert.ok(strong.length < fast.length)
  assert.deepEqual(zlib.zstdDecompressSync(strong), sample)
  assert.equal(fast.readUInt32LE(0), 0xfd2fb528, 'zstd frame magic')
})

test('a zstd frame finds a value that recurs further apart than the level 3 window (2 MiB)', async () => {
  // 3 MiB of JSON-like values with random ids, then its first 512 KiB again: only a window that
  // covers the whole frame stores the repeat as references instead of compressing it again.
  const unique = Buffer.concat(
    Array.from({ length: 6300 }, (_, i) =>
      Buffer.concat([jsonValue(BigInt(i), 400), Buffer.from(randomBytes(50).toString('hex'))])
    )
  )
  const frame = Buffer.concat([unique, unique.subarray(0, 512 * 1024)])
  const codec = frameCodec('zstd')
  const whole = Buffer.concat(await codec.compress(frame, 3))
  const once = Buffer.concat(await codec.compress(unique, 3))
  assert.ok(
    whole.length - once.length < 4096,
    `the repeated 512 KiB cost ${whole.length - once.length} bytes; a reference costs a few`
  )
  assert.deepEqual(zlib.zstdDecompressSync(whole), frame, 'a standard zstd decoder reads it')
})

test('zstd windows cover the frame, from 1 KiB up to the 128 MiB every decoder accepts', () => {
  assert.equal(zstdWindowLog(0), 10)
  assert.equal(zstdWindowLog(1000), 10)
  assert.equal(zstdWindowLog(1024 * 1024), 20)
  assert.equal(zstdWindowLog(1024 * 1024 + 1), 21)
  assert.equal(zstdWindowLog(4 * 1024 * 1024), 22)
  assert.equal(zstdWindowLog(2 ** 31 - 1), 27)
})

test('zstd frames carry their content size in the frame header (docs/segment-format.md)', async () => {
  const frame = Buffer.concat(await frameCodec('zstd').compress(sample, 3))
  const descriptor = frame[4]!
  const singleSegment = (descriptor >> 5) & 1
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!
  assert.ok(sizeBytes > 0, 'the frame header has a content size field')
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!
  const size =
    sizeBytes === 8 ? Number(frame.readBigUInt64LE(at)) : frame.readUIntLE(at, sizeBytes) + (sizeBytes === 2 ? 256 : 0)
  assert.equal(size, sample.length)
})

test('gzip and lz4 frames are standard gzip members and LZ4 frames', async () => {
  const gzip = Buffer.concat(await frameCodec('gzip').compress(sample, 6))
  assert.deepEqual(zlib.gunzipSync(gzip), sample)
  const lz4 = Buffer.concat(await frameCodec('lz4').compress(sample, 0))
  assert.equal(lz4.readUInt32LE(0), 0x184d2204, 'LZ4 frame magic')
})

test('levels: defaults, ranges, and codecs without levels', () => {
  assert.equal(resolveLevel(frameCodec('zstd'), undefined), 3)
  assert.equal(resolveLevel(frameCodec('gzip'), undefined), 6)
  assert.equal(resolveLevel(frameCodec('lz4'), 9), 0)
  assert.throws(
    () => resolveLevel(frameCodec('zstd'), 0),
    (error: unknown) => isBackupError(error, 'KB_CONFIG_INVALID')
  )
  assert.throws(
    () => resolveLevel(frameCodec('gzip'), 10),
    (error: unknown) => isBackupError(error, 'KB_CONFIG_INVALID')
  )
  assert.throws(
    () => frameCodec('snappy'),
    (error: unknown) => isBackupError(error, 'KB_UNSUPPORTED_CODEC')
  )
  assert.throws(
    () => frameCodec('toString'),
    (error: unknown) => isBackupError(error, 'KB_UNSUPPORTED_CODEC')
  )
})
