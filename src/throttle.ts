/**
 * rate_limit_bytes_per_sec (backup and restore) as a token bucket with one second of burst.
 * One bucket per process: a worker's limit is shared by all of its partitions.
 */

/**
 * Waits until `bytes` more may go. An aborted `signal` ends the wait at once without taking
 * tokens: a backup worker giving its partitions up drops what it queued (backup/partition-task.ts),
 * and must not wait behind the others' debt to do so.
 */
export type Throttle = (bytes: number, signal?: AbortSignal) => Promise<void>

export function throttleOf(bytesPerSec: number | undefined): Throttle | undefined {
  if (!bytesPerSec) {
    return undefined
  }
  let tokens = bytesPerSec
  let refilledAt = performance.now()
  return async (bytes, signal) => {
    while (!signal?.aborted) {
      const now = performance.now()
      tokens = Math.min(bytesPerSec, tokens + ((now - refilledAt) / 1000) * bytesPerSec)
      refilledAt = now
      if (tokens >= Math.min(bytes, bytesPerSec)) {
        tokens -= bytes
        return
      }
      await sleep(((Math.min(bytes, bytesPerSec) - tokens) / bytesPerSec) * 1000, signal)
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
  })
}
