/**
 * CRC-32C (Castagnoli) as Kafka uses it for RecordBatch v2. @node-rs/crc32 is native and about
 * 14x faster here than @platformatic/kafka's WASM fallback (docs/benchmarks.md).
 */
import { crc32c as nativeCrc32c } from '@node-rs/crc32'

export function crc32c(bytes: Uint8Array, initial = 0): number {
  return nativeCrc32c(bytes, initial) >>> 0
}
