/**
 * Where stored bytes go (goal 4), without a broker: the same records laid out as our segments
 * hold them (RecordBatches, zstd-3 frames) and as OSO's do (its per-record layout, one zstd-3
 * stream per segment), so that a difference in stored size can be put down to the layout or to
 * the compression window. `node bench/stored-layout.ts` (BENCH_MB [32] per data set).
 *
 * OSO's layout, from its segment format: per record u32 length, i64 timestamp, i64 offset, i32
 * key length, key, i32 value length, value, u16 header count (and headers), little-endian; a
 * segment is one zstd stream of those records (the streaming encoder, so no content size and
 * level 3's 2 MiB window). Ours keeps the batches whole (header fields, varint records).
 *
 * Data sets as in bench/stored-size.ts: keyed events (every value different) and payload lines
 * (one of 20,000 distinct 1 KiB lines per record, as ProducerPerformance sends them).
 */
import zlib from 'node:zlib'
import { createRecordsBatch } from '@platformatic/kafka'
import { Offset, RecordBatchView } from '../src/batch/header.ts'
import { iterateRecords, recordOffset, recordTimestamp } from '../src/batch/records.ts'
import { zstdWindowLog } from '../src/segment/codecs.ts'
import { buildDataset, jsonEvent, mulberry32 } from './data.ts'
import { markdownTable } from './stats.ts'

const totalMiB = Number(process.env.BENCH_MB ?? 32)
const MiB = 1024 * 1024
const MB = 1e6
const { constants } = zlib

function zstd(bytes: Buffer, params: Record<number, number> = {}): number {
  return zlib.zstdCompressSync(bytes, { params: { [constants.ZSTD_c_compressionLevel]: 3, ...params } }).length
}

/** Bytes of `batches` stored in frames of up to `frameBytes` (whole batches), zstd-3 each. */
function framed(batches: Buffer[], frameBytes: number, windowCoversFrame: boolean): number {
  let stored = 0
  let frame: Buffer[] = []
  let size = 0
  const flush = () => {
    const bytes = Buffer.concat(frame)
    stored += zstd(bytes, windowCoversFrame ? { [constants.ZSTD_c_windowLog]: zstdWindowLog(bytes.length) } : {})
    frame = []
    size = 0
  }
  for (const batch of batches) {
    if (size + batch.length > frameBytes && frame.length > 0) {
      flush()
    }
    frame.push(batch)
    size += batch.length
  }
  if (frame.length > 0) {
    flush()
  }
  return stored
}

function osoLayout(batches: RecordBatchView[]): Buffer {
  const records: Buffer[] = []
  for (const batch of batches) {
    for (const record of iterateRecords(batch)) {
      const keyLength = record.key?.length ?? 0
      const valueLength = record.value?.length ?? 0
      const bytes = Buffer.alloc(4 + 30 + keyLength + valueLength)
      bytes.writeUInt32LE(30 + keyLength + valueLength, 0)
      bytes.writeBigInt64LE(recordTimestamp(batch, record), 4)
      bytes.writeBigInt64LE(recordOffset(batch, record), 12)
      bytes.writeInt32LE(record.key ? keyLength : -1, 20)
      record.key?.copy(bytes, 24)
      bytes.writeInt32LE(record.value ? valueLength : -1, 24 + keyLength)
      record.value?.copy(bytes, 28 + keyLength)
      // No headers in these data sets: a u16 count of 0.
      records.push(bytes)
    }
  }
  return Buffer.concat(records)
}

function payloadLines(recordsPerBatch: number): RecordBatchView[] {
  const random = mulberry32(42)
  const lines = Array.from({ length: 20_000 }, (_, i) => jsonEvent(random, i, 1024))
  const pick = mulberry32(7)
  const batches: RecordBatchView[] = []
  for (let offset = 0, total = 0; total < totalMiB * MiB; offset += recordsPerBatch) {
    const messages = Array.from({ length: recordsPerBatch }, (_, i) => ({
      topic: 'bench',
      value: lines[Math.floor(pick() * lines.length)]!,
      timestamp: BigInt(1_700_000_000_000 + (offset + i) * 37)
    }))
    const bytes = Buffer.from(createRecordsBatch(messages, { compression: 'none' }).buffer)
    bytes.writeBigInt64BE(BigInt(offset), Offset.baseOffset)
    batches.push(new RecordBatchView(bytes))
    total += bytes.length
  }
  return batches
}

const rows: string[][] = []
for (const [name, batches] of [
  ['keyed events', buildDataset(totalMiB, 50).batches],
  ['payload lines', payloadLines(64)]
] as Array<[string, RecordBatchView[]]>) {
  const ours = batches.map(batch => batch.bytes)
  const oso = osoLayout(batches)
  // OSO's layout cut into 1 MiB frames: what the layout alone costs with our framing.
  let osoFramed = 0
  for (let at = 0; at < oso.length; at += MiB) {
    osoFramed += zstd(oso.subarray(at, at + MiB))
  }
  const cells = [
    Buffer.concat(ours).length,
    oso.length,
    zstd(oso),
    framed(ours, MiB, false),
    framed(ours, 2 * MiB, true),
    framed(ours, 3 * MiB, true),
    framed(ours, 4 * MiB, false),
    framed(ours, 4 * MiB, true),
    zstd(Buffer.concat(ours)),
    osoFramed
  ]
  rows.push([name, ...cells.map(bytes => (bytes / MB).toFixed(2))])
}

process.stdout.write(
  [
    `Data: ${totalMiB} MiB of 1 KiB values per data set; zstd level 3; sizes in MB.`,
    '',
    ...markdownTable(
      [
        'data',
        'batches (ours, raw)',
        'OSO layout (raw)',
        'OSO layout, one stream (OSO)',
        'ours, 1 MiB frames',
        'ours, 2 MiB frames',
        'ours, 3 MiB frames',
        'ours, 4 MiB frames, 2 MiB window',
        'ours, 4 MiB frames, window = frame',
        'ours, one stream',
        'OSO layout, 1 MiB frames'
      ],
      rows
    ),
    ''
  ].join('\n')
)
