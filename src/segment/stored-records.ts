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
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { compressFrame as lz4CompressFrame, decompressFrame as lz4DecompressFrame } from 'lz4-napi'
import { crc32c } from '../batch/crc.ts'
import { BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, Codec, Offset, RecordBatchView } from '../batch/header.ts'
import { compressRecords, decompressRecords } from '../batch/records.ts'
import { BackupError } from '../errors.ts'
import { corrupt } from './format.ts'

const gzip = promisify(zlib.gzip)
const gunzip = promisify(zlib.gunzip)
const zstdCompress = promisify(zlib.zstdCompress)
const zstdDecompress = promisify(zlib.zstdDecompress)

/**
 * compressRecords and decompressRecords (batch/records.ts) on the libuv pool where the codec
 * allows (gzip, zstd: node:zlib; lz4: lz4-napi), with the same settings and so the same bytes,
 * so that a frame's batches (de)compress beside the event loop and each other. Snappy is WASM
 * and stays synchronous. A failure is reported by the synchronous call, which names the batch.
 */
async function onPool(work: () => Promise<Buffer>, sync: () => Buffer): Promise<Buffer> {
  try {
    return await work()
  } catch {
    return sync()
  }
}

function decompressAsync(codec: number, data: Buffer, baseOffset: bigint): Promise<Buffer> {
  const sync = () => decompressRecords(codec, data, baseOffset)
  switch (codec) {
    case Codec.gzip:
      return onPool(() => gunzip(data), sync)
    case Codec.lz4:
      return onPool(() => lz4DecompressFrame(data), sync)
    case Codec.zstd:
      return onPool(() => zstdDecompress(data), sync)
  }
  return Promise.resolve().then(sync)
}

function compressAsync(codec: number, data: Buffer): Promise<Buffer> {
  const sync = () => compressRecords(codec, data)
  switch (codec) {
    case Codec.gzip:
      return onPool(() => gzip(data), sync)
    case Codec.lz4:
      return onPool(() => lz4CompressFrame(data), sync)
    case Codec.zstd:
      return onPool(() => zstdCompress(data), sync)
  }
  return Promise.resolve().then(sync)
}

/** The batch's records decompressed, or undefined when it has no codec (it is stored as fetched). */
export async function decompressedRecords(batch: RecordBatchView): Promise<Buffer | undefined> {
  const codec = batch.codec
  return codec === Codec.none ? undefined : decompressAsync(codec, batch.records, batch.baseOffset)
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
 * batchLength and CRC for the new bytes. The stored CRC is checked first, since a fresh CRC
 * would otherwise make altered bytes look sound, and the new records must decompress to the
 * stored ones before the batch is handed on.
 */
export async function compressedAgain(
  stored: RecordBatchView,
  segment: string,
  frame: number,
  position: number
): Promise<RecordBatchView> {
  const crc = stored.computeCrc()
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
  const compressed = await compressAsync(codec, records)
  if (!(await decompressAsync(codec, compressed, stored.baseOffset)).equals(records)) {
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
