import assert from 'node:assert/strict'
import { test } from 'node:test'
import { crc32c } from '../../src/batch/crc.ts'
import { Offset } from '../../src/batch/header.ts'
import { type BackupError, isBackupError } from '../../src/errors.ts'
import {
  FOOTER_SUMMARY_SIZE,
  FooterField,
  FRAME_ROW_SIZE,
  HeaderField,
  RowField,
  TRAILER_SIZE,
  TrailerField
} from '../../src/segment/format.ts'
import {
  bufferSource,
  type RangeSource,
  READ_AHEAD_DECOMPRESSED_BYTES,
  readAheadBudgetFree,
  readFrame,
  readSegmentBatches,
  readSegmentIndex,
  validateSegment
} from '../../src/segment/reader.ts'
import { makeBatches, segmentCodecs, writeSegment } from './batches.ts'

const NAME = 'topics/orders/3/00000000000000001000.seg'

function countingSource(bytes: Buffer): RangeSource & { reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = []
  return {
    reads,
    size: bytes.length,
    async read(offset, length) {
      reads.push([offset, length])
      return bytes.subarray(offset, offset + length)
    }
  }
}

/** Reads everything the three public paths return, so a test can assert none yields partial data silently. */
async function readEverything(source: RangeSource, deep = true): Promise<number> {
  await validateSegment(source, NAME, { deep })
  let batches = 0
  for await (const _ of readSegmentBatches(source, NAME)) {
    batches++
  }
  return batches
}

function isSegmentCorrupt(frame?: number) {
  return (error: unknown) => {
    assert.ok(
      isBackupError(error, 'KB_SEGMENT_CORRUPT'),
      `expected KB_SEGMENT_CORRUPT, got ${(error as Error)?.name}: ${(error as Error)?.message}`
    )
    assert.ok(error.message.includes(NAME), `the message names the segment: ${error.message}`)
    assert.equal(error.segment, NAME)
    assert.ok('expected' in error && 'found' in error)
    if (frame !== undefined) {
      assert.equal(error.frame, frame)
      assert.ok(error.message.includes(`frame ${frame}`), error.message)
    }
    return true
  }
}

/** Recomputes the footer CRC in the trailer and the trailer CRC after a test edited the footer. */
function resealFooter(bytes: Buffer): void {
  const trailerAt = bytes.length - TRAILER_SIZE
  const footerOffset = Number(bytes.readBigInt64BE(trailerAt + TrailerField.footerOffset))
  bytes.writeUInt32BE(crc32c(bytes.subarray(footerOffset, trailerAt)), trailerAt + TrailerField.footerCrc)
  resealTrailer(bytes)
}

function resealTrailer(bytes: Buffer): void {
  const trailerAt = bytes.length - TRAILER_SIZE
  bytes.writeUInt32BE(
    crc32c(bytes.subarray(trailerAt, trailerAt + TrailerField.trailerCrc)),
    trailerAt + TrailerField.trailerCrc
  )
}

function footerOffsetOf(bytes: Buffer): number {
  return Number(bytes.readBigInt64BE(bytes.length - TRAILER_SIZE + TrailerField.footerOffset))
}

test('the index comes from one range read for a small segment, two concurrent reads for a large one', async () => {
  const small = await writeSegment(makeBatches(10, 5))
  const smallSource = countingSource(small.bytes)
  await readSegmentIndex(smallSource, NAME)
  assert.deepEqual(smallSource.reads, [[0, small.bytes.length]])

  const large = await writeSegment(makeBatches(400, 10, 0n, 300), { frameMaxBytes: 4096 })
  assert.ok(large.bytes.length > 64 * 1024)
  const largeSource = countingSource(large.bytes)
  const index = await readSegmentIndex(largeSource, NAME)
  assert.equal(largeSource.reads.length, 2)
  assert.equal(index.footer.frames.length, large.summary.frameCount)
  assert.equal(index.footer.recordCount, 4000)

  // A footer bigger than the tail read costs one more read.
  const tinyTail = countingSource(large.bytes)
  await readSegmentIndex(tinyTail, NAME, { tailBytes: 64 })
  assert.equal(tinyTail.reads.length, 3)
})

test('any frame is read with one range read of exactly its bytes', async () => {
  const batches = makeBatches(60, 5)
  const { bytes } = await writeSegment(batches, { frameMaxBytes: 2048 })
  const source = countingSource(bytes)
  const index = await readSegmentIndex(source, NAME)
  let batchIndex = 0
  for (const [i, row] of index.footer.frames.entries()) {
    source.reads.length = 0
    const frameBatches = await readFrame(source, index, i, { verifyBatchCrc: true })
    assert.deepEqual(source.reads, [[row.frameOffset, row.storedLength]])
    for (const batch of frameBatches) {
      assert.deepEqual(batch.bytes, batches[batchIndex++]!.bytes)
    }
  }
  assert.equal(batchIndex, batches.length)
  await assert.rejects(readFrame(source, index, index.footer.frames.length), (error: unknown) =>
    isBackupError(error, 'KB_INTERNAL')
  )
})

test('frames decompressed ahead share one budget across readers; past it they are decompressed when reached', async () => {
  const batches = makeBatches(200, 20, 0n, 1000)
  const { bytes } = await writeSegment(batches, { frameMaxBytes: 1024 * 1024 })
  const readers = Array.from({ length: 12 }, () => readSegmentBatches(bufferSource(bytes), NAME))
  // Each reader takes its first batch, so each has its next frame ahead: more than the budget holds.
  for (const reader of readers) {
    const first = await reader.next()
    assert.deepEqual(first.value?.bytes, batches[0]!.bytes)
  }
  const used = READ_AHEAD_DECOMPRESSED_BYTES - readAheadBudgetFree()
  assert.ok(used > READ_AHEAD_DECOMPRESSED_BYTES / 2 && readAheadBudgetFree() >= 0, `decompressed ahead: ${used}`)
  // Every reader, in or out of the budget, still yields exactly the batches written.
  await Promise.all(
    readers.slice(1).map(async reader => {
      let i = 1
      for await (const batch of { [Symbol.asyncIterator]: () => reader }) {
        assert.deepEqual(batch.bytes, batches[i++]!.bytes)
      }
      assert.equal(i, batches.length)
    })
  )
  // An abandoned reader gives its frame ahead back.
  assert.ok(readAheadBudgetFree() < READ_AHEAD_DECOMPRESSED_BYTES)
  await readers[0]!.return(undefined)
  assert.equal(readAheadBudgetFree(), READ_AHEAD_DECOMPRESSED_BYTES)
})

test('frameFilter reads only the chosen frames', async () => {
  const { source } = await writeSegment(makeBatches(60, 5), { frameMaxBytes: 2048 })
  const index = await readSegmentIndex(source, NAME)
  const wanted = index.footer.frames.filter((_row, i) => i % 2 === 1)
  const offsets: bigint[] = []
  for await (const batch of readSegmentBatches(source, NAME, { index, frameFilter: (_, i) => i % 2 === 1 })) {
    offsets.push(batch.baseOffset)
  }
  assert.equal(offsets[0], wanted[0]!.firstOffset)
  assert.equal(
    offsets.length,
    wanted.reduce((sum, row) => sum + row.batchCount, 0)
  )
})

for (const codec of segmentCodecs) {
  test(`${codec}: a flipped bit in any frame fails with KB_SEGMENT_CORRUPT naming the segment and that frame`, async () => {
    const batches = makeBatches(40, 5)
    const { bytes } = await writeSegment(batches, { codec, frameMaxBytes: 2048 })
    const index = await readSegmentIndex(bufferSource(bytes), NAME)
    assert.ok(index.footer.frames.length >= 4)
    for (const [frame, row] of index.footer.frames.entries()) {
      for (const at of [0, row.storedLength >> 1, row.storedLength - 1]) {
        for (const bit of [0, 7]) {
          const damaged = Buffer.from(bytes)
          damaged[row.frameOffset + at]! ^= 1 << bit
          const source = bufferSource(damaged)
          await assert.rejects(readFrame(source, index, frame), isSegmentCorrupt(frame))
          await assert.rejects(validateSegment(source, NAME), isSegmentCorrupt(frame))
          // Streaming yields the frames before the damaged one, then fails: no silent gap.
          let yielded = 0
          await assert.rejects(async () => {
            for await (const _ of readSegmentBatches(source, NAME)) {
              yielded++
            }
          }, isSegmentCorrupt(frame))
          const before = index.footer.frames.slice(0, frame).reduce((sum, r) => sum + r.batchCount, 0)
          assert.equal(yielded, before)
        }
      }
    }
  })
}

test('every single-byte change anywhere in a segment is detected, never a RangeError', async () => {
  const { bytes } = await writeSegment(makeBatches(6, 2, 0n, 30), { codec: 'none', frameMaxBytes: 600 })
  for (let at = 0; at < bytes.length; at++) {
    const damaged = Buffer.from(bytes)
    damaged[at]! ^= 0x10
    await assert.rejects(readEverything(bufferSource(damaged)), (error: unknown) => {
      assert.ok(
        isBackupError(error, 'KB_SEGMENT_CORRUPT') || isBackupError(error, 'KB_UNSUPPORTED_CODEC'),
        `byte ${at}: ${(error as Error).stack}`
      )
      return true
    })
  }
})

for (const codec of segmentCodecs) {
  test(`${codec}: a segment truncated at any length fails cleanly`, async () => {
    const { bytes } = await writeSegment(makeBatches(8, 3, 0n, 60), { codec, frameMaxBytes: 1024 })
    const step = Math.max(1, Math.floor(bytes.length / 400))
    for (let length = 0; length < bytes.length; length += step) {
      await assert.rejects(readEverything(bufferSource(bytes.subarray(0, length))), isSegmentCorrupt())
    }
  })
}

test('a source that returns fewer bytes than asked is reported, not read past', async () => {
  const { bytes } = await writeSegment(makeBatches(40, 5), { frameMaxBytes: 2048 })
  const shortSource: RangeSource = {
    size: bytes.length + 100,
    async read(offset, length) {
      return bytes.subarray(offset, offset + length)
    }
  }
  await assert.rejects(readSegmentIndex(shortSource, NAME), isSegmentCorrupt())
})

test('wrong trailer: bad magic, bad checksum, a footer location that does not fit', async () => {
  const { bytes } = await writeSegment(makeBatches(10, 5))
  const trailerAt = bytes.length - TRAILER_SIZE

  const badMagic = Buffer.from(bytes)
  badMagic[trailerAt + TrailerField.magic + 3] = 0x58
  await assert.rejects(readSegmentIndex(bufferSource(badMagic), NAME), (error: BackupError) => {
    isSegmentCorrupt()(error)
    assert.match(error.message, /trailer magic/)
    assert.equal(error.part, 'trailer')
    return true
  })

  const badCrc = Buffer.from(bytes)
  badCrc[trailerAt + TrailerField.footerLength + 3]! ^= 1
  await assert.rejects(readSegmentIndex(bufferSource(badCrc), NAME), /trailer checksum mismatch/)

  const moved = Buffer.from(bytes)
  moved.writeBigInt64BE(moved.readBigInt64BE(trailerAt) - 8n, trailerAt + TrailerField.footerOffset)
  resealTrailer(moved)
  await assert.rejects(readSegmentIndex(bufferSource(moved), NAME), /footer location does not end at the trailer/)

  // Two segments glued together: the first one's trailer is not at the end.
  const glued = Buffer.concat([bytes, bytes.subarray(0, 100)])
  await assert.rejects(readSegmentIndex(bufferSource(glued), NAME), isSegmentCorrupt())
})

test('wrong header magic, unknown version, header checksum', async () => {
  const { bytes } = await writeSegment(makeBatches(10, 5))

  const magic = Buffer.from(bytes)
  magic.write('PK', HeaderField.magic)
  await assert.rejects(readSegmentIndex(bufferSource(magic), NAME), /wrong magic/)

  const headerVersion = Buffer.from(bytes)
  headerVersion.writeUInt16BE(3, HeaderField.version)
  await assert.rejects(readSegmentIndex(bufferSource(headerVersion), NAME), (error: BackupError) => {
    isSegmentCorrupt()(error)
    assert.match(error.message, /unsupported format version \(expected 1 or 2, found 3\)/)
    return true
  })

  const trailerVersion = Buffer.from(bytes)
  trailerVersion.writeUInt16BE(7, bytes.length - TRAILER_SIZE + TrailerField.version)
  resealTrailer(trailerVersion)
  await assert.rejects(
    readSegmentIndex(bufferSource(trailerVersion), NAME),
    /unsupported format version \(expected 1 or 2, found 7\)/
  )

  const partition = Buffer.from(bytes)
  partition.writeInt32BE(4, HeaderField.partition)
  await assert.rejects(readSegmentIndex(bufferSource(partition), NAME), /header checksum mismatch/)
})

test('an unknown codec id is KB_UNSUPPORTED_CODEC', async () => {
  const { bytes } = await writeSegment(makeBatches(10, 5))
  const footerAt = footerOffsetOf(bytes)
  const damaged = Buffer.from(bytes)
  damaged.writeUInt8(2, footerAt + FooterField.codec)
  resealFooter(damaged)
  await assert.rejects(readSegmentIndex(bufferSource(damaged), NAME), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_UNSUPPORTED_CODEC'))
    assert.match(error.message, new RegExp(NAME))
    return true
  })
})

test('footer: a wrong checksum, and rows that are inconsistent even with a valid checksum', async () => {
  const { bytes } = await writeSegment(makeBatches(40, 5), { frameMaxBytes: 2048 })
  const footerAt = footerOffsetOf(bytes)
  const row = (i: number) => footerAt + FOOTER_SUMMARY_SIZE + i * FRAME_ROW_SIZE
  const last = bytes.readUInt32BE(footerAt + FooterField.frameCount) - 1

  const flipped = Buffer.from(bytes)
  flipped[row(1) + RowField.recordCount]! ^= 4
  await assert.rejects(readSegmentIndex(bufferSource(flipped), NAME), /footer checksum mismatch/)

  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    [
      'offsets going backwards',
      b => b.writeBigInt64BE(0n, row(2) + RowField.firstOffset),
      /frame 2: index row offsets are not increasing/
    ],
    [
      'a gap between frames',
      b => b.writeBigInt64BE(b.readBigInt64BE(row(1)) + 1n, row(1) + RowField.frameOffset),
      /frame 1: index row byte range is not contiguous/
    ],
    [
      'a frame running into the footer',
      b => b.writeUInt32BE(b.readUInt32BE(row(last) + RowField.storedLength) + 1, row(last) + RowField.storedLength),
      /frames do not end where the footer starts/
    ],
    [
      'totals that differ from the rows',
      b => b.writeBigInt64BE(12345n, footerAt + FooterField.recordCount),
      /recordCount disagrees with the index rows/
    ],
    [
      'a row count that does not fit the length',
      b => b.writeUInt32BE(1000, footerAt + FooterField.frameCount),
      /length disagrees with 1000 rows/
    ],
    [
      'a header length that disagrees with the header',
      b =>
        b.writeUInt32BE(b.readUInt32BE(footerAt + FooterField.headerLength) + 1, footerAt + FooterField.headerLength),
      /./
    ]
  ]
  for (const [label, edit, message] of cases) {
    const damaged = Buffer.from(bytes)
    edit(damaged)
    resealFooter(damaged)
    await assert.rejects(readSegmentIndex(bufferSource(damaged), NAME), (error: unknown) => {
      isSegmentCorrupt()(error)
      assert.match((error as Error).message, message, label)
      return true
    })
  }
})

test('a frame with a valid checksum but wrong content is caught against its row, and deep validation checks Kafka CRCs', async () => {
  const batches = makeBatches(4, 5)
  const { bytes } = await writeSegment(batches, { codec: 'none', frameMaxBytes: 64 * 1024 })
  const index = await readSegmentIndex(bufferSource(bytes), NAME)
  const row = index.footer.frames[0]!
  const rowAt = footerOffsetOf(bytes) + FOOTER_SUMMARY_SIZE

  // Same size, re-checksummed: a byte inside the second batch's records (only its Kafka CRC knows).
  const payload = Buffer.from(bytes)
  const inSecondBatch = row.frameOffset + batches[0]!.bytes.length + Offset.records + 5
  payload[inSecondBatch]! ^= 1
  payload.writeUInt32BE(
    crc32c(payload.subarray(row.frameOffset, row.frameOffset + row.storedLength)),
    rowAt + RowField.checksum
  )
  resealFooter(payload)
  await validateSegment(bufferSource(payload), NAME)
  await assert.rejects(validateSegment(bufferSource(payload), NAME, { deep: true }), (error: BackupError) => {
    isSegmentCorrupt(0)(error)
    assert.match(error.message, /batch 1 \(base offset 5\) fails its Kafka CRC-32C/)
    return true
  })

  // A base offset changed (not covered by Kafka's CRC): the row disagrees.
  const offset = Buffer.from(bytes)
  offset.writeBigInt64BE(-1n, row.frameOffset + Offset.baseOffset)
  offset.writeUInt32BE(
    crc32c(offset.subarray(row.frameOffset, row.frameOffset + row.storedLength)),
    rowAt + RowField.checksum
  )
  resealFooter(offset)
  const offsetSource = bufferSource(offset)
  await assert.rejects(
    readFrame(offsetSource, await readSegmentIndex(offsetSource, NAME), 0),
    /frame 0: firstOffset of its batches disagrees with the index row \(expected 0, found -1\)/
  )

  // A batchLength pointing past the frame.
  const length = Buffer.from(bytes)
  length.writeInt32BE(1_000_000, row.frameOffset + Offset.batchLength)
  length.writeUInt32BE(
    crc32c(length.subarray(row.frameOffset, row.frameOffset + row.storedLength)),
    rowAt + RowField.checksum
  )
  resealFooter(length)
  const lengthSource = bufferSource(length)
  await assert.rejects(
    readFrame(lengthSource, await readSegmentIndex(lengthSource, NAME), 0),
    /frame 0: batch 0 at byte 0 has an impossible batchLength/
  )
})

test('a zstd frame that decompresses to another length than its row says is corrupt', async () => {
  const { bytes } = await writeSegment(makeBatches(4, 5), { codec: 'zstd', frameMaxBytes: 64 * 1024 })
  const footerAt = footerOffsetOf(bytes)
  for (const delta of [-1, 1]) {
    const damaged = Buffer.from(bytes)
    const at = footerAt + FOOTER_SUMMARY_SIZE + RowField.uncompressedLength
    damaged.writeUInt32BE(damaged.readUInt32BE(at) + delta, at)
    // Keep the footer's own total consistent so the row is what is wrong.
    const totalAt = footerAt + FooterField.uncompressedBytes
    damaged.writeBigInt64BE(damaged.readBigInt64BE(totalAt) + BigInt(delta), totalAt)
    resealFooter(damaged)
    await assert.rejects(readEverything(bufferSource(damaged)), isSegmentCorrupt(0))
  }
})
