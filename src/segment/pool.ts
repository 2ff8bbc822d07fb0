/**
 * Frame buffers are large (4 MiB by default) and live for the length of a segment, so a writer
 * takes one from a pool and gives it back when the segment ends: a backup that rolls thousands of
 * segments allocates about as many frame buffers as it has partitions writing at once.
 */
const IDLE_BYTES = 4 * 1024 * 1024

export class FrameBufferPool {
  readonly bufferBytes: number
  /** Idle buffers kept for reuse; more are released to the garbage collector. */
  readonly maxIdle: number
  /** Buffers this pool has allocated so far (for tests and the benchmark). */
  allocatedCount = 0
  readonly #idle: Buffer[] = []

  // Frames go back to the pool as their compression ends and come out as writers flush, so a
  // few idle ones cover the compressions in flight (writer.ts, COMPRESSIONS_AT_ONCE). Idle
  // buffers have been filled, so they are resident: at most IDLE_BYTES of them (4 of 1 MiB, 1 of
  // 4 MiB), at least one.
  constructor(bufferBytes: number, maxIdle = Math.max(1, Math.min(4, Math.floor(IDLE_BYTES / bufferBytes)))) {
    this.bufferBytes = bufferBytes
    this.maxIdle = maxIdle
  }

  get idleCount(): number {
    return this.#idle.length
  }

  acquire(): Buffer {
    const buffer = this.#idle.pop()
    if (buffer !== undefined) {
      return buffer
    }
    this.allocatedCount++
    // Outside Node's shared slab: the buffer is ours alone and freed as one piece.
    return Buffer.allocUnsafeSlow(this.bufferBytes)
  }

  release(buffer: Buffer): void {
    if (buffer.length === this.bufferBytes && this.#idle.length < this.maxIdle && !this.#idle.includes(buffer)) {
      this.#idle.push(buffer)
    }
  }
}

const sharedPools = new Map<number, FrameBufferPool>()

/** One pool per frame size, shared by every writer of the process that does not bring its own. */
export function sharedFramePool(bufferBytes: number): FrameBufferPool {
  let pool = sharedPools.get(bufferBytes)
  if (pool === undefined) {
    pool = new FrameBufferPool(bufferBytes)
    sharedPools.set(bufferBytes, pool)
  }
  return pool
}
