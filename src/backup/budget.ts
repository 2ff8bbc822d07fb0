/**
 * The cap on bytes fetched but not yet handed to a segment writer, across all partitions.
 * Fetchers wait for room before they issue a request, so memory is bounded by the cap plus
 * one response per broker, whatever the size of the topics (backpressure from storage to Kafka).
 */
export class ByteBudget {
  readonly capacity: number
  #used = 0
  #waiters: Array<() => void> = []
  #released: Array<() => void> = []

  constructor(capacity: number) {
    this.capacity = capacity
  }

  get used(): number {
    return this.#used
  }

  acquire(bytes: number): void {
    this.#used += bytes
  }

  release(bytes: number): void {
    this.#used -= bytes
    while (this.#used < this.capacity && this.#waiters.length > 0) {
      this.#waiters.shift()!()
    }
    const released = this.#released
    this.#released = []
    for (const resolve of released) {
      resolve()
    }
  }

  /** Resolves at the next release (a partition at its own cap waits for it to drain). */
  waitForRelease(signal?: AbortSignal): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>()
    if (signal?.aborted) {
      resolve()
    } else {
      this.#released.push(resolve)
      signal?.addEventListener('abort', () => resolve(), { once: true })
    }
    return promise
  }

  /** Resolves once usage is below capacity (or the signal aborts). */
  async waitForRoom(signal?: AbortSignal): Promise<void> {
    while (this.#used >= this.capacity && !signal?.aborted) {
      const { promise, resolve } = Promise.withResolvers<void>()
      this.#waiters.push(resolve)
      const onAbort = () => resolve()
      signal?.addEventListener('abort', onAbort, { once: true })
      await promise
      signal?.removeEventListener('abort', onAbort)
    }
  }
}
