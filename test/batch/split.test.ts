import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { Codec, Offset } from '../../src/batch/header.ts'
import { encodeBatch } from '../../src/batch/records.ts'
import { RecordSetReader, splitRecordSet } from '../../src/batch/split.ts'
import { BackupError } from '../../src/errors.ts'
import { arbitraryCodec, arbitraryRecords, assertCorrupt, baseTimestamp, dataBatch } from './fixtures.ts'

const first = dataBatch(0n, 3)
const second = dataBatch(3n, 5, { codec: Codec.gzip })
const third = dataBatch(8n, 1, { codec: Codec.zstd })
const recordSet = Buffer.concat([first, second, third])
const edges = [0, first.length, first.length + second.length, recordSet.length]

test('splits a record set into zero-copy views of each whole batch', () => {
  const { batches, truncatedBytes } = splitRecordSet(recordSet)
  assert.equal(truncatedBytes, 0)
  assert.deepEqual(
    batches.map(b => b.baseOffset),
    [0n, 3n, 8n]
  )
  for (const [i, batch] of batches.entries()) {
    assert.equal(batch.bytes.buffer, recordSet.buffer, `batch ${i} shares the record set's memory`)
    assert.equal(batch.bytes.byteOffset, recordSet.byteOffset + edges[i]!)
    assert.equal(batch.bytes.length, edges[i + 1]! - edges[i]!)
  }
})

test('stops at a truncated trailing batch at every possible byte cut and reports its bytes', () => {
  for (let cut = 0; cut <= recordSet.length; cut++) {
    const { batches, truncatedBytes } = splitRecordSet(recordSet.subarray(0, cut))
    const whole = edges.filter(edge => edge <= cut).length - 1
    assert.equal(batches.length, whole, `cut at ${cut}`)
    assert.equal(truncatedBytes, cut - edges[whole]!, `cut at ${cut}`)
    for (const [i, batch] of batches.entries()) {
      assert.equal(batch.isCrcValid(), true, `cut at ${cut}, batch ${i}`)
    }
  }
})

test('an empty record set has no batches and no truncated bytes', () => {
  assert.deepEqual(splitRecordSet(Buffer.alloc(0)), { batches: [], truncatedBytes: 0 })
})

test('RecordSetReader yields the same batches one at a time and as an iterator', () => {
  const reader = new RecordSetReader(recordSet.subarray(0, recordSet.length - 1))
  const offsets = [...reader].map(b => b.baseOffset)
  assert.deepEqual(offsets, [0n, 3n])
  assert.equal(reader.position, edges[2])
  assert.equal(reader.truncatedBytes, third.length - 1)
})

function corrupted(edit: (set: Buffer, at: number) => void, batchIndex = 1): { set: Buffer; at: number } {
  const set = Buffer.from(recordSet)
  const at = edges[batchIndex]!
  edit(set, at)
  return { set, at }
}

test('a wrong magic byte is KB_BATCH_CORRUPT naming position, baseOffset and field', () => {
  const { set, at } = corrupted((set, at) => set.writeInt8(1, at + Offset.magic))
  const error = assertCorrupt(() => splitRecordSet(set), { field: 'magic', position: at, baseOffset: 3n })
  assert.equal(error['expected'], 2)
  assert.equal(error['found'], 1)
  assert.match(error.message, /legacy/)
})

test('a batchLength below the v2 minimum of 49 is KB_BATCH_CORRUPT, even in the last 12 bytes', () => {
  const { set, at } = corrupted((set, at) => set.writeInt32BE(48, at + Offset.batchLength))
  assertCorrupt(() => splitRecordSet(set), { field: 'batchLength', position: at, baseOffset: 3n })
  const negative = Buffer.alloc(12)
  negative.writeBigInt64BE(77n, 0)
  negative.writeInt32BE(-5, 8)
  assertCorrupt(() => splitRecordSet(negative), { field: 'batchLength', position: 0, baseOffset: 77n })
})

test('a CRC mismatch is KB_BATCH_CORRUPT with expected and found CRCs, unless verifyCrc is off', () => {
  const { set, at } = corrupted((set, at) => {
    set[at + Offset.records + 3]! ^= 0x01
  })
  const error = assertCorrupt(() => splitRecordSet(set), { field: 'crc', position: at, baseOffset: 3n })
  assert.match(String(error['expected']), /^0x[0-9a-f]{8}$/)
  assert.notEqual(error['expected'], error['found'])
  assert.equal(splitRecordSet(set, { verifyCrc: false }).batches.length, 3)
})

test('negative recordCount or lastOffsetDelta, or more records than offsets, is KB_BATCH_CORRUPT', () => {
  const cases: Array<[string, (set: Buffer, at: number) => void]> = [
    ['recordCount', (set, at) => set.writeInt32BE(-1, at + Offset.recordCount)],
    ['recordCount', (set, at) => set.writeInt32BE(6, at + Offset.recordCount)],
    ['lastOffsetDelta', (set, at) => set.writeInt32BE(-1, at + Offset.lastOffsetDelta)]
  ]
  for (const [field, edit] of cases) {
    const { set, at } = corrupted(edit, 2)
    assertCorrupt(() => splitRecordSet(set, { verifyCrc: false }), { field, position: at, baseOffset: 8n })
  }
})

test('a batch with offset holes (fewer records than offsets) is accepted', () => {
  const holey = dataBatch(10n, 2, { lastOffsetDelta: 9 }, [
    { timestampDelta: 0n, offsetDelta: 3, key: null, value: Buffer.from('a') },
    { timestampDelta: 0n, offsetDelta: 9, key: null, value: Buffer.from('b') }
  ])
  const { batches } = splitRecordSet(holey)
  assert.equal(batches[0]!.recordCount, 2)
  assert.equal(batches[0]!.nextOffset, 20n)
})

test('property: any concatenation of random batches cut anywhere splits into the whole ones before the cut', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(arbitraryRecords(8), arbitraryCodec), { minLength: 1, maxLength: 6 }),
      fc.nat(),
      (specs, cutSeed) => {
        let offset = 0n
        const batches = specs.map(([records, codec]) => {
          const batch = encodeBatch({ baseOffset: offset, baseTimestamp, codec }, records)
          offset += BigInt((records.at(-1)?.offsetDelta ?? 0) + 1)
          return batch
        })
        const set = Buffer.concat(batches)
        const cut = cutSeed % (set.length + 1)
        const { batches: split, truncatedBytes } = splitRecordSet(set.subarray(0, cut))
        let end = 0
        let whole = 0
        for (const batch of batches) {
          if (end + batch.length > cut) break
          end += batch.length
          whole++
        }
        assert.equal(split.length, whole)
        assert.equal(truncatedBytes, cut - end)
        for (const [i, view] of split.entries()) {
          assert.ok(view.bytes.equals(batches[i]!))
        }
      }
    ),
    { numRuns: 300 }
  )
})

test('property: random bytes never escape as anything but KB_BATCH_CORRUPT', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, validMagic) => {
      const set = Buffer.from(bytes)
      if (validMagic && set.length > Offset.magic) set[Offset.magic] = 2
      try {
        splitRecordSet(set)
      } catch (error) {
        assert.ok(error instanceof BackupError && error.code === 'KB_BATCH_CORRUPT', String(error))
      }
    }),
    { numRuns: 2000 }
  )
})
