/**
 * S3 backend throughput against the local SeaweedFS (`node bench/storage-s3.ts`): upload of a
 * streamed object as a multipart upload with 1, 4 and 10 parts in flight
 * (max_concurrent_uploads), and download of it by ranged GETs of one part each with 1, 4 and 10
 * in flight (as a restore's read-ahead does), plus the process's peak RSS during each upload,
 * which the part buffers bound (see src/storage/s3.ts).
 *
 * Client and server share this machine's cores, so the figures are a floor for the backend,
 * not a measure of S3. Env: BENCH_MB (object size, default 256), BENCH_RUNS (median of, default 3),
 * BENCH_PART_MB (part size, default 10).
 */
import { createHash, randomBytes } from 'node:crypto'
import os from 'node:os'
import { Readable } from 'node:stream'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startS3Server, stopObjectServer } from '../scripts/object-servers/servers.ts'
import { S3Storage } from '../src/storage/s3.ts'

const MiB = 1024 * 1024
const MB = 1e6
const OBJECT_BYTES = Number(process.env.BENCH_MB ?? 256) * MiB
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PART_BYTES = Number(process.env.BENCH_PART_MB ?? 10) * MiB
const CONCURRENCY = [1, 4, 10]

v8.setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Incompressible bytes, made once; the object is slices of them so that making it costs nothing. */
const pool = randomBytes(16 * MiB + 4093)

function objectStream(size: number): Readable {
  const chunk = 1 * MiB
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < size; offset += chunk) {
        const at = offset % (pool.length - chunk)
        yield pool.subarray(at, at + Math.min(chunk, size - offset))
      }
    })(),
    { objectMode: false }
  )
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** Runs `work` while sampling RSS every 20 ms; returns seconds and the peak RSS seen. */
async function measure(work: () => Promise<void>): Promise<{ seconds: number; peakRss: number }> {
  let peakRss = process.memoryUsage.rss()
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
  }, 20)
  const startedAt = performance.now()
  try {
    await work()
  } finally {
    clearInterval(sampler)
  }
  return { seconds: (performance.now() - startedAt) / 1000, peakRss: Math.max(peakRss, process.memoryUsage.rss()) }
}

async function downloadByRanges(storage: S3Storage, key: string, size: number, inFlight: number): Promise<string> {
  const hash = createHash('sha256')
  const ranges: { offset: number; length: number }[] = []
  for (let offset = 0; offset < size; offset += PART_BYTES) {
    ranges.push({ offset, length: Math.min(PART_BYTES, size - offset) })
  }
  // A window of `inFlight` reads, consumed in order, as the segment reader's read-ahead does.
  const pending: Promise<Buffer>[] = []
  let next = 0
  while (next < ranges.length && pending.length < inFlight) {
    const { offset, length } = ranges[next++]!
    pending.push(storage.getRange(key, offset, length))
  }
  while (pending.length > 0) {
    hash.update(await pending.shift()!)
    if (next < ranges.length) {
      const { offset, length } = ranges[next++]!
      pending.push(storage.getRange(key, offset, length))
    }
  }
  return hash.digest('hex')
}

const server = await startS3Server()
try {
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3')
  const admin = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKey, secretAccessKey: server.secretKey }
  })
  const bucket = `bench-${Date.now()}`
  await admin.send(new CreateBucketCommand({ Bucket: bucket }))
  admin.destroy()

  const expectedHash = createHash('sha256')
  for await (const chunk of objectStream(OBJECT_BYTES)) expectedHash.update(chunk as Buffer)
  const expected = expectedHash.digest('hex')

  console.log(
    `# S3 backend vs SeaweedFS on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ` +
      `object ${OBJECT_BYTES / MiB} MiB, parts ${PART_BYTES / MiB} MiB, median of ${RUNS}, MB = 10^6 bytes`
  )
  gc()
  console.log(`# RSS before the first upload: ${(process.memoryUsage.rss() / MiB).toFixed(0)} MiB`)
  console.log('| parts in flight | upload MB/s | download MB/s | peak RSS during upload |')
  console.log('|---|---|---|---|')
  for (const inFlight of CONCURRENCY) {
    const storage = new S3Storage({
      bucket,
      endpoint: server.endpoint,
      region: server.region,
      accessKey: server.accessKey,
      secretKey: server.secretKey,
      forcePathStyle: true,
      multipartThreshold: PART_BYTES,
      multipartPartSize: PART_BYTES,
      maxConcurrentUploads: inFlight
    })
    const uploads: number[] = []
    const downloads: number[] = []
    let peakRss = 0
    for (let run = 0; run < RUNS; run++) {
      const key = `c${inFlight}/run-${run}.seg`
      gc()
      const upload = await measure(() => storage.put(key, objectStream(OBJECT_BYTES)))
      uploads.push(OBJECT_BYTES / MB / upload.seconds)
      peakRss = Math.max(peakRss, upload.peakRss)
      let hash = ''
      const download = await measure(async () => {
        hash = await downloadByRanges(storage, key, OBJECT_BYTES, inFlight)
      })
      if (hash !== expected) {
        throw new Error(`downloaded ${key} does not match what was uploaded`)
      }
      downloads.push(OBJECT_BYTES / MB / download.seconds)
      await storage.delete(key)
    }
    await storage.close()
    console.log(
      `| ${inFlight} | ${median(uploads).toFixed(0)} | ${median(downloads).toFixed(0)} | ${(peakRss / MiB).toFixed(0)} MiB |`
    )
  }
} finally {
  await stopObjectServer(server)
}
