/** Kafka's default partitioner, checked against the vectors of Kafka's own UtilsTest. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { murmur2, partitionForKey } from '../../src/batch/partitioner.ts'

test('murmur2 gives what the Java client Utils.murmur2 gives', () => {
  const cases: Array<[string | Buffer, number]> = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    [Buffer.from([0x61, 0x62, 0x63]), 479470107]
  ]
  for (const [key, hash] of cases) {
    assert.equal(murmur2(typeof key === 'string' ? Buffer.from(key) : key), hash, String(key))
  }
})

test('the partition is toPositive(murmur2) modulo the count, with the sign bit cleared (not Math.abs)', () => {
  // murmur2('21') is negative: Math.abs would give another partition than Kafka's mask.
  const hash = -973932308
  assert.equal(partitionForKey(Buffer.from('21'), 7), (hash & 0x7fffffff) % 7)
  assert.notEqual((hash & 0x7fffffff) % 7, Math.abs(hash) % 7)
  assert.equal(partitionForKey(Buffer.from('foobar'), 1), 0)
})
