/**
 * Builds a request body in Kafka's wire types. Small fields go to a growing scratch buffer;
 * large byte arrays (record batches) are kept as their own chunks, so a Produce request is
 * written to the socket without copying its batches.
 */
const SCRATCH_SIZE = 1024

export class Writer {
  readonly #chunks: Buffer[] = []
  #scratch = Buffer.allocUnsafe(SCRATCH_SIZE)
  #used = 0
  #length = 0

  static create(): Writer {
    return new Writer()
  }

  get length(): number {
    return this.#length
  }

  /** The body as chunks, in order. */
  get buffers(): Buffer[] {
    this.#flush()
    return this.#chunks
  }

  #room(size: number): Buffer {
    if (this.#used + size > this.#scratch.length) {
      this.#flush()
      this.#scratch = Buffer.allocUnsafe(Math.max(SCRATCH_SIZE, size))
    }
    this.#length += size
    return this.#scratch
  }

  #flush(): void {
    if (this.#used > 0) {
      this.#chunks.push(this.#scratch.subarray(0, this.#used))
      this.#scratch = this.#scratch.subarray(this.#used)
      this.#used = 0
    }
  }

  append(bytes: Uint8Array): this {
    if (bytes.length <= 256) {
      const target = this.#room(bytes.length)
      target.set(bytes, this.#used)
      this.#used += bytes.length
      return this
    }
    this.#flush()
    this.#chunks.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))
    this.#length += bytes.length
    return this
  }

  appendInt8(value: number): this {
    this.#used = this.#room(1).writeInt8(value, this.#used)
    return this
  }

  appendBoolean(value: boolean): this {
    return this.appendInt8(value ? 1 : 0)
  }

  appendInt16(value: number): this {
    this.#used = this.#room(2).writeInt16BE(value, this.#used)
    return this
  }

  appendInt32(value: number): this {
    this.#used = this.#room(4).writeInt32BE(value, this.#used)
    return this
  }

  appendUnsignedInt32(value: number): this {
    this.#used = this.#room(4).writeUInt32BE(value, this.#used)
    return this
  }

  appendInt64(value: bigint): this {
    this.#used = this.#room(8).writeBigInt64BE(value, this.#used)
    return this
  }

  appendFloat64(value: number): this {
    this.#used = this.#room(8).writeDoubleBE(value, this.#used)
    return this
  }

  appendUnsignedVarInt(value: number): this {
    const target = this.#room(5)
    let rest = value >>> 0
    let size = 0
    while (rest >= 0x80) {
      target[this.#used++] = (rest & 0x7f) | 0x80
      rest >>>= 7
      size++
    }
    target[this.#used++] = rest
    // #room counted the most a 32-bit varint takes.
    this.#length -= 4 - size
    return this
  }

  /** Zig-zag encoded. */
  appendVarInt(value: number): this {
    return this.appendUnsignedVarInt((value << 1) ^ (value >> 31))
  }

  appendUUID(uuid: string): this {
    return this.append(Buffer.from(uuid.replaceAll('-', ''), 'hex'))
  }

  /** COMPACT_STRING (compact) or STRING; null as a nullable string. */
  appendString(value: string | null | undefined, compact = true): this {
    if (value === null || value === undefined) {
      return compact ? this.appendUnsignedVarInt(0) : this.appendInt16(-1)
    }
    const bytes = Buffer.from(value, 'utf8')
    compact ? this.appendUnsignedVarInt(bytes.length + 1) : this.appendInt16(bytes.length)
    return this.append(bytes)
  }

  /** COMPACT_BYTES (compact) or BYTES; null as nullable bytes. */
  appendBytes(value: Uint8Array | null | undefined, compact = true): this {
    if (value === null || value === undefined) {
      return compact ? this.appendUnsignedVarInt(0) : this.appendInt32(-1)
    }
    compact ? this.appendUnsignedVarInt(value.length + 1) : this.appendInt32(value.length)
    return this.append(value)
  }

  /**
   * COMPACT_ARRAY (compact) or ARRAY; null as a nullable array. In flexible versions every
   * struct ends with its tagged fields: `appendTrailingTaggedFields` writes an empty set after
   * each entry.
   */
  appendArray<T>(
    values: readonly T[] | null | undefined,
    entry: (writer: this, value: T) => void,
    compact = true,
    appendTrailingTaggedFields = true
  ): this {
    if (values === null || values === undefined) {
      return compact ? this.appendUnsignedVarInt(0) : this.appendInt32(-1)
    }
    compact ? this.appendUnsignedVarInt(values.length + 1) : this.appendInt32(values.length)
    for (const value of values) {
      entry(this, value)
      if (compact && appendTrailingTaggedFields) {
        this.appendTaggedFields()
      }
    }
    return this
  }

  /** An empty TAG_BUFFER: we send no tagged fields. */
  appendTaggedFields(): this {
    return this.appendUnsignedVarInt(0)
  }
}
