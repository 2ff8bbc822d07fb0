/**
 * Reusable buffers for large responses (Fetch). A Buffer's memory is outside the JS heap, and V8
 * collects it only when a garbage collection notices its last view is gone: a fresh 2-16 MiB
 * buffer per Fetch response kept up to ~64 MiB of dead responses alive between collections and
 * made V8 run a full collection every ~100 ms (docs/benchmarks.md, "Peak RSS"). A consumer that
 * knows when it no longer reads a response gives its buffer back here, and the next response of
 * about that size reuses it. A buffer never given back is simply collected as before.
 */

/** Smallest capacity handed out: smaller responses are cheap to allocate and collect. */
export const POOLED_MIN_BYTES = 64 * 1024

export class ResponseBufferPool {
  /** Idle bytes kept for reuse, over all sizes; more are left to the garbage collector. */
  readonly maxIdleBytes: number
  /** Buffers this pool has allocated (for tests and the benchmarks). */
  allocatedCount = 0
  readonly #idle = new Map<number, ArrayBuffer[]>()
  #idleBytes = 0

  constructor(maxIdleBytes: number) {
    this.maxIdleBytes = maxIdleBytes
  }

  get idleBytes(): number {
    return this.#idleBytes
  }

  /** A buffer of exactly `size` bytes (a view of a power-of-two allocation), contents undefined. */
  acquire(size: number): Buffer {
    const capacity = capacityFor(size)
    const memory = this.#idle.get(capacity)?.pop()
    if (memory !== undefined) {
      this.#idleBytes -= capacity
      return Buffer.from(memory, 0, size)
    }
    this.allocatedCount++
    // Outside Node's shared slab, so the whole ArrayBuffer is this response's alone.
    return Buffer.allocUnsafeSlow(capacity).subarray(0, size)
  }

  /**
   * Takes back a buffer from `acquire`: the caller and every view it handed out must be done
   * reading it, since the next `acquire` overwrites it.
   */
  release(buffer: Buffer): void {
    const memory = buffer.buffer
    const capacity = memory.byteLength
    if (
      !(memory instanceof ArrayBuffer) ||
      capacity !== capacityFor(capacity) ||
      buffer.byteOffset !== 0 ||
      this.#idleBytes + capacity > this.maxIdleBytes
    ) {
      return
    }
    const idle = this.#idle.get(capacity) ?? []
    if (idle.includes(memory)) {
      return
    }
    idle.push(memory)
    this.#idle.set(capacity, idle)
    this.#idleBytes += capacity
  }
}

function capacityFor(size: number): number {
  return Math.max(POOLED_MIN_BYTES, 2 ** Math.ceil(Math.log2(Math.max(1, size))))
}

/**
 * The process's pool for Fetch responses. Idle buffers stay resident, so the cap is small: in a
 * steady backup each response's buffer is given back before the next-but-one arrives.
 */
export const responseBuffers = new ResponseBufferPool(32 * 1024 * 1024)
