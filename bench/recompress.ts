/**
 * Goal 4 of the benchmarks (stored bytes no larger than OSO's on lz4/snappy/gzip topics), both
 * ways, without a broker: `node bench/recompress.ts` (BENCH_MB [64], BENCH_RECORDS_PER_BATCH [50],
 * about 50 KiB batches like the lz4 producer batches of the end-to-end benchmark).
 *
 * - as stored today: the producer's compressed batches, framed into 1 MiB zstd-3 frames;
 * - decompressed: the same batches with their records decompressed, framed the same way, which
 *   backup would have to do per batch (decompress) and restore undo (compress with the batch's
 *   codec, new CRC).
 * Prints stored bytes of both and the CPU cost of each step, in MB of uncompressed record bytes
 * per CPU second (one core). The "producer" batches here come from our own compressors, so
 * "compressed again = the original bytes" holds for them; a Java producer's lz4/snappy/gzip output
 * is not compared here.
 */
import { constants as zlibConstants, zstdCompressSync } from 'node:zlib'
import { BATCH_HEADER_SIZE, Codec, type CodecId } from '../src/batch/header.ts'
import { compressRecords, uncompressedRecords } from '../src/batch/records.ts'
import { reencodeContiguous } from '../src/batch/rewrite.ts'
import { buildDataset } from './data.ts'

const totalMiB = Number(process.env.BENCH_MB ?? 64)
const recordsPerBatch = Number(process.env.BENCH_RECORDS_PER_BATCH ?? 50)
const FRAME_BYTES = 1024 * 1024
const MB = 1e6

/** Bytes after cutting `buffers` into 1 MiB frames and compressing each with zstd level 3. */
function zstdFramed(buffers: readonly Buffer[]): number {
  let stored = 0
  let frame: Buffer[] = []
  let size = 0
  const flush = () => {
    if (size > 0) {
      stored += zstdCompressSync(Buffer.concat(frame, size), {
        params: { [zlibConstants.ZSTD_c_compressionLevel]: 3 }
      }).length
    }
    frame = []
    size = 0
  }
  for (const buffer of buffers) {
    frame.push(buffer)
    size += buffer.length
    if (size >= FRAME_BYTES) {
      flush()
    }
  }
  flush()
  return stored
}

/** CPU time (user + system) of `work`: on a shared machine it varies far less than wall time. */
function timed<T>(work: () => T): { result: T; ms: number } {
  const before = process.cpuUsage()
  const result = work()
  const used = process.cpuUsage(before)
  return { result, ms: (used.user + used.system) / 1000 }
}

const dataset = buildDataset(totalMiB, recordsPerBatch)
const recordBytes = dataset.batches.reduce((sum, batch) => sum + uncompressedRecords(batch).length, 0)
const rows: string[] = []
for (const [name, codec] of [
  ['lz4', Codec.lz4],
  ['snappy', Codec.snappy],
  ['gzip', Codec.gzip]
] as Array<[string, CodecId]>) {
  // The topic as a producer with this codec wrote it.
  const compressed = dataset.batches.map(batch => reencodeContiguous(batch, { codec }))
  const topicBytes = compressed.reduce((sum, batch) => sum + batch.bytes.length, 0)
  const framedToday = timed(() => zstdFramed(compressed.map(batch => batch.bytes)))
  // Backup: decompress each batch's records; header + records stay one buffer per batch.
  const decompress = timed(() => compressed.map(batch => uncompressedRecords(batch)))
  const withRecords = compressed.map((batch, i) =>
    Buffer.concat([batch.bytes.subarray(0, BATCH_HEADER_SIZE), decompress.result[i]!])
  )
  const framedDecompressed = timed(() => zstdFramed(withRecords))
  const [storedToday, storedDecompressed] = [framedToday.result, framedDecompressed.result]
  // Restore: compress the records again with the batch's codec (the CRC follows).
  const recompress = timed(() => decompress.result.map(records => compressRecords(codec, records)))
  const same = recompress.result.every((records, i) => {
    const original = compressed[i]!
    return records.equals(original.bytes.subarray(BATCH_HEADER_SIZE))
  })
  const rate = (ms: number) => `${(recordBytes / MB / (ms / 1000)).toFixed(0)} MB/s`
  rows.push(
    `| ${name} | ${(topicBytes / MB).toFixed(1)} MB | ${(storedToday / MB).toFixed(1)} MB | ${(storedDecompressed / MB).toFixed(1)} MB | ${((1 - storedDecompressed / storedToday) * 100).toFixed(0)}% | ${rate(framedToday.ms)} / ${rate(framedDecompressed.ms)} | ${rate(decompress.ms)} | ${rate(recompress.ms)} | ${same ? 'yes' : 'no'} |`
  )
}

process.stdout.write(
  [
    `Data: ${dataset.batches.length} batches of ${recordsPerBatch} records (bench/data.ts), ${(recordBytes / MB).toFixed(1)} MB of records uncompressed.`,
    '',
    '| producer codec | topic batches | stored today (zstd-3 frames of the batches) | stored with records decompressed | saved | backup: zstd-3 framing today / decompressed | backup: decompress | restore: compress again | compressed again = the original bytes |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    ''
  ].join('\n')
)
