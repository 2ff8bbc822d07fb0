/** Batches and records for the batch tests, built with the encoder under test or by hand. */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Attribute, Codec, type CodecId } from '../../src/batch/header.ts'
import { type BatchFields, encodeBatch, type KafkaRecord, type RecordInput } from '../../src/batch/records.ts'
import { BackupError } from '../../src/errors.ts'

export const allCodecs: Array<{ name: keyof typeof Codec; id: CodecId }> = (
  Object.keys(Codec) as Array<keyof typeof Codec>
).map(name => ({ name, id: Codec[name] }))

export const baseTimestamp = 1_700_000_000_000n

/** `count` simple records with offsetDeltas 0..count-1 (or the given deltas). */
export function sampleRecords(count: number, offsetDeltas?: number[]): RecordInput[] {
  return Array.from({ length: count }, (_, i) => ({
    timestampDelta: BigInt(i * 10),
    offsetDelta: offsetDeltas?.[i] ?? i,
    key: Buffer.from(`key-${i}`),
    value: Buffer.from(`value-${i}-${'x'.repeat(i * 7)}`),
    headers: [['trace', Buffer.from(`t-${i}`)]]
  }))
}

export function dataBatch(
  baseOffset: bigint,
  count: number,
  fields: Partial<BatchFields> = {},
  records: RecordInput[] = sampleRecords(count)
): Buffer {
  return encodeBatch({ baseOffset, baseTimestamp, ...fields }, records)
}

/** A transaction marker as the broker writes it: key (version 0, type), value (version, coordinatorEpoch). */
export function controlBatch(baseOffset: bigint, producerId: bigint, type: 'abort' | 'commit'): Buffer {
  const key = Buffer.from([0, 0, 0, type === 'abort' ? 0 : 1])
  const value = Buffer.from([0, 0, 0, 0, 0, 0])
  return encodeBatch(
    {
      baseOffset,
      baseTimestamp,
      attributes: Attribute.control | Attribute.transactional,
      producerId,
      producerEpoch: 0,
      baseSequence: -1
    },
    [{ timestampDelta: 0n, offsetDelta: 0, key, value }]
  )
}

export function txnBatch(baseOffset: bigint, count: number, producerId: bigint): Buffer {
  return dataBatch(baseOffset, count, {
    attributes: Attribute.transactional,
    producerId,
    producerEpoch: 0,
    baseSequence: 0
  })
}

/** Asserts that `fn` throws a BackupError with `code` whose context names `field` (and more). */
export function assertCorrupt(
  fn: () => unknown,
  expected: { field: string; position?: number; baseOffset?: bigint; code?: string }
): BackupError {
  let thrown: unknown
  try {
    fn()
  } catch (error) {
    thrown = error
  }
  assert.ok(thrown instanceof BackupError, `expected a BackupError, got ${String(thrown)}`)
  assert.equal(thrown.code, expected.code ?? 'KB_BATCH_CORRUPT')
  assert.equal(thrown['field'], expected.field)
  assert.match(thrown.message, new RegExp(expected.field.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  if (expected.position !== undefined) {
    assert.equal(thrown['position'], expected.position)
    assert.match(thrown.message, new RegExp(`position ${expected.position}\\b`))
  }
  if (expected.baseOffset !== undefined) {
    assert.equal(thrown['baseOffset'], expected.baseOffset)
    assert.match(thrown.message, new RegExp(`baseOffset ${expected.baseOffset}\\b`))
  }
  return thrown
}

/** Compares decoded records with the inputs they came from (string header keys as UTF-8). */
export function assertRecordsEqual(decoded: KafkaRecord[], inputs: RecordInput[]): void {
  assert.equal(decoded.length, inputs.length)
  for (const [i, input] of inputs.entries()) {
    const record = decoded[i]!
    assert.equal(record.offsetDelta, input.offsetDelta, `record ${i} offsetDelta`)
    assert.equal(record.timestampDelta, input.timestampDelta, `record ${i} timestampDelta`)
    assert.equal(record.attributes, input.attributes ?? 0, `record ${i} attributes`)
    assert.deepEqual(record.key, input.key === null ? null : Buffer.from(input.key), `record ${i} key`)
    assert.deepEqual(record.value, input.value === null ? null : Buffer.from(input.value), `record ${i} value`)
    assert.deepEqual(
      record.headers,
      (input.headers ?? []).map(([k, v]) => [Buffer.from(k), v === null ? null : Buffer.from(v)]),
      `record ${i} headers`
    )
  }
}

const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map(array => Buffer.from(array))

/** Random records with strictly increasing offsetDeltas (holes allowed). */
export const arbitraryRecords = (maxRecords = 20): fc.Arbitrary<RecordInput[]> =>
  fc
    .array(
      fc.record({
        gap: fc.integer({ min: 1, max: 5 }),
        attributes: fc.integer({ min: -128, max: 127 }),
        timestampDelta: fc.oneof(
          fc.bigInt({ min: -1000n, max: 1000n }),
          // Wide deltas exercise 8..10-byte varlongs; base + delta stays inside int64.
          fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n })
        ),
        key: fc.option(bytes(40), { nil: null }),
        value: fc.option(bytes(300), { nil: null }),
        headers: fc.array(
          fc.tuple(fc.oneof(fc.string({ maxLength: 10 }), bytes(10)), fc.option(bytes(20), { nil: null })),
          {
            maxLength: 3
          }
        )
      }),
      { maxLength: maxRecords }
    )
    .map(items => {
      let offsetDelta = -1
      return items.map(({ gap, ...record }) => {
        offsetDelta += gap
        return { ...record, offsetDelta }
      })
    })

export const arbitraryCodec: fc.Arbitrary<CodecId> = fc.constantFrom(...allCodecs.map(c => c.id))
