/**
 * Reads a response body in Kafka's wire types. Every read is bounds-checked: a response cut
 * short or misparsed ends in a RangeError naming the position, never in a silent misread.
 * Byte fields are views into the response buffer, not copies.
 */
export class Reader {
  readonly buffer: Buffer
  position: number

  constructor(buffer: Buffer, position = 0) {
    this.buffer = buffer
    this.position = position
  }

  get remaining(): number {
    return this.buffer.length - this.position
  }

  #take(size: number): number {
    const at = this.position
    if (size < 0 || at + size > this.buffer.length) {
      throw new RangeError(`response cut short: ${size} bytes wanted at ${at}, ${this.buffer.length - at} left`)
    }
    this.position = at + size
    return at
  }

  skip(size: number): this {
    this.#take(size)
    return this
  }

  readInt8(): number {
    return this.buffer.readInt8(this.#take(1))
  }

  readBoolean(): boolean {
    return this.readInt8() !== 0
  }

  readInt16(): number {
    return this.buffer.readInt16BE(this.#take(2))
  }

  readInt32(): number {
    return this.buffer.readInt32BE(this.#take(4))
  }

  readUnsignedInt32(): number {
    return this.buffer.readUInt32BE(this.#take(4))
  }

  readInt64(): bigint {
    return this.buffer.readBigInt64BE(this.#take(8))
  }

  readFloat64(): number {
    return this.buffer.readDoubleBE(this.#take(8))
  }

  readUnsignedVarInt(): number {
    let value = 0
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.buffer[this.#take(1)]!
      value += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) {
        return value
      }
    }
    throw new RangeError(`varint at ${this.position} is longer than 5 bytes`)
  }

  /** Zig-zag decoded. */
  readVarInt(): number {
    const raw = this.readUnsignedVarInt()
    return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2
  }

  readUUID(): string {
    const hex = this.buffer.toString('hex', this.#take(16), this.position)
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
  }

  /** The length of a nullable field: -1 for null. */
  #length(compact: boolean, wide: boolean): number {
    if (compact) {
      return this.readUnsignedVarInt() - 1
    }
    return wide ? this.readInt32() : this.readInt16()
  }

  readNullableString(compact = true): string | null {
    const length = this.#length(compact, false)
    return length < 0 ? null : this.buffer.toString('utf8', this.#take(length), this.position)
  }

  readString(compact = true): string {
    return this.readNullableString(compact) ?? ''
  }

  readCompactString(): string {
    return this.readString(true)
  }

  readNullableBytes(compact = true): Buffer | null {
    const length = this.#length(compact, true)
    return length < 0 ? null : this.buffer.subarray(this.#take(length), this.position)
  }

  readBytes(compact = true): Buffer {
    return this.readNullableBytes(compact) ?? Buffer.alloc(0)
  }

  /**
   * COMPACT_ARRAY (compact) or ARRAY, or null. In flexible versions every struct
   * ends with tagged fields: `discardTrailingTaggedFields` skips them after each entry (pass
   * false when `entry` reads them itself, or for arrays of plain values).
   */
  readNullableArray<T>(
    entry: (reader: Reader, index: number) => T,
    compact = true,
    discardTrailingTaggedFields = true
  ): T[] | null {
    const count = compact ? this.readUnsignedVarInt() - 1 : this.readInt32()
    if (count < 0) {
      return null
    }
    if (count > this.remaining) {
      throw new RangeError(`array at ${this.position} claims ${count} entries, ${this.remaining} bytes left`)
    }
    const values: T[] = new Array(count)
    for (let i = 0; i < count; i++) {
      values[i] = entry(this, i)
      if (compact && discardTrailingTaggedFields) {
        this.skipTaggedFields()
      }
    }
    return values
  }

  readArray<T>(entry: (reader: Reader, index: number) => T, compact = true, discardTrailingTaggedFields = true): T[] {
    return this.readNullableArray(entry, compact, discardTrailingTaggedFields) ?? []
  }

  /** Skips a TAG_BUFFER: a count, then (tag, size, bytes) per field; we read no tagged fields. */
  skipTaggedFields(): void {
    const count = this.readUnsignedVarInt()
    for (let i = 0; i < count; i++) {
      this.readUnsignedVarInt()
      this.skip(this.readUnsignedVarInt())
    }
  }

  /** skipTaggedFields under the name raw request code written for other clients' readers uses. */
  readTaggedFields(): void {
    this.skipTaggedFields()
  }
}
