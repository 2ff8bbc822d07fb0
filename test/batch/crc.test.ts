import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { crc32c, patchedCrc32c } from '../../src/batch/crc.ts'

test('crc32c gives the Castagnoli check value', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
})

test('patchedCrc32c equals the CRC computed afresh after a stretch of the message changed', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 3000 }),
      fc.nat(),
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      (message, at, replacement) => {
        const start = at % message.length
        const stretch = replacement.subarray(0, message.length - start)
        const changed = Uint8Array.from(message)
        changed.set(stretch, start)
        const end = start + stretch.length
        const patched = patchedCrc32c(
          crc32c(message),
          crc32c(message.subarray(start, end)),
          crc32c(changed.subarray(start, end)),
          message.length - end
        )
        assert.equal(patched, crc32c(changed))
      }
    ),
    { numRuns: 500 }
  )
})

test('patchedCrc32c reaches past long tails (lengths with high bits set)', () => {
  const message = Buffer.alloc(5 * 1024 * 1024 + 3, 0x5a)
  const changed = Buffer.from(message)
  changed.writeUInt32BE(0xdeadbeef, 10)
  const patched = patchedCrc32c(
    crc32c(message),
    crc32c(message.subarray(10, 14)),
    crc32c(changed.subarray(10, 14)),
    message.length - 14
  )
  assert.equal(patched, crc32c(changed))
})
