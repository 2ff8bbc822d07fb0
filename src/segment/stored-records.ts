/**
 * Batches stored with their records decompressed (`backup.store_records: decompressed`; the
 * frame flag `recordsDecompressed`, docs/segment-format.md "Frames"). A producer's lz4, snappy
 * or gzip block hardly compresses again, so a frame codec that sees the records themselves
 * stores a quarter less on lz4 and snappy topics (docs/benchmarks.md, "Stored bytes on
 * compressed topics"). The batch header stays as fetched (offsets, timestamps, producer fields,
 * attributes with their codec); only batchLength and the CRC are set for the stored bytes, so
 * the Kafka CRC still guards the batch in storage. Reading compresses the records again with
 * the batch's codec: the records come back identical, the compressed bytes need not.
 */
import { crc32c } from '../batch/crc.ts'
import { BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, Codec, Offset, RecordBatchView } from '../batch/header.ts'
import { compressRecordsOffThread, decompressRecords, decompressRecordsOffThread } from '../batch/records.ts'
import { BackupError } from '../errors.ts'
import { corrupt } from './format.ts'

/**
 * The batch's records decompressed, or undefined when it has no codec (it is stored as fetched).
 * Synchronous, as is compressing them again: per batch of ~50 KiB, a call on the libuv pool
 * (node:zlib, lz4-napi) cost 1.5 to 4 times the CPU of the synchronous one (bench/recompress.ts).
 */
export function decompressedRecords(batch: RecordBatchView): Buffer | undefined {
  const codec = batch.codec
  return codec === Codec.none ? undefined : decompressRecords(codec, batch.records, batch.baseOffset)
}

/**
 * Writes `batch`'s header followed by `records` at `target[at..]`, with batchLength and CRC for
 * those bytes; returns the size written.
 */
export function writeWithRecords(batch: RecordBatchView, records: Buffer, target: Buffer, at: number): number {
  const size = BATCH_HEADER_SIZE + records.length
  batch.bytes.copy(target, at, 0, BATCH_HEADER_SIZE)
  records.copy(target, at + BATCH_HEADER_SIZE)
  target.writeInt32BE(size - BATCH_LOG_OVERHEAD, at + Offset.batchLength)
  target.writeUInt32BE(crc32c(target.subarray(at + Offset.attributes, at + size)), at + Offset.crc)
  return size
}

/**
 * The stored batch as Kafka holds it: records compressed again with the batch's codec,
 * batchLength and CRC for the new bytes. The stored CRC is checked first (unless the frame's
 * reader just did, `crcChecked`), since a fresh CRC would otherwise make altered bytes look
 * sound, and the new records must decompress to the stored ones before the batch is handed on.
 */
export async function compressedAgain(
  stored: RecordBatchView,
  segment: string,
  frame: number,
  position: number,
  options: { crcChecked: boolean }
): Promise<RecordBatchView> {
  const crc = options.crcChecked ? stored.crc : stored.computeCrc()
  if (crc !== stored.crc) {
    throw corrupt(
      segment,
      'frame',
      frame,
      `batch ${position} (base offset ${stored.baseOffset}) fails its Kafka CRC-32C`,
      stored.crc,
      crc
    )
  }
  const codec = stored.codec
  const records = stored.records
  const compressed = await compressRecordsOffThread(codec, records)
  if (!(await decompressRecordsOffThread(codec, compressed, stored.baseOffset)).equals(records)) {
    throw new BackupError(
      'KB_BATCH_CORRUPT',
      `segment ${segment}: frame ${frame}: batch ${position} (base offset ${stored.baseOffset}) compressed again does not give back its stored records (expected ${records.length} record bytes)`,
      {
        segment,
        frame,
        baseOffset: stored.baseOffset,
        field: 'records',
        expected: records.length,
        found: 'other bytes'
      }
    )
  }
  const bytes = Buffer.allocUnsafe(BATCH_HEADER_SIZE + compressed.length)
  writeWithRecords(stored, compressed, bytes, 0)
  return new RecordBatchView(bytes)
}
