/**
 * Kafka's default partitioner for keyed records, so that a restore into a different partition
 * count puts each key where a Kafka producer would: `toPositive(murmur2(key)) % partitions`.
 * murmur2 here is the 32-bit MurmurHash2 exactly as the Java client's `Utils.murmur2` computes
 * it (seed 0x9747b28c, little-endian 4-byte blocks, signed int arithmetic, Java's tail order),
 * checked against the vectors of Kafka's own UtilsTest; `toPositive` clears the sign bit
 * (not Math.abs, which would fold -2^31 and x onto different partitions than Kafka).
 */

const SEED = 0x9747b28c
const M = 0x5bd1e995
const R = 24

/** Kafka's murmur2 of `data`, as a signed 32-bit integer (what the Java method returns). */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  const blocks = length >>> 2
  for (let i = 0; i < blocks; i++) {
    const at = i * 4
    let k = data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)
    k = Math.imul(k, M)
    k ^= k >>> R
    k = Math.imul(k, M)
    h = Math.imul(h, M) ^ k
  }
  const tail = blocks * 4
  const rest = length & 3
  // The Java switch falls through: the remaining bytes are mixed in from the highest down.
  if (rest === 3) {
    h ^= data[tail + 2]! << 16
  }
  if (rest >= 2) {
    h ^= data[tail + 1]! << 8
  }
  if (rest >= 1) {
    h ^= data[tail]!
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** The partition Kafka's producer picks for a record with this (non-null) key. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  return (murmur2(key) & 0x7fffffff) % partitionCount
}
