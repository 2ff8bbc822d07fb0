import assert from 'node:assert/strict'
import { test } from 'node:test'
import { protocolErrors, protocolErrorsCodesById } from '@platformatic/kafka'
import fc from 'fast-check'
import { errorName, isRetriable } from '../../src/kafka/wire/errors.ts'
import { Reader } from '../../src/kafka/wire/reader.ts'
import { scramProof } from '../../src/kafka/wire/sasl.ts'
import { Writer } from '../../src/kafka/wire/writer.ts'

const bytesOf = (writer: Writer) => Buffer.concat(writer.buffers)

test('Writer and Reader round-trip every wire type, compact and classic', () => {
  fc.assert(
    fc.property(
      fc.record({
        int8: fc.integer({ min: -128, max: 127 }),
        int16: fc.integer({ min: -32768, max: 32767 }),
        int32: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        int64: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        float64: fc.double({ noNaN: true }),
        uvarint: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        varint: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        uuid: fc.uuid(),
        string: fc.option(fc.string({ unit: 'grapheme' })),
        bytes: fc.option(fc.uint8Array({ maxLength: 600 })),
        list: fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 20 }),
        compact: fc.boolean()
      }),
      v => {
        const writer = Writer.create()
          .appendInt8(v.int8)
          .appendInt16(v.int16)
          .appendInt32(v.int32)
          .appendInt64(v.int64)
          .appendFloat64(v.float64)
          .appendUnsignedVarInt(v.uvarint)
          .appendVarInt(v.varint)
          .appendUUID(v.uuid)
          .appendString(v.string, v.compact)
          .appendBytes(v.bytes, v.compact)
          .appendArray(v.list, (w, n) => w.appendInt32(n), v.compact)
          .appendTaggedFields()
        const bytes = bytesOf(writer)
        assert.equal(writer.length, bytes.length, 'length counts every byte')
        const r = new Reader(bytes)
        assert.equal(r.readInt8(), v.int8)
        assert.equal(r.readInt16(), v.int16)
        assert.equal(r.readInt32(), v.int32)
        assert.equal(r.readInt64(), v.int64)
        assert.equal(r.readFloat64(), v.float64)
        assert.equal(r.readUnsignedVarInt(), v.uvarint)
        assert.equal(r.readVarInt(), v.varint)
        assert.equal(r.readUUID(), v.uuid)
        assert.equal(r.readNullableString(v.compact), v.string)
        const read = r.readNullableBytes(v.compact)
        assert.deepEqual(read === null ? null : new Uint8Array(read), v.bytes)
        assert.deepEqual(
          r.readArray(r => r.readInt32(), v.compact),
          v.list
        )
        r.skipTaggedFields()
        assert.equal(r.remaining, 0)
      }
    )
  )
})

test('Writer keeps large byte arrays as their own chunks, in order', () => {
  const batch = Buffer.alloc(100_000, 7)
  const writer = Writer.create().appendInt32(1).appendBytes(batch).appendInt16(2)
  assert.ok(
    writer.buffers.some(chunk => chunk === batch),
    'the batch is not copied'
  )
  const r = new Reader(bytesOf(writer))
  assert.equal(r.readInt32(), 1)
  assert.deepEqual(r.readBytes(), batch)
  assert.equal(r.readInt16(), 2)
})

test('unsigned varints take the fewest bytes, and the writer counts exactly those', () => {
  for (const [value, size] of [
    [0, 1],
    [127, 1],
    [128, 2],
    [16_383, 2],
    [16_384, 3],
    [2 ** 32 - 1, 5]
  ] as const) {
    assert.equal(bytesOf(Writer.create().appendUnsignedVarInt(value)).length, size, `${value}`)
  }
})

test('Reader refuses a response cut short instead of misreading it', () => {
  const bytes = bytesOf(Writer.create().appendString('hello'))
  assert.throws(() => new Reader(bytes.subarray(0, 3)).readString(), /response cut short/)
  assert.throws(() => new Reader(Buffer.from([0x05])).readArray(r => r.readInt8()), /claims 4 entries/)
  assert.throws(
    () => new Reader(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).readUnsignedVarInt(),
    /longer than 5/
  )
})

test('SCRAM-SHA-256 proof and server signature match RFC 7677 section 3', async () => {
  const clientNonce = 'rOprNGfwEbeRWgbNEkqO'
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
  const { clientFinal, serverSignature } = await scramProof(
    'sha256',
    'pencil',
    `n=user,r=${clientNonce}`,
    serverFirst,
    clientNonce
  )
  assert.equal(
    clientFinal,
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='
  )
  assert.equal(serverSignature.toString('base64'), '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')
})

test('SCRAM refuses a server nonce that does not extend ours', async () => {
  await assert.rejects(
    scramProof('sha512', 'pw', 'n=u,r=abc', 'r=xyz123,s=c2FsdA==,i=4096', 'abc'),
    /SCRAM challenge is malformed/
  )
})

test('error code names and retriability agree with another client’s table', () => {
  for (const [code, name] of Object.entries(protocolErrorsCodesById)) {
    assert.equal(errorName(Number(code)), name, `code ${code}`)
    assert.equal(isRetriable(Number(code)), Boolean(protocolErrors[name]?.canRetry), `${name} retriable`)
  }
  assert.equal(errorName(9999), 'error 9999')
})
