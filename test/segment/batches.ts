/** Valid RecordBatch v2 bytes for segment tests, built with @platformatic/kafka's batch writer. */
import { type CompressionAlgorithmValue, createRecordsBatch } from '@platformatic/kafka'
import { crc32c } from '../../src/batch/crc.ts'
import { Offset, RecordBatchView } from '../../src/batch/header.ts'
import type { SegmentKey } from '../../src/crypto/frames.ts'
import { SegmentCodecIds, type SegmentCodecName } from '../../src/segment/format.ts'
import { bufferSource, type RangeSource } from '../../src/segment/reader.ts'
import { type SegmentSummary, SegmentWriter, type StoreRecords } from '../../src/segment/writer.ts'

export const segmentCodecs = Object.keys(SegmentCodecIds) as SegmentCodecName[]

export interface BatchSpec {
  baseOffset: bigint
  recordCount: number
  valueBytes?: number
  compression?: CompressionAlgorithmValue
  timestamp?: bigint
  /** OR-ed into the attributes after building; the CRC is recomputed. */
  extraAttributes?: number
  /** Overwrite baseTimestamp/maxTimestamp (e.g. -1, or a delete horizon). */
  baseTimestamp?: bigint
  maxTimestamp?: bigint
  /** Larger than recordCount - 1 leaves holes, as compaction does. */
  lastOffsetDelta?: number
  seed?: number
}

/** JSON-like values that compress a few times, varied by offset so frames are not trivial. */
export function jsonValue(offset: bigint, bytes: number, seed = 0): Buffer {
  let text = JSON.stringify({ offset: offset.toString(), seed, user: `user-${(Number(offset) * 7919 + seed) % 1000}` })
  let i = 0
  while (text.length < bytes) {
    text += `,"f${i}":"${((Number(offset) + i) * 2654435761 + seed) % 100000}"`
    i++
  }
  return Buffer.from(text.slice(0, bytes))
}

export function makeBatch(spec: BatchSpec): RecordBatchView {
  const timestamp = spec.timestamp ?? 1_700_000_000_000n + spec.baseOffset
  const messages = Array.from({ length: spec.recordCount }, (_, i) => ({
    topic: 't',
    key: i % 3 === 0 ? undefined : Buffer.from(`key-${spec.baseOffset + BigInt(i)}`),
    value: jsonValue(spec.baseOffset + BigInt(i), spec.valueBytes ?? 100, spec.seed),
    headers: i % 2 === 0 ? new Map([[Buffer.from('h'), Buffer.from(`v${i}`)]]) : undefined,
    timestamp: timestamp + BigInt(i)
  }))
  const bytes = Buffer.from(createRecordsBatch(messages, { compression: spec.compression ?? 'none' }).buffer)
  bytes.writeBigInt64BE(spec.baseOffset, Offset.baseOffset)
  let rewritten = false
  if (spec.extraAttributes !== undefined) {
    bytes.writeInt16BE(bytes.readInt16BE(Offset.attributes) | spec.extraAttributes, Offset.attributes)
    rewritten = true
  }
  if (spec.baseTimestamp !== undefined) {
    bytes.writeBigInt64BE(spec.baseTimestamp, Offset.baseTimestamp)
    rewritten = true
  }
  if (spec.maxTimestamp !== undefined) {
    bytes.writeBigInt64BE(spec.maxTimestamp, Offset.maxTimestamp)
    rewritten = true
  }
  if (spec.lastOffsetDelta !== undefined) {
    bytes.writeInt32BE(spec.lastOffsetDelta, Offset.lastOffsetDelta)
    rewritten = true
  }
  if (rewritten) {
    bytes.writeUInt32BE(crc32c(bytes.subarray(Offset.attributes)), Offset.crc)
  }
  return new RecordBatchView(bytes)
}

/** `count` consecutive batches of `recordsPerBatch` records from `firstOffset`. */
export function makeBatches(
  count: number,
  recordsPerBatch = 10,
  firstOffset = 0n,
  valueBytes = 100
): RecordBatchView[] {
  const batches: RecordBatchView[] = []
  let offset = firstOffset
  for (let i = 0; i < count; i++) {
    batches.push(makeBatch({ baseOffset: offset, recordCount: recordsPerBatch, valueBytes }))
    offset += BigInt(recordsPerBatch)
  }
  return batches
}

export async function collect(readable: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of readable) {
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

export interface WrittenSegment {
  bytes: Buffer
  source: RangeSource
  summary: SegmentSummary
}

export async function writeSegment(
  batches: RecordBatchView[],
  options: {
    codec?: SegmentCodecName
    frameMaxBytes?: number
    level?: number
    name?: string
    storeRecords?: StoreRecords
    encryption?: SegmentKey
  } = {}
): Promise<WrittenSegment> {
  const writer = new SegmentWriter({
    topic: 'orders',
    partition: 3,
    name: options.name ?? 'test.seg',
    codec: options.codec ?? 'zstd',
    level: options.level,
    frameMaxBytes: options.frameMaxBytes ?? 4096,
    storeRecords: options.storeRecords,
    createdAtMs: 1_700_000_000_000,
    encryption: options.encryption
  })
  const collected = collect(writer.readable)
  for (const batch of batches) {
    await writer.append(batch)
  }
  const summary = await writer.finish()
  const bytes = await collected
  return { bytes, source: bufferSource(bytes), summary }
}
