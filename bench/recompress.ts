/**
 * Goal 4 of the benchmarks (stored bytes no larger than OSO's on lz4/snappy/gzip topics): the
 * segment writer and reader with `store_records` as_fetched and decompressed, without a broker:
 * `node bench/recompress.ts` (BENCH_MB [64], BENCH_RECORDS_PER_BATCH [50], about 50 KiB batches
 * like the lz4 producer batches of the end-to-end benchmark; BENCH_LEVEL [3], the zstd level of
 * the frames; BENCH_FRAME_MB [4], the frame size, the config's default).
 *
 * Per producer codec: stored bytes both ways, and CPU seconds (user + system of the process, so
 * the libuv pool's compression counts too) to write the segment (backup side) and to read it back
 * with every batch CRC checked (restore side; decompressed: records compressed again with the
 * batch's codec and checked to decompress to the stored ones). Rates are MB of uncompressed
 * record bytes per CPU second. The "producer" batches come from our own compressors; a Java
 * producer's lz4/snappy/gzip bytes would compress again to other bytes (same records).
 */
import { Codec, type CodecId, type RecordBatchView } from '../src/batch/header.ts'
import { uncompressedRecords } from '../src/batch/records.ts'
import { reencodeContiguous } from '../src/batch/rewrite.ts'
import { bufferSource, readSegmentBatches } from '../src/segment/reader.ts'
import { SegmentWriter, type StoreRecords } from '../src/segment/writer.ts'
import { buildDataset } from './data.ts'

const totalMiB = Number(process.env.BENCH_MB ?? 64)
const recordsPerBatch = Number(process.env.BENCH_RECORDS_PER_BATCH ?? 50)
const level = Number(process.env.BENCH_LEVEL ?? 3)
const FRAME_BYTES = Number(process.env.BENCH_FRAME_MB ?? 4) * 1024 * 1024
const MB = 1e6

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1000
}

async function write(batches: readonly RecordBatchView[], storeRecords: StoreRecords) {
  const started = process.cpuUsage()
  const writer = new SegmentWriter({
    topic: 'bench',
    partition: 0,
    name: 'bench.seg',
    codec: 'zstd',
    level,
    frameMaxBytes: FRAME_BYTES,
    storeRecords
  })
  const chunks: Buffer[] = []
  const drained = (async () => {
    for await (const chunk of writer.readable) {
      chunks.push(chunk as Buffer)
    }
  })()
  for (const batch of batches) {
    await writer.append(batch)
  }
  await writer.finish()
  await drained
  return { bytes: Buffer.concat(chunks), ms: cpuMs(started) }
}

async function read(segment: Buffer) {
  const started = process.cpuUsage()
  const batches: RecordBatchView[] = []
  for await (const batch of readSegmentBatches(bufferSource(segment), 'bench.seg', { verifyBatchCrc: true })) {
    batches.push(batch)
  }
  return { batches, ms: cpuMs(started) }
}

const dataset = buildDataset(totalMiB, recordsPerBatch)
const recordBytes = dataset.batches.reduce((sum, batch) => sum + uncompressedRecords(batch).length, 0)
const rate = (ms: number) => `${(recordBytes / MB / (ms / 1000)).toFixed(0)}`
const rows: string[] = []
for (const [name, codec] of [
  ['none', Codec.none],
  ['lz4', Codec.lz4],
  ['snappy', Codec.snappy],
  ['gzip', Codec.gzip],
  ['zstd', Codec.zstd]
] as Array<[string, CodecId]>) {
  // The topic as a producer with this codec wrote it.
  const topic = dataset.batches.map(batch => (codec === Codec.none ? batch : reencodeContiguous(batch, { codec })))
  const topicBytes = topic.reduce((sum, batch) => sum + batch.bytes.length, 0)
  const fetched = await write(topic, 'as_fetched')
  const decompressed = await write(topic, 'decompressed')
  const fetchedBack = await read(fetched.bytes)
  const decompressedBack = await read(decompressed.bytes)
  const same = decompressedBack.batches.every((batch, i) => batch.bytes.equals(topic[i]!.bytes))
  rows.push(
    `| ${name} | ${(topicBytes / MB).toFixed(1)} MB | ${(fetched.bytes.length / MB).toFixed(1)} MB | ${(decompressed.bytes.length / MB).toFixed(1)} MB | ${((1 - decompressed.bytes.length / fetched.bytes.length) * 100).toFixed(0)}% | ${rate(fetched.ms)} / ${rate(decompressed.ms)} | ${rate(fetchedBack.ms)} / ${rate(decompressedBack.ms)} | ${same ? 'yes' : 'no'} |`
  )
}

process.stdout.write(
  [
    `Data: ${dataset.batches.length} batches of ${recordsPerBatch} records (bench/data.ts), ${(recordBytes / MB).toFixed(1)} MB of records uncompressed; zstd-${level} frames of ${FRAME_BYTES / 1024 / 1024} MiB.`,
    '',
    '| producer codec | topic batches | stored as_fetched | stored decompressed | saved | backup MB/s per CPU s, as_fetched / decompressed | restore read MB/s per CPU s, as_fetched / decompressed | read back = the topic bytes |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    ''
  ].join('\n')
)
