import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import type { RecordBatchView } from '../../src/batch/header.ts'
import { isBackupError } from '../../src/errors.ts'
import {
  bufferSource,
  readFrame,
  readSegmentBatches,
  readSegmentIndex,
  validateSegment
} from '../../src/segment/reader.ts'
import { makeBatch, segmentCodecs, writeSegment } from './batches.ts'

const batchSpecs = fc.array(
  fc.record({
    gap: fc.integer({ min: 0, max: 5 }),
    recordCount: fc.integer({ min: 1, max: 12 }),
    holes: fc.integer({ min: 0, max: 3 }),
    valueBytes: fc.integer({ min: 0, max: 600 }),
    compression: fc.constantFrom('none', 'gzip', 'snappy', 'lz4', 'zstd' as const),
    seed: fc.nat()
  }),
  { maxLength: 25 }
)

type BatchSpecs = typeof batchSpecs extends fc.Arbitrary<infer T> ? T : never

function build(specs: BatchSpecs): RecordBatchView[] {
  let offset = 0n
  return specs.map(spec => {
    offset += BigInt(spec.gap)
    const batch = makeBatch({
      baseOffset: offset,
      recordCount: spec.recordCount,
      valueBytes: spec.valueBytes,
      compression: spec.compression,
      seed: spec.seed,
      lastOffsetDelta: spec.recordCount - 1 + spec.holes
    })
    offset = batch.nextOffset
    return batch
  })
}

const segmentShape = fc.record({
  codec: fc.constantFrom(...segmentCodecs),
  frameMaxBytes: fc.integer({ min: 61, max: 20_000 }),
  level: fc.integer({ min: 1, max: 9 })
})

test('property: any batches, frame size and codec round-trip byte for byte and agree with the index', async () => {
  await fc.assert(
    fc.asyncProperty(batchSpecs, segmentShape, async (specs, shape) => {
      const batches = build(specs)
      const { source, summary } = await writeSegment(batches, shape)
      const read: Buffer[] = []
      for await (const batch of readSegmentBatches(source, 'p.seg', { verifyBatchCrc: true })) {
        read.push(Buffer.from(batch.bytes))
      }
      assert.deepEqual(
        read,
        batches.map(b => b.bytes)
      )
      assert.equal(summary.batchCount, batches.length)
      assert.equal(
        summary.recordCount,
        batches.reduce((sum, b) => sum + b.recordCount, 0)
      )
      assert.equal(summary.firstOffset, batches[0]?.baseOffset ?? -1n)
      assert.equal(summary.nextOffset, batches.at(-1)?.nextOffset ?? -1n)
      const validation = await validateSegment(source, 'p.seg', { deep: true })
      assert.equal(validation.batchCount, batches.length)
      // Frames read one at a time cover the batches in order, each within its row's offsets.
      const index = await readSegmentIndex(source, 'p.seg')
      let next = 0
      for (const [i, row] of index.footer.frames.entries()) {
        for (const batch of await readFrame(source, index, i)) {
          assert.ok(batch.baseOffset >= row.firstOffset && batch.lastOffset <= row.lastOffset)
          assert.deepEqual(batch.bytes, batches[next++]!.bytes)
        }
      }
      assert.equal(next, batches.length)
    }),
    { numRuns: 60 }
  )
})

test('property: a random byte change anywhere is an error with a KB_ code, never wrong data or a RangeError', async () => {
  await fc.assert(
    fc.asyncProperty(
      batchSpecs.filter(specs => specs.length > 0),
      segmentShape,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (specs, shape, position, xor) => {
        const { bytes } = await writeSegment(build(specs), shape)
        const damaged = Buffer.from(bytes)
        const at = position % damaged.length
        damaged[at]! ^= xor
        const source = bufferSource(damaged)
        try {
          await validateSegment(source, 'p.seg', { deep: true })
          for await (const _ of readSegmentBatches(source, 'p.seg')) {
            // drain
          }
        } catch (error) {
          assert.ok(
            isBackupError(error, 'KB_SEGMENT_CORRUPT') || isBackupError(error, 'KB_UNSUPPORTED_CODEC'),
            `byte ${at} ^ ${xor}: ${(error as Error).stack}`
          )
          return
        }
        assert.fail(`byte ${at} ^ ${xor} went unnoticed`)
      }
    ),
    { numRuns: 150 }
  )
})
