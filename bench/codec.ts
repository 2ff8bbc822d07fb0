/**
 * Codec ceilings (`npm run bench:codec`): CRC32C, batch split, segment write and read per frame
 * codec, compression ratio, bytes allocated per MB written; plus the measurements behind two
 * choices in src/segment/codecs.ts (async vs sync zstd, lz4-napi vs the WASM lz4). Prints a
 * table and writes it into docs/benchmarks.md under "Codec ceilings".
 *
 * Env: BENCH_MB (data set size, default 128), BENCH_RUNS (runs per figure, median, default 3),
 * BENCH_NO_DOCS=1 (print only).
 */
import os from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { type Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import zlib from 'node:zlib'
import { lz4Compress as wasmLz4Compress, lz4Decompress as wasmLz4Decompress } from '@platformatic/wasm-utils'
import { compressFrame, compressFrameSync, decompressFrame, decompressFrameSync } from 'lz4-napi'
import { crc32c } from '../src/batch/crc.ts'
import { Offset, type RecordBatchView } from '../src/batch/header.ts'
import type { SegmentCodecName } from '../src/segment/format.ts'
import { FrameBufferPool } from '../src/segment/pool.ts'
import { bufferSource, readSegmentBatches } from '../src/segment/reader.ts'
import { SegmentWriter } from '../src/segment/writer.ts'
import { publishSection } from './benchmarks-doc.ts'
import { buildDataset, recordSets } from './data.ts'

const DATA_MIB = Number(process.env.BENCH_MB ?? 128)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const FRAME_BYTES = 1024 * 1024
const MB = 1e6

v8.setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function timeRuns(run: () => Promise<void> | void, warmUp = false): Promise<number> {
  if (warmUp) {
    await run()
  }
  const seconds: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now()
    await run()
    seconds.push((performance.now() - start) / 1000)
  }
  return median(seconds)
}

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

// Other processes compete for the same cores; the figures are only as quiet as the machine was.
const loadAtStart = os.loadavg()[0]!
const setupStart = performance.now()
const dataset = buildDataset(DATA_MIB)
const { batches, totalBytes } = dataset
const sets = recordSets(batches, FRAME_BYTES)
log(
  `# data: ${batches.length} batches, ${(totalBytes / MB).toFixed(1)} MB, ${dataset.recordCount} records of 1 KiB, ` +
    `${Math.round(totalBytes / batches.length / 1024)} KiB per batch (built in ${((performance.now() - setupStart) / 1000).toFixed(1)} s)`
)

// --- CRC32C and split -------------------------------------------------------------------------
const crcSeconds = await timeRuns(() => {
  for (const batch of batches) {
    crc32c(batch.bytes.subarray(Offset.attributes))
  }
}, true)
const crcGBps = totalBytes / crcSeconds / 1e9
log(`crc32c: ${crcGBps.toFixed(2)} GB/s`)

type Split = (records: Buffer, options: { verifyCrc: boolean }) => { batches: RecordBatchView[] }
let split: Split
let splitSource: string
try {
  split = (await import('../src/batch/split.ts')).splitRecordSet as Split
  splitSource = 'src/batch/split.ts splitRecordSet'
} catch {
  const { RecordBatchView: View } = await import('../src/batch/header.ts')
  splitSource = 'a 12 + batchLength loop (src/batch/split.ts absent)'
  split = records => {
    const out: RecordBatchView[] = []
    for (let at = 0; at + 12 <= records.length; ) {
      const size = 12 + records.readInt32BE(at + 8)
      out.push(new View(records.subarray(at, at + size)))
      at += size
    }
    return { batches: out }
  }
}
const splitNoCrc = await timeRuns(() => {
  for (const set of sets) {
    split(set, { verifyCrc: false })
  }
}, true)
const splitCrc = await timeRuns(() => {
  for (const set of sets) {
    split(set, { verifyCrc: true })
  }
}, true)
const splitGBps = totalBytes / splitNoCrc / 1e9
const splitCrcGBps = totalBytes / splitCrc / 1e9
log(`split: ${splitGBps.toFixed(2)} GB/s headers only, ${splitCrcGBps.toFixed(2)} GB/s with CRC (${splitSource})`)

// --- Segment write / read per codec -----------------------------------------------------------
interface CodecCase {
  label: string
  codec: SegmentCodecName
  level?: number
}
const cases: CodecCase[] = [
  { label: 'zstd 1', codec: 'zstd', level: 1 },
  { label: 'zstd 3 (default)', codec: 'zstd', level: 3 },
  { label: 'zstd 6', codec: 'zstd', level: 6 },
  { label: 'lz4', codec: 'lz4' },
  { label: 'gzip 6', codec: 'gzip', level: 6 },
  { label: 'none', codec: 'none' }
]

/**
 * Consumes `readable` the way storage does (pipeline into a Writable, flowing mode). Not
 * `for await`: its `read()` concatenates whatever is buffered, a copy a real upload never makes.
 */
function drain(readable: Readable, onChunk: (chunk: Buffer) => void): Promise<void> {
  return pipeline(
    readable,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        onChunk(chunk)
        callback()
      }
    })
  )
}

async function writeOnce(codecCase: CodecCase, keep: boolean): Promise<{ bytes: Buffer | undefined; stored: number }> {
  const writer = new SegmentWriter({
    topic: 'bench',
    partition: 0,
    name: 'bench.seg',
    codec: codecCase.codec,
    level: codecCase.level,
    frameMaxBytes: FRAME_BYTES
  })
  const chunks: Buffer[] = []
  let stored = 0
  const drained = drain(writer.readable, chunk => {
    stored += chunk.length
    if (keep) {
      chunks.push(chunk)
    }
  })
  for (const batch of batches) {
    await writer.append(batch)
  }
  await writer.finish()
  await drained
  return { bytes: keep ? Buffer.concat(chunks) : undefined, stored }
}

/**
 * Bytes allocated per MB written: the growth of the JS heap plus external (Buffer) memory
 * between forced GCs, over windows of about 4 MB of batches in which no GC ran (GCProfiler
 * says so); windows interrupted by a GC are discarded. Native memory that zlib/zstd/lz4 take
 * with malloc for their own state is not visible here.
 */
async function allocatedPerMB(codecCase: CodecCase): Promise<number> {
  const pool = new FrameBufferPool(FRAME_BYTES)
  const writer = new SegmentWriter({
    topic: 'bench',
    partition: 0,
    name: 'alloc.seg',
    codec: codecCase.codec,
    level: codecCase.level,
    frameMaxBytes: FRAME_BYTES,
    pool
  })
  // Discarded, as an upload does once sent.
  const drained = drain(writer.readable, () => {})
  const windowBytes = 4 * MB
  let allocated = 0
  let measured = 0
  let index = 0
  const limit = Math.min(batches.length, Math.ceil((64 * MB) / (totalBytes / batches.length)))
  while (index < limit) {
    gc()
    const profiler = new v8.GCProfiler()
    profiler.start()
    const before = process.memoryUsage()
    let bytes = 0
    while (index < limit && bytes < windowBytes) {
      const batch = batches[index++]!
      await writer.append(batch)
      bytes += batch.bytes.length
    }
    const after = process.memoryUsage()
    const gcs = profiler.stop()?.statistics.length ?? 0
    if (gcs === 0) {
      allocated += after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers)
      measured += bytes
    }
  }
  await writer.finish()
  await drained
  return measured === 0 ? Number.NaN : allocated / (measured / MB)
}

interface CodecRow {
  label: string
  writeMBps: number
  readMBps: number
  ratio: number
  allocatedPerMB: number
}
const rows: CodecRow[] = []
for (const codecCase of cases) {
  let segment: Buffer | undefined
  let stored = 0
  const writeSeconds = await timeRuns(async () => {
    const result = await writeOnce(codecCase, segment === undefined)
    segment ??= result.bytes
    stored = result.stored
  })
  const source = bufferSource(segment!)
  let readBytes = 0
  const readSeconds = await timeRuns(async () => {
    readBytes = 0
    for await (const batch of readSegmentBatches(source, 'bench.seg')) {
      readBytes += batch.bytes.length
    }
  })
  if (readBytes !== totalBytes) {
    throw new Error(`read ${readBytes} bytes back, wrote ${totalBytes}`)
  }
  const row: CodecRow = {
    label: codecCase.label,
    writeMBps: totalBytes / MB / writeSeconds,
    readMBps: totalBytes / MB / readSeconds,
    ratio: totalBytes / stored,
    allocatedPerMB: await allocatedPerMB(codecCase)
  }
  rows.push(row)
  log(
    `${row.label}: write ${row.writeMBps.toFixed(0)} MB/s, read ${row.readMBps.toFixed(0)} MB/s, ratio ${row.ratio.toFixed(2)}, ` +
      `${(row.allocatedPerMB / 1024).toFixed(0)} KiB allocated per MB written`
  )
}

// --- Async vs sync zstd, parallel partitions --------------------------------------------------
const zstdCompress = promisify(zlib.zstdCompress)
const frames: Buffer[] = []
const whole = Buffer.concat(
  batches.slice(0, Math.min(batches.length, Math.ceil((64 * MB) / (totalBytes / batches.length)))).map(b => b.bytes)
)
for (let at = 0; at < whole.length; at += FRAME_BYTES) {
  frames.push(whole.subarray(at, at + FRAME_BYTES))
}
const zstdDecompress = promisify(zlib.zstdDecompress)
const level3 = { [zlib.constants.ZSTD_c_compressionLevel]: 3 }
const zstdFrames = frames.map(frame => zlib.zstdCompressSync(frame, { params: level3 }))

interface LoopResult {
  MBps: number
  maxBlockMs: number
}
async function withLoopDelay(run: () => Promise<void>): Promise<LoopResult> {
  const results: LoopResult[] = []
  for (let i = 0; i < RUNS; i++) {
    const histogram = monitorEventLoopDelay({ resolution: 1 })
    histogram.enable()
    const start = performance.now()
    await run()
    const seconds = (performance.now() - start) / 1000
    histogram.disable()
    results.push({ MBps: whole.length / MB / seconds, maxBlockMs: histogram.max / 1e6 })
  }
  return { MBps: median(results.map(r => r.MBps)), maxBlockMs: median(results.map(r => r.maxBlockMs)) }
}

/** `streams` frames in flight at once, as that many partitions' writers would have. */
async function concurrently(streams: number, items: Buffer[], work: (item: Buffer) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: streams }, async () => {
      while (next < items.length) {
        await work(items[next++]!)
      }
    })
  )
}

const asyncRows: Array<[string, LoopResult]> = []
asyncRows.push([
  'compress: zstdCompressSync',
  await withLoopDelay(async () => {
    for (const frame of frames) {
      zlib.zstdCompressSync(frame, { params: level3 })
      await new Promise(setImmediate)
    }
  })
])
asyncRows.push([
  'compress: zstdCompress, default chunkSize (16 KiB)',
  await withLoopDelay(() => concurrently(1, frames, frame => zstdCompress(frame, { params: level3 })))
])
for (const streams of [1, 2, 4]) {
  asyncRows.push([
    `compress: zstdCompress, chunkSize 256 KiB (ours), ${streams} in flight`,
    await withLoopDelay(() =>
      concurrently(streams, frames, frame => zstdCompress(frame, { params: level3, chunkSize: 256 * 1024 }))
    )
  ])
}
asyncRows.push([
  'decompress: zstdDecompressSync',
  await withLoopDelay(async () => {
    for (const stored of zstdFrames) {
      zlib.zstdDecompressSync(stored)
      await new Promise(setImmediate)
    }
  })
])
asyncRows.push([
  'decompress: zstdDecompress, default chunkSize (16 KiB)',
  await withLoopDelay(() => concurrently(1, zstdFrames, stored => zstdDecompress(stored)))
])
asyncRows.push([
  'decompress: zstdDecompress, chunkSize = frame length (ours)',
  await withLoopDelay(() =>
    concurrently(1, zstdFrames, stored => zstdDecompress(stored, { chunkSize: FRAME_BYTES + 1024 }))
  )
])
for (const [label, result] of asyncRows) {
  log(`${label}: ${result.MBps.toFixed(0)} MB/s, event loop blocked up to ${result.maxBlockMs.toFixed(1)} ms`)
}

// --- lz4: lz4-napi (native) vs @platformatic/wasm-utils (WASM) --------------------------------
const lz4Compressed = frames.map(frame => compressFrameSync(frame))
const lz4Cases: Array<[string, () => Promise<void> | void]> = [
  [
    'lz4-napi compressFrame (async)',
    async () => {
      await Promise.all(
        [0, 1].map(async lane => {
          for (let i = lane; i < frames.length; i += 2) {
            await compressFrame(frames[i]!)
          }
        })
      )
    }
  ],
  [
    'lz4-napi compressFrameSync',
    () => {
      for (const frame of frames) {
        compressFrameSync(frame)
      }
    }
  ],
  [
    'WASM lz4Compress (sync)',
    () => {
      for (const frame of frames) {
        wasmLz4Compress(frame)
      }
    }
  ],
  [
    'lz4-napi decompressFrame (async)',
    async () => {
      for (const stored of lz4Compressed) {
        await decompressFrame(stored)
      }
    }
  ],
  [
    'lz4-napi decompressFrameSync',
    () => {
      for (const stored of lz4Compressed) {
        decompressFrameSync(stored)
      }
    }
  ],
  [
    'WASM lz4Decompress (sync)',
    () => {
      for (const stored of lz4Compressed) {
        wasmLz4Decompress(stored)
      }
    }
  ]
]
const lz4Rows: Array<[string, number]> = []
for (const [label, run] of lz4Cases) {
  const seconds = await timeRuns(run)
  lz4Rows.push([label, whole.length / MB / seconds])
  log(`${label}: ${(whole.length / MB / seconds).toFixed(0)} MB/s`)
}
const wasmRatio = whole.length / frames.reduce((sum, frame) => sum + wasmLz4Compress(frame).length, 0)
const napiRatio = whole.length / lz4Compressed.reduce((sum, stored) => sum + stored.length, 0)

// --- Report -----------------------------------------------------------------------------------
const cpus = os.cpus()
const machine = `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.platform()} ${os.release()}, Node ${process.version}, UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, 1-minute load average ${loadAtStart.toFixed(1)} at start (${os.loadavg()[0]!.toFixed(1)} at the end)`
const fmt = (value: number, digits = 0) => value.toFixed(digits)
const lines = [
  '## Codec ceilings',
  '',
  `Command: \`npm run bench:codec\` (bench/codec.ts; BENCH_MB=${DATA_MIB}, BENCH_RUNS=${RUNS}, median of ${RUNS} runs).`,
  `Machine: ${machine}.`,
  `Data: ${fmt(totalBytes / MB, 1)} MB in ${batches.length} uncompressed RecordBatches of about ${Math.round(totalBytes / batches.length / 1024)} KiB (31 records of 1 KiB JSON-like events each); segments with 1 MiB frames, one writer (one partition), segment bytes kept in memory (no disk, no network).`,
  '',
  '| step | throughput |',
  '|---|---|',
  `| CRC32C (src/batch/crc.ts, per batch) | ${fmt(crcGBps, 2)} GB/s |`,
  `| split a record set, headers only | ${fmt(splitGBps, 2)} GB/s |`,
  `| split a record set, with CRC32C of every batch | ${fmt(splitCrcGBps, 2)} GB/s |`,
  '',
  '| frame codec | write MB/s | read MB/s | ratio | allocated per MB written |',
  '|---|---|---|---|---|',
  ...rows.map(
    row =>
      `| ${row.label} | ${fmt(row.writeMBps)} | ${fmt(row.readMBps)} | ${fmt(row.ratio, 2)} | ${fmt(row.allocatedPerMB / 1024)} KiB |`
  ),
  '',
  'MB/s count uncompressed batch bytes (what the fetcher hands over, what the producer receives). Write = append every',
  'batch, compress and stream out the segment; read = range-read every frame, verify its checksum, decompress, split',
  'into batch views (the next frame prefetched). Allocated per MB written = JS heap plus Buffer memory between forced',
  'GCs (process.memoryUsage heapUsed + arrayBuffers), over windows of 4 MB without a GC; the segment is consumed',
  'by a pipeline into a Writable, as storage does. What remains is the stored frame handed to the stream (1/ratio MB',
  "per MB; for zlib codecs twice: zlib's 256 KiB output chunk, then the copy that joins it) and ~50 KiB of JS",
  'objects (promises, BigInt header fields); frame buffers come from the pool and are reused. Not visible to this',
  "method: native codec state (zstd/zlib contexts, malloc) and lz4-napi's output buffers (native, so its row shows",
  'only JS objects; its real output allocation is 1/ratio MB per MB like the others).',
  '',
  `Async vs sync zstd level 3 on 1 MiB frames (${fmt(whole.length / MB, 0)} MB); "in flight" = frames compressed concurrently, as by that many partitions' writers; event-loop block = longest delay seen by monitorEventLoopDelay (median over runs):`,
  '',
  '| how | MB/s (uncompressed) | longest event-loop block |',
  '|---|---|---|',
  ...asyncRows.map(([label, result]) => `| ${label} | ${fmt(result.MBps)} | ${fmt(result.maxBlockMs, 1)} ms |`),
  '',
  `LZ4 frame format, same 1 MiB frames (ratio: lz4-napi ${fmt(napiRatio, 2)}, WASM ${fmt(wasmRatio, 2)}):`,
  '',
  '| implementation | MB/s |',
  '|---|---|',
  ...lz4Rows.map(([label, MBps]) => `| ${label} | ${fmt(MBps)} |`),
  ''
]
publishSection(lines[0]!, lines.join('\n'), line => log(`# ${line}`))
