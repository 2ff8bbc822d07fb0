import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Attribute } from '../../src/batch/header.ts'
import { isBackupError } from '../../src/errors.ts'
import { FrameFlag, NONE } from '../../src/segment/format.ts'
import { FrameBufferPool } from '../../src/segment/pool.ts'
import { readSegmentBatches, readSegmentIndex, validateSegment } from '../../src/segment/reader.ts'
import { SegmentWriter } from '../../src/segment/writer.ts'
import { until } from '../helpers/wait.ts'
import { collect, makeBatch, makeBatches, segmentCodecs, writeSegment } from './batches.ts'

async function readAll(source: Parameters<typeof readSegmentBatches>[0]): Promise<Buffer[]> {
  const out: Buffer[] = []
  for await (const batch of readSegmentBatches(source, 'test.seg', { verifyBatchCrc: true })) {
    out.push(Buffer.from(batch.bytes))
  }
  return out
}

for (const codec of segmentCodecs) {
  for (const frameMaxBytes of [61, 1000, 4096, 64 * 1024]) {
    test(`${codec} segment with ${frameMaxBytes}-byte frames returns every batch byte for byte`, async () => {
      const batches = makeBatches(40, 7, 1000n)
      const { bytes, source, summary } = await writeSegment(batches, { codec, frameMaxBytes })
      assert.deepEqual(
        await readAll(source),
        batches.map(b => b.bytes)
      )
      assert.equal(summary.sizeBytes, bytes.length)
      assert.equal(summary.batchCount, 40)
      assert.equal(summary.recordCount, 280)
      assert.equal(summary.firstOffset, 1000n)
      assert.equal(summary.lastOffset, 1279n)
      assert.equal(summary.nextOffset, 1280n)
      assert.equal(summary.minTimestamp, 1_700_000_001_000n)
      assert.equal(summary.maxTimestamp, 1_700_000_001_000n + 273n + 6n)
      assert.equal(
        summary.uncompressedBytes,
        batches.reduce((sum, b) => sum + b.bytes.length, 0)
      )
      const index = await readSegmentIndex(source, 'test.seg')
      assert.equal(index.footer.frames.length, summary.frameCount)
      assert.equal(index.trailer.footerCrc, summary.checksum)
      assert.equal(index.header.codec, codec)
      assert.equal(index.header.topic, 'orders')
      assert.equal(index.header.partition, 3)
      for (const row of index.footer.frames) {
        assert.ok(row.uncompressedLength <= frameMaxBytes || row.batchCount === 1, 'frames hold at most frameMaxBytes')
      }
      await validateSegment(source, 'test.seg', { deep: true })
    })
  }
}

test('a writer with a few small batches holds a small frame buffer; one that fills frames takes full-size pooled ones', async () => {
  const pool = new FrameBufferPool(256 * 1024)
  const small = new SegmentWriter({ topic: 't', partition: 0, name: 'small.seg', frameMaxBytes: 256 * 1024, pool })
  const smallOutput = collect(small.readable)
  for (const batch of makeBatches(5, 5)) {
    await small.append(batch)
  }
  assert.equal(pool.allocatedCount, 0, 'a few KiB of batches take no 256 KiB buffer')
  await small.finish()
  await smallOutput

  const busy = new SegmentWriter({ topic: 't', partition: 0, name: 'busy.seg', frameMaxBytes: 256 * 1024, pool })
  const busyOutput = collect(busy.readable)
  for (const batch of makeBatches(200, 10, 0n, 1000)) {
    await busy.append(batch)
  }
  const summary = await busy.finish()
  await busyOutput
  assert.ok(summary.frameCount >= 4, `${summary.frameCount} frames`)
  // The filling frame and the frames compressing, reused from then on.
  assert.ok(pool.allocatedCount >= 1 && pool.allocatedCount <= 4, `${pool.allocatedCount} pooled buffers`)
})

test('an empty segment has a footer with no frames and -1 offsets', async () => {
  const { source, summary } = await writeSegment([])
  assert.equal(summary.frameCount, 0)
  assert.equal(summary.firstOffset, NONE)
  assert.equal(summary.nextOffset, NONE)
  assert.deepEqual(await readAll(source), [])
  const validation = await validateSegment(source, 'test.seg', { deep: true })
  assert.equal(validation.batchCount, 0)
})

test('a batch larger than frameMaxBytes gets a frame of its own', async () => {
  const small = makeBatch({ baseOffset: 0n, recordCount: 2 })
  const large = makeBatch({ baseOffset: 2n, recordCount: 50, valueBytes: 400 })
  const after = makeBatch({ baseOffset: 52n, recordCount: 2 })
  const { source } = await writeSegment([small, large, after], { frameMaxBytes: 4096 })
  const index = await readSegmentIndex(source, 'test.seg')
  assert.deepEqual(
    index.footer.frames.map(f => [f.firstOffset, f.lastOffset, f.batchCount]),
    [
      [0n, 1n, 1],
      [2n, 51n, 1],
      [52n, 53n, 1]
    ]
  )
  assert.deepEqual(await readAll(source), [small.bytes, large.bytes, after.bytes])
})

test('index rows carry timestamps and flags for delete-horizon, LogAppendTime, -1 and control batches', async () => {
  const batches = [
    makeBatch({ baseOffset: 0n, recordCount: 3, timestamp: 5000n }),
    // The delete horizon is far in the future and must not be taken for a record time.
    makeBatch({
      baseOffset: 10n,
      recordCount: 2,
      extraAttributes: Attribute.deleteHorizon,
      baseTimestamp: 9_000_000n,
      maxTimestamp: 7000n
    }),
    makeBatch({
      baseOffset: 20n,
      recordCount: 2,
      timestamp: 100n,
      extraAttributes: Attribute.logAppendTime,
      maxTimestamp: 8000n
    }),
    makeBatch({ baseOffset: 30n, recordCount: 1, baseTimestamp: -1n, maxTimestamp: -1n }),
    makeBatch({
      baseOffset: 40n,
      recordCount: 1,
      timestamp: 6000n,
      extraAttributes: Attribute.control | Attribute.transactional
    })
  ]
  const { source, summary } = await writeSegment(batches, { frameMaxBytes: 64 * 1024 })
  assert.equal(summary.frameCount, 1)
  assert.equal(summary.minTimestamp, 5000n)
  assert.equal(summary.maxTimestamp, 8000n)
  assert.equal(
    summary.flags,
    FrameFlag.deleteHorizon |
      FrameFlag.logAppendTime |
      FrameFlag.noTimestamp |
      FrameFlag.control |
      FrameFlag.transactional
  )
  await validateSegment(source, 'test.seg', { deep: true })
})

test('a frame whose batches all lack a known first time has minTimestamp -1', async () => {
  const { summary } = await writeSegment([
    makeBatch({ baseOffset: 0n, recordCount: 1, extraAttributes: Attribute.deleteHorizon, baseTimestamp: 9_000_000n })
  ])
  assert.equal(summary.minTimestamp, NONE)
  assert.equal(summary.maxTimestamp, 1_700_000_000_000n)
})

test('compaction holes: offsets follow lastOffsetDelta, counts follow recordCount', async () => {
  const holed = makeBatch({ baseOffset: 100n, recordCount: 3, lastOffsetDelta: 9 })
  const { summary } = await writeSegment([holed, makeBatch({ baseOffset: 110n, recordCount: 1 })])
  assert.equal(summary.firstOffset, 100n)
  assert.equal(summary.lastOffset, 110n)
  assert.equal(summary.recordCount, 4)
})

test('append rejects batches out of offset order and the segment never completes', async () => {
  const writer = new SegmentWriter({ topic: 't', partition: 0, name: 'order.seg', codec: 'none' })
  const output = collect(writer.readable)
  await writer.append(makeBatch({ baseOffset: 10n, recordCount: 5 }))
  await assert.rejects(writer.append(makeBatch({ baseOffset: 12n, recordCount: 1 })), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_INTERNAL'))
    assert.match(error.message, /order\.seg/)
    return true
  })
  await assert.rejects(output)
  await assert.rejects(writer.finish(), (error: unknown) => isBackupError(error, 'KB_INTERNAL'))
})

test('append rejects bytes that are not exactly one batch', async () => {
  const writer = new SegmentWriter({ topic: 't', partition: 0, name: 'len.seg' })
  const output = collect(writer.readable)
  const batch = makeBatch({ baseOffset: 0n, recordCount: 1 })
  const padded = Buffer.concat([batch.bytes, Buffer.alloc(3)])
  const { RecordBatchView } = await import('../../src/batch/header.ts')
  await assert.rejects(writer.append(new RecordBatchView(padded)), (error: unknown) =>
    isBackupError(error, 'KB_BATCH_CORRUPT')
  )
  await assert.rejects(output)
})

test('concurrent appends are refused rather than interleaved', async () => {
  const writer = new SegmentWriter({ topic: 't', partition: 0, name: 'c.seg', frameMaxBytes: 100 })
  const output = collect(writer.readable)
  const [a, b] = makeBatches(2, 5)
  const first = writer.append(a!)
  await assert.rejects(writer.append(b!), (error: unknown) => isBackupError(error, 'KB_INTERNAL'))
  await first
  await writer.append(b!)
  await writer.finish()
  await output
})

test('a frame pool keeps at most 4 MiB of idle buffers, and at least one', () => {
  for (const [bytes, idle] of [
    [1024 * 1024, 4],
    [2 * 1024 * 1024, 2],
    [4 * 1024 * 1024, 1],
    [16 * 1024 * 1024, 1]
  ] as const) {
    const pool = new FrameBufferPool(bytes)
    const buffers = Array.from({ length: 6 }, () => pool.acquire())
    for (const buffer of buffers) {
      pool.release(buffer)
    }
    assert.equal(pool.idleCount, idle, `${bytes}-byte frames`)
  }
})

test('abort errors the readable so storage keeps nothing, and returns the frame buffer to the pool', async () => {
  const pool = new FrameBufferPool(4096)
  const writer = new SegmentWriter({ topic: 't', partition: 0, name: 'abort.seg', frameMaxBytes: 4096, pool })
  const output = collect(writer.readable)
  await writer.append(makeBatch({ baseOffset: 0n, recordCount: 1 }))
  assert.equal(pool.idleCount, 0)
  writer.abort(new Error('upload failed'))
  await assert.rejects(output, /upload failed/)
  assert.equal(pool.idleCount, 1)
  await assert.rejects(writer.append(makeBatch({ baseOffset: 1n, recordCount: 1 })))
})

test('a consumer that destroys the readable fails the pending append instead of hanging it', async () => {
  const writer = new SegmentWriter({
    topic: 't',
    partition: 0,
    name: 'gone.seg',
    codec: 'none',
    frameMaxBytes: 200,
    highWaterMarkBytes: 1
  })
  const batches = makeBatches(20, 2)
  let failed: unknown
  const appending = (async () => {
    for (const batch of batches) {
      await writer.append(batch)
    }
  })().catch(error => {
    failed = error
  })
  // Destroyed while an append waits for the consumer: a frame is buffered and nobody reads it.
  await until(() => writer.readable.readableLength > 0, 'an append to wait on backpressure')
  writer.readable.destroy(new Error('storage said no'))
  await appending
  assert.match(String(failed), /storage said no/)
})

test('frame buffers are reused across segments, not allocated per batch or per segment', async () => {
  const pool = new FrameBufferPool(8192)
  for (let segment = 0; segment < 5; segment++) {
    const writer = new SegmentWriter({ topic: 't', partition: 0, name: `s${segment}`, frameMaxBytes: 8192, pool })
    const output = collect(writer.readable)
    for (const batch of makeBatches(50, 3, BigInt(segment * 1000))) {
      await writer.append(batch)
    }
    await writer.finish()
    await output
  }
  // One frame fills while up to two earlier ones compress.
  assert.ok(pool.allocatedCount >= 1 && pool.allocatedCount <= 3, `${pool.allocatedCount} buffers`)
})

test('a slow consumer keeps the bytes buffered in readable bounded (backpressure)', async () => {
  const frameMaxBytes = 2048
  const writer = new SegmentWriter({ topic: 't', partition: 0, name: 'slow.seg', codec: 'none', frameMaxBytes })
  let maxBuffered = 0
  let consumed = 0
  const consumer = (async () => {
    for await (const chunk of writer.readable) {
      consumed += (chunk as Buffer).length
      await sleep(2)
    }
  })()
  const batches = makeBatches(300, 4)
  for (const batch of batches) {
    await writer.append(batch)
    maxBuffered = Math.max(maxBuffered, writer.readable.readableLength)
  }
  const summary = await writer.finish()
  await consumer
  assert.equal(consumed, summary.sizeBytes)
  assert.ok(summary.sizeBytes > 20 * frameMaxBytes, 'the segment is much larger than the bound')
  // The high-water mark (one frame) plus the frame being pushed when it was reached.
  assert.ok(maxBuffered <= 2 * frameMaxBytes, `buffered ${maxBuffered} bytes`)
})

test('invalid options are configuration errors', () => {
  assert.throws(
    () => new SegmentWriter({ topic: 't', partition: 0, name: 'x', codec: 'zstd', level: 40 }),
    (error: unknown) => isBackupError(error, 'KB_CONFIG_INVALID')
  )
  assert.throws(
    () => new SegmentWriter({ topic: 't', partition: 0, name: 'x', frameMaxBytes: 10 }),
    (error: unknown) => isBackupError(error, 'KB_CONFIG_INVALID')
  )
  assert.throws(
    () => new SegmentWriter({ topic: 't', partition: 0, name: 'x', codec: 'snappy' as never }),
    (error: unknown) => isBackupError(error, 'KB_UNSUPPORTED_CODEC')
  )
  assert.throws(
    () => new SegmentWriter({ topic: '', partition: 0, name: 'x' }),
    (error: unknown) => isBackupError(error, 'KB_INTERNAL')
  )
  // A level shared by all codecs in the config does not break level-less codecs.
  assert.equal(new SegmentWriter({ topic: 't', partition: 0, name: 'x', codec: 'lz4', level: 3 }).level, 0)
})
