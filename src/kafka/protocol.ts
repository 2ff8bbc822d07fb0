/** Small pieces of the Kafka wire format our raw request parsers share. */
import type { Reader } from './wire/reader.ts'

/** Skips a flexible-version TAG_BUFFER: a count, then (tag, size, bytes) per field. */
export function skipTaggedFields(reader: Reader): void {
  const count = reader.readUnsignedVarInt()
  for (let i = 0; i < count; i++) {
    reader.readUnsignedVarInt()
    reader.skip(reader.readUnsignedVarInt())
  }
}
