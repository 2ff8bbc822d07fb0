/**
 * CRC-32C (Castagnoli) as Kafka uses it for RecordBatch v2. @node-rs/crc32 is native and about
 * 14x faster here than @platformatic/kafka's WASM fallback (docs/benchmarks.md).
 */
import { crc32c as nativeCrc32c } from '@node-rs/crc32'

export function crc32c(bytes: Uint8Array, initial = 0): number {
  return nativeCrc32c(bytes, initial) >>> 0
}

/** The reflected Castagnoli polynomial. */
const POLY = 0x82f63b78

/** a(x) · b(x) modulo the polynomial, in the reflected bit order CRC-32C uses; a must not be 0. */
function multModP(a: number, b: number): number {
  let m = 0x80000000
  let p = 0
  for (;;) {
    if (a & m) {
      p ^= b
      if ((a & (m - 1)) === 0) {
        break
      }
    }
    m >>>= 1
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1
  }
  return p >>> 0
}

/** x^(2^k) modulo the polynomial, k = 0..31. */
const X2N = new Uint32Array(32)
X2N[0] = 0x40000000
for (let k = 1; k < 32; k++) {
  X2N[k] = multModP(X2N[k - 1]!, X2N[k - 1]!)
}

/** x^(8 · bytes) modulo the polynomial: what `bytes` bytes appended after a message multiply its CRC by. */
function shiftOf(bytes: number): number {
  let p = 0x80000000
  let k = 3
  for (let n = bytes; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) {
      p = multModP(X2N[k & 31]!, p)
    }
  }
  return p
}

/**
 * The CRC-32C of a message after some of its bytes changed, from its old CRC, without reading
 * the unchanged bytes: CRCs are linear, so the change only needs the CRCs of the changed stretch
 * before and after, moved past the `tailLength` bytes that follow it
 * (docs/architecture.md, "Record batch layout and CRC coverage"). The old CRC is carried, not
 * checked: a message whose old CRC was wrong still gets a wrong one.
 */
export function patchedCrc32c(
  oldCrc: number,
  oldStretchCrc: number,
  newStretchCrc: number,
  tailLength: number
): number {
  const change = (oldStretchCrc ^ newStretchCrc) >>> 0
  return change === 0 ? oldCrc >>> 0 : (oldCrc ^ multModP(shiftOf(tailLength), change)) >>> 0
}
