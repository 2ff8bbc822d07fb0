/**
 * Riding out a broker outage, shared by the backup's fetcher and the restore's producer: each
 * retry waits a growing back-off, says what it waits for and how long it keeps trying, and the
 * run gives up with KB_KAFKA_UNREACHABLE once the cluster has not answered for its
 * `unreachable_timeout_secs`. A stop signal ends every wait at once. Failures that no retry
 * cures (authentication, TLS, authorization, data the broker refuses) are rethrown at once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { BackupError } from '../errors.ts'

const MIN_DELAY_MS = 100
const MAX_DELAY_MS = 5000

export interface OutageOptions {
  /** What the run is doing, for the log line: "fetching from orders/0 and 3 more partitions". */
  what: string
  /** How long the cluster may stay unreachable before the run gives up. */
  deadlineMs: number
  /** The config key that sets `deadlineMs`, named in the messages. */
  deadlineKey: string
  signal: AbortSignal
  onRetry?: (message: string, context: Record<string, unknown>) => void
}

export class Outage {
  readonly #options: OutageOptions
  #failingSince: number | undefined
  #delayMs = MIN_DELAY_MS

  constructor(options: OutageOptions) {
    this.#options = options
  }

  /**
   * Waits before the next attempt after `error` (undefined: a retry without a failure, e.g. a
   * partition without a leader for a moment). Returns early when the signal aborts.
   */
  async retry(error: unknown): Promise<void> {
    if (error instanceof BackupError && error.code !== 'KB_KAFKA_UNREACHABLE') {
      throw error
    }
    const incurable = incurableCause(error)
    if (incurable !== undefined) {
      throw incurable
    }
    const { what, deadlineMs, deadlineKey, signal } = this.#options
    const now = Date.now()
    this.#failingSince ??= now
    const failingMs = now - this.#failingSince
    const leftMs = deadlineMs - failingMs
    if (error !== undefined) {
      const reason = reasonOf(error)
      if (leftMs <= 0) {
        throw new BackupError(
          'KB_KAFKA_UNREACHABLE',
          `${what}: gave up after ${seconds(failingMs)} without an answer from Kafka (${deadlineKey}: ${seconds(deadlineMs)}): ${reason}`,
          { cause: error, failingMs }
        )
      }
      this.#options.onRetry?.(
        `${what}: ${reason}; retrying in ${seconds(this.#delayMs)}, giving up in ${seconds(leftMs)} (${deadlineKey})`,
        { retryInMs: this.#delayMs, giveUpInMs: leftMs }
      )
    }
    await sleep(Math.min(this.#delayMs, Math.max(leftMs, MIN_DELAY_MS)), undefined, { signal }).catch(() => {})
    this.#delayMs = Math.min(this.#delayMs * 2, MAX_DELAY_MS)
  }

  /** The cluster answered: the next failure starts a new outage. */
  recovered(): void {
    this.#failingSince = undefined
    this.#delayMs = MIN_DELAY_MS
  }
}

/**
 * Settles like `work`, or rejects with the signal's reason as soon as it aborts, so that a
 * stop never waits for a request to a broker that does not answer. `work` goes on unawaited;
 * its late failure is dropped, because the caller has already moved on.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {})
    return Promise.reject(signal.reason)
  }
  const { promise, resolve, reject } = Promise.withResolvers<T>()
  const onAbort = () => reject(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  return promise
}

const incurableCodes = new Set(['KB_KAFKA_AUTHENTICATION', 'KB_KAFKA_TLS', 'KB_KAFKA_AUTHORIZATION'])

/** A failure no retry cures, wrapped in one that looked transient (e.g. a failed metadata refresh). */
function incurableCause(error: unknown): BackupError | undefined {
  for (let cause = error; cause !== undefined && cause !== null; cause = (cause as { cause?: unknown }).cause) {
    if (cause instanceof BackupError && incurableCodes.has(cause.code)) {
      return cause
    }
  }
  return undefined
}

function reasonOf(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause
  const message = (error as Error).message ?? String(error)
  return error instanceof BackupError || cause === undefined ? message : `${message} (${reasonOf(cause)})`
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`
}
