import assert from 'node:assert/strict'
import { test } from 'node:test'
import { crc32c } from '../../src/batch/crc.ts'
import { Attribute, BATCH_HEADER_SIZE, Codec, Offset, RecordBatchView } from '../../src/batch/header.ts'

/** A bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78), independent of the native one. */
function referenceCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff
  for (const byte of bytes) {
    crc ^= byte
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
    }
  }
  return (crc ^ 0xffffffff) >>> 0
}

// An empty batch as compaction leaves it: offsets 100..104 kept, no records left.
const knownHeader = Buffer.from(
  [
    '0000000000000064', // baseOffset 100
    '00000031', // batchLength 49
    '00000007', // partitionLeaderEpoch 7
    '02', // magic
    '00000000', // crc, filled in below
    '001c', // attributes: zstd (4) | LogAppendTime (8) | transactional (16)
    '00000004', // lastOffsetDelta 4
    '0000018bcfe56800', // baseTimestamp 1700000000000
    '0000018bcfe5680a', // maxTimestamp 1700000000010
    '00000000000003e8', // producerId 1000
    '0005', // producerEpoch 5
    '0000002a', // baseSequence 42
    '00000000' // recordCount 0
  ].join(''),
  'hex'
)
knownHeader.writeUInt32BE(referenceCrc32c(knownHeader.subarray(Offset.attributes)), Offset.crc)

test('crc32c gives the CRC-32C check value and agrees with a bitwise reference', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 31) & 0xff))
  assert.equal(crc32c(data), referenceCrc32c(data))
  assert.equal(crc32c(data.subarray(500), crc32c(data.subarray(0, 500))), crc32c(data), 'continues from an initial CRC')
})

test('RecordBatchView reads every header field of known bytes in place', () => {
  assert.equal(knownHeader.length, BATCH_HEADER_SIZE)
  const view = new RecordBatchView(knownHeader)
  assert.equal(view.baseOffset, 100n)
  assert.equal(view.batchLength, 49)
  assert.equal(view.partitionLeaderEpoch, 7)
  assert.equal(view.magic, 2)
  assert.equal(view.attributes, 0x1c)
  assert.equal(view.codec, Codec.zstd)
  assert.equal(view.isLogAppendTime, true)
  assert.equal(view.isTransactional, true)
  assert.equal(view.isControl, false)
  assert.equal(view.lastOffsetDelta, 4)
  assert.equal(view.lastOffset, 104n)
  assert.equal(view.nextOffset, 105n, 'the next fetch starts after the whole offset range, even with no records')
  assert.equal(view.baseTimestamp, 1_700_000_000_000n)
  assert.equal(view.maxTimestamp, 1_700_000_000_010n)
  assert.equal(view.producerId, 1000n)
  assert.equal(view.producerEpoch, 5)
  assert.equal(view.baseSequence, 42)
  assert.equal(view.recordCount, 0)
  assert.equal(view.records.length, 0)
  assert.equal(view.crc, referenceCrc32c(knownHeader.subarray(Offset.attributes)))
  assert.equal(view.isCrcValid(), true)
  assert.equal(view.records.buffer, knownHeader.buffer, 'records is a view, not a copy')
})

test('RecordBatchView notices a changed byte through its CRC and reads control and negative fields', () => {
  const bytes = Buffer.from(knownHeader)
  bytes.writeInt16BE(Attribute.control | Codec.none, Offset.attributes)
  bytes.writeBigInt64BE(-1n, Offset.producerId)
  bytes.writeInt16BE(-1, Offset.producerEpoch)
  bytes.writeInt32BE(-1, Offset.baseSequence)
  const view = new RecordBatchView(bytes)
  assert.equal(view.isCrcValid(), false)
  assert.equal(view.isControl, true)
  assert.equal(view.codec, Codec.none)
  assert.equal(view.producerId, -1n)
  assert.equal(view.producerEpoch, -1)
  assert.equal(view.baseSequence, -1)
})
