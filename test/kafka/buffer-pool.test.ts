import assert from 'node:assert/strict'
import { test } from 'node:test'
import { POOLED_MIN_BYTES, ResponseBufferPool } from '../../src/kafka/wire/buffer-pool.ts'

test('a released response buffer is reused for a response of about its size, and idle bytes stay under the cap', () => {
  const pool = new ResponseBufferPool(4 * 1024 * 1024)
  const first = pool.acquire(1_500_000)
  assert.equal(first.length, 1_500_000)
  pool.release(first)
  pool.release(first)
  assert.equal(pool.idleBytes, 2 * 1024 * 1024, 'kept once, at its power-of-two capacity')
  const second = pool.acquire(1_100_000)
  assert.equal(second.buffer, first.buffer, 'same memory')
  assert.equal(second.length, 1_100_000)
  assert.equal(pool.allocatedCount, 1)
  const small = pool.acquire(100)
  assert.equal(small.buffer.byteLength, POOLED_MIN_BYTES)

  pool.release(Buffer.allocUnsafeSlow(2 * 1024 * 1024).subarray(1024))
  assert.equal(pool.idleBytes, 0, 'a view that does not start its memory is not taken')

  const big = [pool.acquire(3_000_000), pool.acquire(3_000_000)]
  for (const buffer of big) {
    pool.release(buffer)
  }
  assert.equal(pool.idleBytes, 4 * 1024 * 1024, 'the second 4 MiB buffer is left to the garbage collector')
})
