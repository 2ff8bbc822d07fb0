import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compressionsAlgorithms } from '@platformatic/kafka'
import fc from 'fast-check'
import { Attribute, Codec, Offset, RecordBatchView } from '../../src/batch/header.ts'
import {
  buildBatch,
  ControlRecordType,
  compressRecords,
  compressRecordsOffThread,
  controlRecordType,
  decodeRecords,
  decompressRecords,
  decompressRecordsOffThread,
  encodeBatch,
  encodeRecords,
  type RecordInput,
  recordOffset,
  recordTimestamp
} from '../../src/batch/records.ts'
import { BackupError } from '../../src/errors.ts'
import {
  allCodecs,
  arbitraryCodec,
  arbitraryRecords,
  assertCorrupt,
  assertRecordsEqual,
  baseTimestamp,
  controlBatch
} from './fixtures.ts'

const edgeRecords: RecordInput[] = [
  { timestampDelta: 0n, offsetDelta: 0, key: null, value: Buffer.from('null key') },
  { timestampDelta: 5n, offsetDelta: 1, key: Buffer.from('tombstone'), value: null },
  { timestampDelta: -1_000n, offsetDelta: 2, key: Buffer.alloc(0), value: Buffer.alloc(0) },
  {
    timestampDelta: 2n ** 40n,
    offsetDelta: 3,
    key: Buffer.from('headers'),
    value: Buffer.from('v'),
    headers: [
      ['trace-id', Buffer.from('abc')],
      ['null-value', null],
      ['empty-value', Buffer.alloc(0)],
      [Buffer.from([0xff, 0xfe]), Buffer.from('a header key that is not UTF-8')],
      ['trace-id', Buffer.from('repeated keys keep their order')]
    ]
  },
  { timestampDelta: -(2n ** 62n), offsetDelta: 4, key: null, value: null, attributes: -1 },
  { timestampDelta: 2n ** 62n, offsetDelta: 5, key: Buffer.alloc(300, 1), value: Buffer.alloc(70_000, 2) }
]

test('encodes a record in the exact v2 wire layout', () => {
  const bytes = encodeRecords([
    { timestampDelta: 0n, offsetDelta: 0, key: Buffer.from('k'), value: Buffer.from('v') },
    { timestampDelta: -1n, offsetDelta: 1, key: null, value: null, headers: [['h', null]] }
  ])
  // length 8 (zigzag 16), attributes, ts 0, offset 0, key len 1 'k', value len 1 'v', 0 headers
  // length 9, attributes, ts -1 (zigzag 1), offset 1 (zigzag 2), key -1, value -1, 1 header: 'h', null
  assert.equal(bytes.toString('hex'), '10000000026b027600' + '12000102010102026801')
})

for (const codec of allCodecs) {
  test(`round trip of null keys, null and empty values, headers and extreme timestamp deltas with ${codec.name}`, () => {
    const batch = buildBatch({ baseOffset: 500n, baseTimestamp, codec: codec.id }, edgeRecords)
    assert.equal(batch.codec, codec.id)
    assert.equal(batch.isCrcValid(), true)
    assert.equal(batch.recordCount, edgeRecords.length)
    assert.equal(batch.lastOffsetDelta, 5)
    assert.equal(batch.maxTimestamp, baseTimestamp + 2n ** 62n)
    const records = decodeRecords(batch)
    assertRecordsEqual(records, edgeRecords)
    assert.deepEqual(
      records.map(r => recordOffset(batch, r)),
      [500n, 501n, 502n, 503n, 504n, 505n]
    )
    assert.equal(recordTimestamp(batch, records[2]!), baseTimestamp - 1_000n)
    if (codec.id === Codec.none) {
      assert.equal(records[3]!.value!.buffer, batch.bytes.buffer, 'uncompressed values are views into the batch')
    }
  })
}

test('LogAppendTime batches give every record the batch maxTimestamp', () => {
  const batch = buildBatch(
    { baseTimestamp, maxTimestamp: 1_800_000_000_000n, attributes: Attribute.logAppendTime },
    edgeRecords.slice(0, 2)
  )
  for (const record of decodeRecords(batch)) {
    assert.equal(recordTimestamp(batch, record), 1_800_000_000_000n)
  }
})

test('decodes snappy both raw (non-Java producers) and in xerial framing with several chunks (Java producer)', () => {
  const plain = encodeRecords(edgeRecords)
  const xerial = compressRecords(Codec.snappy, plain)
  assert.equal(xerial.subarray(0, 8).toString('latin1'), '\x82SNAPPY\x00')
  assert.ok(xerial.length > 16 + 2 * 4, 'more than one 32 KiB chunk')
  assert.ok(decompressRecords(Codec.snappy, xerial).equals(plain))
  const raw = compressionsAlgorithms.snappy.compressSync(plain) as Buffer
  assert.ok(decompressRecords(Codec.snappy, raw).equals(plain))
})

test('lz4 output is a frame with independent blocks, which Kafka requires', () => {
  const frame = compressRecords(Codec.lz4, encodeRecords(edgeRecords))
  assert.equal(frame.readUInt32LE(0), 0x184d2204, 'LZ4 frame magic')
  assert.equal(frame[4]! & 0xc0, 0x40, 'frame version 01')
  assert.equal(frame[4]! & 0x20, 0x20, 'block independence flag')
})

test('records compressed off the event loop: lz4 frames with independent blocks, every codec back to the same bytes, damage is KB_BATCH_CORRUPT', async () => {
  const plain = encodeRecords(edgeRecords)
  for (const codec of allCodecs) {
    const compressed = await compressRecordsOffThread(codec.id, plain)
    assert.ok((await decompressRecordsOffThread(codec.id, compressed)).equals(plain), codec.name)
    assert.ok(decompressRecords(codec.id, compressed).equals(plain), codec.name)
  }
  const frame = await compressRecordsOffThread(Codec.lz4, plain)
  assert.equal(frame.readUInt32LE(0), 0x184d2204, 'LZ4 frame magic')
  assert.equal(frame[4]! & 0x20, 0x20, 'block independence flag')
  await assert.rejects(decompressRecordsOffThread(Codec.lz4, frame.subarray(0, frame.length - 9), 7n), {
    code: 'KB_BATCH_CORRUPT',
    baseOffset: 7n,
    field: 'records'
  })
})

test('reads the type of transaction markers', () => {
  assert.equal(controlRecordType(new RecordBatchView(controlBatch(9n, 1n, 'abort'))), ControlRecordType.abort)
  assert.equal(controlRecordType(new RecordBatchView(controlBatch(9n, 1n, 'commit'))), ControlRecordType.commit)
})

test('an unknown codec is KB_UNSUPPORTED_CODEC naming the batch', () => {
  const bytes = encodeBatch({ baseOffset: 42n, baseTimestamp }, edgeRecords.slice(0, 1))
  bytes.writeInt16BE(5, Offset.attributes)
  assertCorrupt(() => decodeRecords(new RecordBatchView(bytes)), {
    field: 'attributes',
    baseOffset: 42n,
    code: 'KB_UNSUPPORTED_CODEC'
  })
})

test('compressed bytes that do not decompress are KB_BATCH_CORRUPT for every codec', () => {
  for (const codec of allCodecs.filter(c => c.id !== Codec.none)) {
    const bytes = encodeBatch({ baseOffset: 7n, baseTimestamp, codec: codec.id }, edgeRecords.slice(0, 3))
    bytes.fill(0x5a, Offset.records, Offset.records + 12)
    assertCorrupt(() => decodeRecords(new RecordBatchView(bytes)), { field: 'records', baseOffset: 7n })
  }
})

/** A one-codec-none batch whose records section is `records` as given (header fields consistent). */
function rawBatch(records: Buffer, recordCount: number, lastOffsetDelta = recordCount - 1): RecordBatchView {
  const bytes = encodeBatch({ baseOffset: 100n, baseTimestamp, lastOffsetDelta: Math.max(0, lastOffsetDelta) }, [])
  const batch = Buffer.concat([bytes, records])
  batch.writeInt32BE(batch.length - 12, Offset.batchLength)
  batch.writeInt32BE(recordCount, Offset.recordCount)
  return new RecordBatchView(batch)
}

test('malformed records are KB_BATCH_CORRUPT naming the batch, the record and the field', () => {
  const good = encodeRecords(edgeRecords.slice(0, 2))
  const cases: Array<[string, Buffer, number, number?]> = [
    ['record length', Buffer.from([0x80]), 1], // varint cut off
    ['record length', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 1], // varint of 6 bytes
    ['record length', Buffer.from([0x7e]), 1], // length 63 with nothing behind it
    ['record length', Buffer.from([0x03]), 1], // length -2
    ['key length', Buffer.from([0x08, 0x00, 0x00, 0x00, 0x7e]), 1], // key of 63 bytes in a 4-byte record
    ['value length', Buffer.from([0x0a, 0x00, 0x00, 0x00, 0x01, 0x05]), 1], // value length -3
    ['header count', Buffer.from([0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x7e]), 1],
    ['header key length', Buffer.from([0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01]), 1],
    ['record length', Buffer.from([0x0e, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00]), 1], // a byte too many
    ['timestampDelta', Buffer.from([0x18, 0x00, ...Array(11).fill(0xff)]), 1], // varlong of 11 bytes
    ['records', good, 3, 2], // recordCount says 3, bytes hold 2
    ['records', Buffer.concat([good, Buffer.from([0x00])]), 2], // trailing bytes
    ['offsetDelta', encodeRecords([edgeRecords[1]!, { ...edgeRecords[0]!, offsetDelta: 0 }]), 2, 5], // not increasing
    ['offsetDelta', good, 2, 0] // beyond lastOffsetDelta
  ]
  for (const [field, records, count, lastOffsetDelta] of cases) {
    const error = assertCorrupt(() => decodeRecords(rawBatch(records, count, lastOffsetDelta)), {
      field,
      baseOffset: 100n
    })
    assert.equal(typeof error['recordIndex'], 'number', field)
  }
})

test('property: encode then decode gives back random records for every codec', () => {
  fc.assert(
    fc.property(arbitraryRecords(), arbitraryCodec, fc.bigInt({ min: -1n, max: 2n ** 50n }), (records, codec, base) => {
      const batch = buildBatch({ baseOffset: 1234n, baseTimestamp: base, codec }, records)
      assert.equal(batch.isCrcValid(), true)
      assert.equal(batch.recordCount, records.length)
      assertRecordsEqual(decodeRecords(batch), records)
    }),
    { numRuns: 300 }
  )
})

test('property: a mutated records section decodes or fails with KB_BATCH_CORRUPT, never a RangeError', () => {
  fc.assert(
    fc.property(
      arbitraryRecords(5),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: -2, max: 2 }),
      (records, edits, countChange) => {
        const plain = encodeRecords(records)
        if (plain.length === 0) return
        for (const [at, byte] of edits) plain[at % plain.length] = byte
        const batch = rawBatch(plain, Math.max(0, records.length + countChange), 1000)
        try {
          decodeRecords(batch)
        } catch (error) {
          assert.ok(error instanceof BackupError && error.code === 'KB_BATCH_CORRUPT', String(error))
        }
      }
    ),
    { numRuns: 2000 }
  )
})
