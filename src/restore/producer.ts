/**
 * The restore's write side: raw Produce requests to one leader, each carrying the next batch
 * of every partition that has one ready (the broker takes one batch per partition per
 * request), up to `maxInFlightPerPartition` batches per partition in flight, acks=all, with
 * the idempotent producer's id and per-partition sequences so the broker keeps them in order.
 *
 * Any error that a retry could cure (leader moved, broker restarted, sequence trouble) stops
 * the sender once its in-flight requests settle and surfaces as a RestartNeeded: the engine
 * then reconciles every partition against the target's end offset and resumes with a fresh
 * producer id. That keeps the retry logic in one exact place instead of a second one here.
 */

import { rewriteForRestore } from '../batch/rewrite.ts'
import { BackupError } from '../errors.ts'
import type { Connection } from '../kafka/cluster.ts'
import { type ProducerIdentity, rawProduce } from '../kafka/raw-produce.ts'
import { errorName, isKnownErrorCode, isRetriable } from '../kafka/wire/errors.ts'
import type { Throttle } from '../throttle.ts'
import type { OutgoingBatch } from './outgoing.ts'

/** A failure a fresh start from the reconciled position cures. */
export class RestartNeeded extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RestartNeeded'
  }
}

/** Kafka errors that mean the data itself cannot be written, whatever the retry. */
const fatalProduceErrors: Record<string, string> = {
  CORRUPT_MESSAGE: 'the batch failed the broker CRC check',
  MESSAGE_TOO_LARGE: "raise the target topic's max.message.bytes (and the broker's message.max.bytes)",
  RECORD_LIST_TOO_LARGE: "raise the target topic's max.message.bytes",
  INVALID_RECORD: 'the broker refused the batch',
  INVALID_TIMESTAMP:
    'the target topic refuses these timestamps: check its message.timestamp.type and message.timestamp.*.max.ms',
  TOPIC_AUTHORIZATION_FAILED: 'the principal needs Write on the target topic',
  CLUSTER_AUTHORIZATION_FAILED: 'the restore user may not use an idempotent producer (IdempotentWrite)',
  POLICY_VIOLATION: 'a broker policy refused the write',
  INVALID_REQUIRED_ACKS: 'the broker refused acks=all'
}

/** One target partition as the sender sees it: a queue of ready batches and a sink for acks. */
export class PartitionFeed {
  readonly topic: string
  readonly partition: number
  inFlight = 0
  nextSequence = 0
  readonly #queue: OutgoingBatch[] = []
  readonly #queueMax: number
  #ended = false
  #error: unknown
  #room: (() => void) | undefined
  #notify: () => void = () => {}
  readonly #onAck: (batch: OutgoingBatch, baseOffset: bigint) => void

  constructor(
    topic: string,
    partition: number,
    queueMax: number,
    onAck: (batch: OutgoingBatch, baseOffset: bigint) => void
  ) {
    this.topic = topic
    this.partition = partition
    this.#queueMax = queueMax
    this.#onAck = onAck
  }

  /** Pulls from `source` into the bounded queue until it ends. */
  async pump(source: AsyncIterable<OutgoingBatch>, signal: AbortSignal): Promise<void> {
    try {
      for await (const batch of source) {
        while (this.#queue.length >= this.#queueMax && !signal.aborted) {
          await new Promise<void>(resolve => {
            this.#room = resolve
          })
        }
        if (signal.aborted) {
          break
        }
        this.#queue.push(batch)
        this.#notify()
      }
    } catch (error) {
      this.#error = error
    } finally {
      this.#ended = true
      this.#notify()
    }
  }

  setListener(notify: () => void): void {
    this.#notify = notify
  }

  get error(): unknown {
    return this.#error
  }

  /** Nothing left to send, and nothing waiting for an ack. */
  get finished(): boolean {
    return this.#ended && this.#queue.length === 0 && this.inFlight === 0
  }

  peek(): OutgoingBatch | undefined {
    return this.#queue[0]
  }

  take(): OutgoingBatch | undefined {
    const batch = this.#queue.shift()
    const room = this.#room
    this.#room = undefined
    room?.()
    return batch
  }

  /** Wakes a pump waiting for room, so it can see the signal abort. */
  release(): void {
    const room = this.#room
    this.#room = undefined
    room?.()
  }

  ack(batch: OutgoingBatch, baseOffset: bigint): void {
    this.inFlight--
    this.#onAck(batch, baseOffset)
  }
}

export interface SenderOptions {
  producer: ProducerIdentity
  maxInFlightPerPartition: number
  maxRequestBytes: number
  timeoutMs: number
  signal: AbortSignal
  /** Waits until `bytes` more may be sent (rate_limit_bytes_per_sec). */
  throttle?: Throttle
  /**
   * Asked right before each request: false ends the sender (with RestartNeeded) without sending.
   * A restore worker whose group session lapsed must not write (HeldAssignment.leaseValid).
   */
  mayProduce?: () => boolean
  onRequest?: (durationMs: number, bytes: number) => void
}

interface Entry {
  feed: PartitionFeed
  outgoing: OutgoingBatch
  bytes: Buffer
}

/** Sends every feed's batches through one leader connection until all are acknowledged. */
export async function sendToLeader(connection: Connection, feeds: PartitionFeed[], options: SenderOptions) {
  const { maxInFlightPerPartition, maxRequestBytes, signal } = options
  let requestsInFlight = 0
  let failure: unknown
  let wake: (() => void) | undefined
  // Set by every event, so one that lands while the loop is busy is not missed.
  let dirty = false
  const notify = () => {
    dirty = true
    const resolve = wake
    wake = undefined
    resolve?.()
  }
  for (const feed of feeds) {
    feed.setListener(notify)
  }
  let rotation = 0

  const settle = (entries: Entry[], response: Awaited<ReturnType<typeof rawProduce>> | undefined, error: unknown) => {
    for (const entry of entries) {
      const { feed, outgoing } = entry
      const result = response?.topics
        .find(t => t.topic === feed.topic)
        ?.partitions.find(p => p.partition === feed.partition)
      if (result && result.errorCode === 0) {
        feed.ack(outgoing, result.baseOffset)
        continue
      }
      feed.inFlight--
      if (failure !== undefined) {
        continue
      }
      if (!result) {
        failure = new RestartNeeded(
          `produce to ${feed.topic}/${feed.partition} failed: ${(error as Error | undefined)?.message ?? 'no result for the partition'}`,
          { cause: error }
        )
        continue
      }
      const name = errorName(result.errorCode)
      const first = outgoing.runs[0]?.sourceOffset
      // The broker explains every refused record; the first one keeps the error a readable line.
      const recordErrors = result.recordErrors.map(e => e.message).filter(Boolean)
      const detail = [
        result.errorMessage,
        recordErrors[0],
        recordErrors.length > 1 ? `and ${recordErrors.length - 1} more records` : undefined
      ]
        .filter(Boolean)
        .join('; ')
      const hint = fatalProduceErrors[name]
      failure =
        hint !== undefined || (isKnownErrorCode(result.errorCode) && !isRetriable(result.errorCode))
          ? new BackupError(
              name.endsWith('_AUTHORIZATION_FAILED') ? 'KB_KAFKA_AUTHORIZATION' : 'KB_KAFKA',
              `restoring source offset ${first} to ${feed.topic}/${feed.partition} failed with ${name}${detail ? ` (${detail})` : ''}: ${hint ?? 'not retriable'}`,
              { topic: feed.topic, partition: feed.partition, kafkaError: name, sourceOffset: first?.toString() }
            )
          : new RestartNeeded(`produce to ${feed.topic}/${feed.partition} failed with ${name}`)
    }
  }

  const nextRequest = (): Entry[] => {
    const entries: Entry[] = []
    let size = 0
    rotation = (rotation + 1) % Math.max(feeds.length, 1)
    for (let i = 0; i < feeds.length; i++) {
      const feed = feeds[(rotation + i) % feeds.length]!
      const head = feed.peek()
      if (!head || feed.inFlight >= maxInFlightPerPartition) {
        continue
      }
      if (entries.length > 0 && size + head.batch.bytes.length > maxRequestBytes) {
        break
      }
      feed.take()
      const baseSequence = feed.nextSequence
      // Sequences wrap at 2^31, as Kafka's producer wraps them.
      feed.nextSequence = (feed.nextSequence + head.batch.recordCount) % 2 ** 31
      feed.inFlight++
      // In place: the batch is this entry's alone from here (a retry re-reads the backup), and a
      // copy per batch was as many bytes again for the garbage collector as the restore moves.
      const bytes = rewriteForRestore(head.batch, { ...options.producer, baseSequence }, head.batch.bytes).bytes
      entries.push({ feed, outgoing: head, bytes })
      size += bytes.length
    }
    return entries
  }

  for (;;) {
    const feedError = feeds.find(f => f.error !== undefined)?.error
    if (feedError !== undefined && failure === undefined) {
      failure = feedError
    }
    if (signal.aborted && failure === undefined) {
      failure = new RestartNeeded('the restore was stopped')
    }
    if (failure !== undefined) {
      if (requestsInFlight === 0) {
        throw failure
      }
    } else {
      if (requestsInFlight === 0 && feeds.every(f => f.finished)) {
        return
      }
      // No new request once stopped: a restore worker giving its partitions up waits for what is
      // in flight, and must not keep sending (a throttled loop would otherwise run on).
      while (requestsInFlight < maxInFlightPerPartition && failure === undefined && !signal.aborted) {
        const entries = nextRequest()
        if (entries.length === 0) {
          break
        }
        const bytes = entries.reduce((sum, e) => sum + e.bytes.length, 0)
        await options.throttle?.(bytes)
        // After the wait: a process paused during it wakes here before any heartbeat runs.
        if (options.mayProduce?.() === false) {
          failure ??= new RestartNeeded('this worker may no longer produce')
          break
        }
        requestsInFlight++
        const startedAt = performance.now()
        const byTopic = new Map<string, Array<{ partition: number; batch: Buffer }>>()
        for (const entry of entries) {
          byTopic.set(entry.feed.topic, [
            ...(byTopic.get(entry.feed.topic) ?? []),
            { partition: entry.feed.partition, batch: entry.bytes }
          ])
        }
        rawProduce(connection, {
          acks: -1,
          timeoutMs: options.timeoutMs,
          topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions }))
        })
          .then(
            response => {
              options.onRequest?.(performance.now() - startedAt, bytes)
              settle(entries, response, undefined)
            },
            error => settle(entries, undefined, error)
          )
          .finally(() => {
            requestsInFlight--
            notify()
          })
      }
    }
    if (!dirty) {
      await new Promise<void>(resolve => {
        wake = resolve
      })
    }
    dirty = false
  }
}
