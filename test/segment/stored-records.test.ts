/**
 * Segments written with `storeRecords: 'decompressed'`: compressed batches are stored with their
 * records decompressed (frame flag recordsDecompressed) and read back compressed again with their
 * own codec, the same records and header fields; damage to a stored batch is still caught.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { crc32c } from '../../src/batch/crc.ts'
import { BATCH_HEADER_SIZE, Codec, Offset, type RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords, uncompressedRecords } from '../../src/batch/records.ts'
import { type BackupError, isBackupError } from '../../src/errors.ts'
import { FOOTER_SUMMARY_SIZE, FrameFlag, RowField, TRAILER_SIZE, TrailerField } from '../../src/segment/format.ts'
import {
  bufferSource,
  readFrame,
  readSegmentBatches,
  readSegmentIndex,
  validateSegment
} from '../../src/segment/reader.ts'
import { headerFields } from '../helpers/batch-header.ts'
import { makeBatch, writeSegment } from './batches.ts'

const NAME = 'test.seg'
const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const

/** Ten batches per codec, codecs interleaved, 20 records of 200-byte JSON values each. */
function mixedBatches(): RecordBatchView[] {
  const batches: RecordBatchView[] = []
  let offset = 0n
  for (let i = 0; i < 10 * CODECS.length; i++) {
    batches.push(
      makeBatch({ baseOffset: offset, recordCount: 20, valueBytes: 200, compression: CODECS[i % 5], seed: i })
    )
    offset += 20n
  }
  return batches
}

async function readAll(bytes: Buffer, deep: boolean): Promise<RecordBatchView[]> {
  const batches: RecordBatchView[] = []
  for await (const batch of readSegmentBatches(bufferSource(bytes), NAME, { verifyBatchCrc: deep })) {
    batches.push(batch)
  }
  return batches
}

for (const frameCodec of ['zstd', 'none'] as const) {
  for (const frameMaxBytes of [64 * 1024, 1024]) {
    test(`decompressed records, ${frameCodec} frames of ${frameMaxBytes} bytes: every batch reads back with its codec, header fields and records, and a valid CRC`, async () => {
      const batches = mixedBatches()
      const { bytes, source } = await writeSegment(batches, {
        codec: frameCodec,
        frameMaxBytes,
        storeRecords: 'decompressed'
      })
      const read = await readAll(bytes, true)
      assert.equal(read.length, batches.length)
      for (const [i, batch] of read.entries()) {
        const original = batches[i]!
        assert.deepEqual(headerFields(batch), headerFields(original))
        assert.equal(batch.codec, original.codec)
        assert.ok(batch.isCrcValid(), `batch ${i} CRC`)
        assert.deepEqual(uncompressedRecords(batch), uncompressedRecords(original))
        assert.deepEqual(decodeRecords(batch), decodeRecords(original))
        if (original.codec === Codec.none) {
          assert.deepEqual(batch.bytes, original.bytes)
        }
      }
      const index = await readSegmentIndex(source, NAME)
      assert.ok(index.footer.frames.some(row => (row.flags & FrameFlag.recordsDecompressed) !== 0))
      assert.ok((index.footer.flags & FrameFlag.recordsDecompressed) !== 0)
      // Uncompressed batch bytes count the records decompressed.
      const decompressedSize = batches.reduce(
        (sum, batch) => sum + BATCH_HEADER_SIZE + uncompressedRecords(batch).length,
        0
      )
      assert.equal(index.footer.uncompressedBytes, decompressedSize)
      await validateSegment(source, NAME, { deep: true })
    })
  }
}

test('frames of uncompressed batches carry no flag and are the same bytes either way', async () => {
  const batches = mixedBatches().filter(batch => batch.codec === Codec.none)
  const asFetched = await writeSegment(batches, { storeRecords: 'as_fetched' })
  const decompressed = await writeSegment(batches, { storeRecords: 'decompressed' })
  assert.deepEqual(decompressed.bytes, asFetched.bytes)
})

test('as_fetched keeps compressed batches byte for byte', async () => {
  const batches = mixedBatches()
  const { bytes } = await writeSegment(batches, { frameMaxBytes: 256 * 1024, storeRecords: 'as_fetched' })
  const read = await readAll(bytes, true)
  assert.deepEqual(
    read.map(batch => batch.bytes),
    batches.map(batch => batch.bytes)
  )
})

function resealFooter(bytes: Buffer): void {
  const trailerAt = bytes.length - TRAILER_SIZE
  const footerOffset = Number(bytes.readBigInt64BE(trailerAt + TrailerField.footerOffset))
  bytes.writeUInt32BE(crc32c(bytes.subarray(footerOffset, trailerAt)), trailerAt + TrailerField.footerCrc)
  bytes.writeUInt32BE(
    crc32c(bytes.subarray(trailerAt, trailerAt + TrailerField.trailerCrc)),
    trailerAt + TrailerField.trailerCrc
  )
}

/** Rewrites frame 0's checksum and flags in its row after the caller changed the bytes. */
function resealFrame0(bytes: Buffer, flags?: number): void {
  const footerAt = Number(bytes.readBigInt64BE(bytes.length - TRAILER_SIZE + TrailerField.footerOffset))
  const rowAt = footerAt + FOOTER_SUMMARY_SIZE
  const frameOffset = Number(bytes.readBigInt64BE(rowAt + RowField.frameOffset))
  const storedLength = bytes.readUInt32BE(rowAt + RowField.storedLength)
  bytes.writeUInt32BE(crc32c(bytes.subarray(frameOffset, frameOffset + storedLength)), rowAt + RowField.checksum)
  if (flags !== undefined) {
    bytes.writeUInt32BE(flags, rowAt + RowField.flags)
    bytes.writeUInt32BE(flags, footerAt + 80)
  }
  resealFooter(bytes)
}

test('a stored batch changed under a valid frame checksum fails its Kafka CRC even when the reader does not ask for batch CRCs', async () => {
  const batches = [
    makeBatch({ baseOffset: 0n, recordCount: 5, compression: 'lz4' }),
    makeBatch({ baseOffset: 5n, recordCount: 5, compression: 'lz4' })
  ]
  const { bytes } = await writeSegment(batches, {
    codec: 'none',
    frameMaxBytes: 64 * 1024,
    storeRecords: 'decompressed'
  })
  const index = await readSegmentIndex(bufferSource(bytes), NAME)
  const row = index.footer.frames[0]!
  const secondAt = row.frameOffset + BATCH_HEADER_SIZE + uncompressedRecords(batches[0]!).length
  const damaged = Buffer.from(bytes)
  damaged[secondAt + Offset.records + 7]! ^= 1
  resealFrame0(damaged)
  const damagedIndex = await readSegmentIndex(bufferSource(damaged), NAME)
  await assert.rejects(readFrame(bufferSource(damaged), damagedIndex, 0), (error: BackupError) => {
    assert.ok(isBackupError(error, 'KB_SEGMENT_CORRUPT'))
    assert.match(error.message, /test\.seg: frame 0: batch 1 \(base offset 5\) fails its Kafka CRC-32C/)
    return true
  })
})

test('a frame flagged recordsDecompressed without a compressed batch is corrupt, and with the flag cleared its stored records do not pass for compressed ones', async () => {
  const plain = await writeSegment([makeBatch({ baseOffset: 0n, recordCount: 5 })], { codec: 'none' })
  const flagged = Buffer.from(plain.bytes)
  resealFrame0(flagged, FrameFlag.recordsDecompressed)
  const flaggedIndex = await readSegmentIndex(bufferSource(flagged), NAME)
  await assert.rejects(readFrame(bufferSource(flagged), flaggedIndex, 0), (error: BackupError) => {
    assert.ok(isBackupError(error, 'KB_SEGMENT_CORRUPT'))
    assert.match(error.message, /frame 0: flagged recordsDecompressed but holds no compressed batch/)
    return true
  })

  // Without the flag, the stored records would be taken for lz4 data: a reader that does not
  // know the flag (or a cleared flag) must not hand such a batch on.
  const lz4 = await writeSegment([makeBatch({ baseOffset: 0n, recordCount: 5, compression: 'lz4' })], {
    codec: 'none',
    storeRecords: 'decompressed'
  })
  const cleared = Buffer.from(lz4.bytes)
  resealFrame0(cleared, 0)
  const clearedIndex = await readSegmentIndex(bufferSource(cleared), NAME)
  const [batch] = await readFrame(bufferSource(cleared), clearedIndex, 0)
  assert.throws(
    () => decodeRecords(batch!),
    (error: BackupError) => isBackupError(error, 'KB_BATCH_CORRUPT')
  )
})
