/**
 * The backup's read side: one raw Fetch per leader broker covering all of its partitions,
 * pipelined (the next request is in flight while the last response is compressed and
 * written), READ_COMMITTED, record sets kept as bytes. Control batches, aborted transactions
 * and batches below the fetch offset are dropped here at batch level; nothing is decoded.
 *
 * Leader changes and broker restarts: the affected broker loop ends, all loops stop at their
 * next response, metadata is refreshed and the loops restart from each partition's fetch
 * position (which only ever advances past batches already handed to a partition task), so
 * no batch is lost or duplicated. OFFSET_OUT_OF_RANGE below the log start jumps to the new
 * log start and records the gap in the partition's index.
 */
import { splitRecordSet } from '../batch/split.ts'
import { TransactionFilter } from '../batch/transactions.ts'
import { BackupError, isBackupError } from '../errors.ts'
import { listOffsets, partitionKey } from '../kafka/admin.ts'
import type { ClusterMetadata, Connection, KafkaCluster } from '../kafka/cluster.ts'
import { IsolationLevel, type RawFetchPartition, type RawFetchResponse, rawFetch } from '../kafka/raw-fetch.ts'
import { Outage, untilAborted } from '../kafka/retry.ts'
import { responseBuffers } from '../kafka/wire/buffer-pool.ts'
import { errorName, isRetriable } from '../kafka/wire/errors.ts'
import type { ByteBudget } from './budget.ts'
import { diverged, divergence } from './divergence.ts'
import type { PartitionTask } from './partition-task.ts'

export interface FetcherOptions {
  maxWaitMs: number
  minBytes: number
  maxBytes: number
  partitionMaxBytes: number
  budget: ByteBudget
  /** A partition holding this many fetched, unwritten bytes is left out of requests until it drains. */
  maxPartitionBufferedBytes?: number
  /** Fetch at most this many partitions at a time; the next starts when one is done. */
  maxConcurrentPartitions?: number
  signal: AbortSignal
  /** Names the backup in errors. */
  backupId: string
  /**
   * Continuous runs: how often the loops regroup to read the metadata again, so that partitions
   * added to a topic are seen (`onPartitionsAdded`) even when no error forces a refresh.
   */
  metadataRefreshIntervalMs?: number
  /** A topic has more partitions than it had: returns the tasks that back the new ones up. */
  onPartitionsAdded?: (topic: string, partitionCount: number) => Promise<PartitionTask[]>
  /** Called once per partition whose topic disappeared from the cluster. */
  onTopicDeleted?: (task: PartitionTask) => void
  /** Called for every response, with the time from request to parsed response. */
  onFetch?: (durationMs: number, bytes: number) => void
  /** Called before each wait for the cluster to answer again: what failed, when the run gives up. */
  onRetry?: (message: string, context: Record<string, unknown>) => void
}

/** Errors after which a fresh look at the metadata (new leader, new epoch) is the cure. */
const refreshMetadataErrors = new Set([
  'UNKNOWN_TOPIC_OR_PARTITION',
  'LEADER_NOT_AVAILABLE',
  'NOT_LEADER_OR_FOLLOWER',
  'REPLICA_NOT_AVAILABLE',
  'KAFKA_STORAGE_ERROR',
  'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH',
  'OFFSET_NOT_AVAILABLE',
  'UNKNOWN_TOPIC_ID',
  'INCONSISTENT_TOPIC_ID',
  'NOT_COORDINATOR',
  'REQUEST_TIMED_OUT'
])

/**
 * A failure worth retrying until the deadline even though the client did not call it a
 * network error: a metadata refresh can fail for a moment while leaders move.
 */
class TransientError extends Error {}

interface PartitionState {
  task: PartitionTask
  transactions: TransactionFilter
  needsOffsetCheck: boolean
  /**
   * The leader epoch of the last batch before fetchOffset, sent with each Fetch so that the
   * leader reports a log that no longer continues it (docs/source-changes.md, "A log truncated and written again");
   * -1 until the first batch of this run, which the check at the run's start covers.
   */
  lastFetchedEpoch: number
}

function newState(task: PartitionTask): PartitionState {
  return { task, transactions: new TransactionFilter(), needsOffsetCheck: false, lastFetchedEpoch: -1 }
}

export class BackupFetcher {
  readonly #cluster: KafkaCluster
  readonly #options: FetcherOptions
  readonly #states: PartitionState[]
  /** Partitions per topic that have a task; a larger count in the metadata means some were added. */
  readonly #partitionCounts = new Map<string, number>()
  #metadata: ClusterMetadata | undefined
  #restartRequested = false
  /** Loops stop and regroup without a back-off: a partition finished and another may start. */
  #regroupRequested = false
  #partitionsWaiting = false
  readonly #outage: Outage

  constructor(cluster: KafkaCluster, tasks: PartitionTask[], options: FetcherOptions) {
    this.#cluster = cluster
    this.#options = options
    this.#states = tasks.map(newState)
    for (const { topic } of tasks) {
      this.#partitionCounts.set(topic, (this.#partitionCounts.get(topic) ?? 0) + 1)
    }
    this.#outage = new Outage({
      what: 'backup',
      deadlineMs: cluster.unreachableTimeoutMs,
      deadlineKey: cluster.unreachableTimeoutKey,
      signal: options.signal,
      onRetry: options.onRetry
    })
  }

  /** Fetches until every partition reached its stop offset (one-shot) or the signal aborts. */
  async run(): Promise<void> {
    const { signal, metadataRefreshIntervalMs } = this.#options
    const refresher =
      metadataRefreshIntervalMs === undefined
        ? undefined
        : setInterval(() => {
            this.#regroupRequested = true
          }, metadataRefreshIntervalMs)
    try {
      await this.#fetchUntilDone(signal)
    } finally {
      clearInterval(refresher)
    }
  }

  async #fetchUntilDone(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.#assertTasksHealthy()
      const notDone = this.#states.filter(s => !s.task.done)
      const active = notDone.slice(0, this.#options.maxConcurrentPartitions)
      if (active.length === 0) {
        return
      }
      this.#partitionsWaiting = active.length < notDone.length
      const known = this.#states.length
      try {
        await untilAborted(this.#refresh(active), signal)
      } catch (error) {
        if (signal.aborted) {
          return
        }
        await this.#outage.retry(error)
        continue
      }
      if (this.#states.length > known) {
        // Partitions were added: group them with the others at once.
        continue
      }
      const byLeader = new Map<number, PartitionState[]>()
      for (const state of active) {
        if (state.task.done) {
          continue
        }
        const leader = this.#metadata!.topics.get(state.task.topic)?.partitions[state.task.partition]?.leader ?? -1
        if (leader < 0) {
          this.#restartRequested = true
          continue
        }
        byLeader.set(leader, [...(byLeader.get(leader) ?? []), state])
      }
      this.#restartRequested = false
      this.#regroupRequested = false
      const loops = await Promise.allSettled([...byLeader].map(([leader, states]) => this.#brokerLoop(leader, states)))
      if (signal.aborted) {
        return
      }
      const failure = loops.find(result => result.status === 'rejected')
      if (failure) {
        await this.#outage.retry(failure.reason)
      } else if (this.#restartRequested) {
        await this.#outage.retry(undefined)
      } else {
        this.#outage.recovered()
      }
    }
  }

  #assertTasksHealthy(): void {
    for (const state of this.#states) {
      state.task.assertHealthy()
    }
  }

  async #refresh(active: PartitionState[]): Promise<void> {
    const topics = [...new Set(active.map(s => s.task.topic))]
    let metadata: ClusterMetadata
    try {
      metadata = await this.#cluster.metadata(topics)
    } catch (error) {
      if (isBackupError(error, 'KB_KAFKA_UNREACHABLE')) {
        throw error
      }
      // One deleted topic fails the whole Metadata call: find out which, per topic.
      const present: string[] = []
      for (const topic of topics) {
        try {
          await this.#cluster.metadata([topic])
          present.push(topic)
        } catch {
          for (const state of active.filter(s => s.task.topic === topic)) {
            await this.#confirmDeleted(state)
          }
        }
      }
      if (present.length === topics.length) {
        throw new TransientError('metadata refresh failed', { cause: error })
      }
      metadata = await this.#cluster.metadata(present)
    }
    for (const { task } of active) {
      const found = metadata.topics.get(task.topic)
      if (found && found.id !== task.topicId) {
        throw new BackupError(
          'KB_TOPIC_RECREATED',
          `topic ${task.topic} was deleted and recreated during the backup (id ${task.topicId}, now ${found.id}); ` +
            `the backup of ${task.topic}/${task.partition} ends at offset ${task.checkpoint}. Back the new topic up under a new backup_id`,
          {
            topic: task.topic,
            partition: task.partition,
            offset: task.checkpoint.toString(),
            expected: task.topicId,
            found: found.id
          }
        )
      }
    }
    this.#logLeaderMoves(active, metadata)
    this.#metadata = metadata
    await this.#addPartitions(metadata)
    const checks = active.filter(s => s.needsOffsetCheck && !s.task.done)
    if (checks.length > 0) {
      await this.#resolveOutOfRange(checks)
    }
  }

  async #addPartitions(metadata: ClusterMetadata): Promise<void> {
    const { onPartitionsAdded } = this.#options
    if (!onPartitionsAdded) {
      return
    }
    for (const [topic, known] of this.#partitionCounts) {
      const count = metadata.topics.get(topic)?.partitionsCount ?? known
      if (count > known) {
        for (const task of await onPartitionsAdded(topic, count)) {
          this.#states.push(newState(task))
        }
        this.#partitionCounts.set(topic, count)
      }
    }
  }

  /** Says where leadership moved (a broker stopped or back, a leader election), so the log explains a pause. */
  #logLeaderMoves(active: PartitionState[], metadata: ClusterMetadata): void {
    for (const { task } of active) {
      const before = this.#metadata?.topics.get(task.topic)?.partitions[task.partition]?.leader
      const after = metadata.topics.get(task.topic)?.partitions[task.partition]?.leader
      if (before !== undefined && after !== undefined && before >= 0 && after >= 0 && before !== after) {
        this.#options.onRetry?.(
          `backup: the leader of ${task.topic}/${task.partition} moved from broker ${before} to broker ${after}`,
          { topic: task.topic, partition: task.partition, leader: after }
        )
      }
    }
  }

  async #confirmDeleted(state: PartitionState): Promise<void> {
    const topics = await this.#cluster.topicNames()
    if (!topics.includes(state.task.topic) && !state.task.deleted) {
      state.task.deleted = true
      this.#options.onTopicDeleted?.(state.task)
    }
  }

  async #resolveOutOfRange(states: PartitionState[]): Promise<void> {
    const partitions = states.map(s => ({ topic: s.task.topic, partition: s.task.partition }))
    const [logStart, highWatermark] = await Promise.all([
      listOffsets(this.#cluster, partitions, 'earliest'),
      listOffsets(this.#cluster, partitions, 'latest')
    ])
    for (const state of states) {
      const { task } = state
      const key = partitionKey(task.topic, task.partition)
      const start = logStart.get(key)
      const end = highWatermark.get(key)
      if (start === undefined || end === undefined) {
        continue
      }
      if (task.fetchOffset < start) {
        task.recordGap(task.fetchOffset, start)
        state.lastFetchedEpoch = -1
      } else if (task.fetchOffset > end) {
        throw new BackupError(
          'KB_SOURCE_TRUNCATED',
          `${key}: the backup continues at offset ${task.fetchOffset} but the source log now ends at ${end}: ` +
            'it was truncated (e.g. an unclean leader election); back the topic up under a new backup_id',
          {
            topic: task.topic,
            partition: task.partition,
            offset: task.fetchOffset.toString(),
            expected: `<= ${end}`,
            found: task.fetchOffset.toString()
          }
        )
      }
      state.needsOffsetCheck = false
    }
  }

  async #brokerLoop(leader: number, states: PartitionState[]): Promise<void> {
    const { budget, signal } = this.#options
    const connection = await this.#connect(leader)
    let order = states
    for (;;) {
      const startedAt = performance.now()
      const { response, requested } = await this.#nextFetch(connection, order)
      const work = this.#process(response, requested)
      this.#options.onFetch?.(performance.now() - startedAt, work.bytes)
      if (this.#partitionsWaiting && order.some(s => s.task.done)) {
        this.#regroupRequested = true
      }
      order = order.filter(s => !s.task.done && !s.needsOffsetCheck)
      // A partition whose writes failed ends the run (run() rethrows its error): stop fetching.
      const stop =
        this.#restartRequested ||
        this.#regroupRequested ||
        signal.aborted ||
        order.length === 0 ||
        this.#states.some(s => s.task.failed)
      if (!stop) {
        await budget.waitForRoom(signal)
        // Rotate so that a partition whose first batch exceeds its share still gets to go first
        // (KIP-74 guarantees one whole batch to the first partition of a response).
        order = [...order.slice(1), ...order.slice(0, 1)]
      }
      // Handing over only queues the writes: they run while the next Fetch is in flight. The
      // whole response counts against the budget until its last record set is written, then
      // its buffer is reused for a later response.
      const frame = response.frame
      budget.acquire(frame.length)
      let unwritten = work.items.length
      const written = () => {
        if (--unwritten <= 0) {
          budget.release(frame.length)
          responseBuffers.release(frame)
        }
      }
      for (const item of work.items) {
        item.state.task.enqueue(item.batches, item.positionAfter, written)
      }
      if (work.items.length === 0) {
        written()
      }
      if (stop) {
        return
      }
    }
  }

  /** The next Fetch, for the partitions not at their own buffer cap (waiting for one to drain when all are). */
  async #nextFetch(connection: Connection, order: PartitionState[]) {
    const { maxPartitionBufferedBytes: cap, budget, signal } = this.#options
    let eligible = cap === undefined ? order : order.filter(s => s.task.bufferedBytes < cap)
    while (eligible.length === 0 && !signal.aborted) {
      await budget.waitForRelease(signal)
      eligible = order.filter(s => s.task.bufferedBytes < cap!)
    }
    return this.#fetch(connection, eligible)
  }

  async #connect(leader: number): Promise<Connection> {
    try {
      return await untilAborted(this.#cluster.connection(this.#metadata!, leader), this.#options.signal)
    } catch (error) {
      this.#restartRequested = true
      throw error
    }
  }

  async #fetch(
    connection: Connection,
    states: PartitionState[]
  ): Promise<{ response: RawFetchResponse; requested: Map<string, PartitionState> }> {
    const { maxWaitMs, minBytes, maxBytes, partitionMaxBytes } = this.#options
    const requested = new Map<string, PartitionState>()
    const topics = new Map<
      string,
      Array<{
        partition: number
        fetchOffset: bigint
        currentLeaderEpoch: number
        lastFetchedEpoch: number
        partitionMaxBytes: number
      }>
    >()
    for (const state of states) {
      const { topic, partition } = state.task
      const { topicId } = state.task
      requested.set(`${topicId}/${partition}`, state)
      const leaderEpoch = this.#metadata!.topics.get(topic)?.partitions[partition]?.leaderEpoch ?? -1
      topics.set(topicId, [
        ...(topics.get(topicId) ?? []),
        {
          partition,
          fetchOffset: state.task.fetchOffset,
          currentLeaderEpoch: leaderEpoch,
          lastFetchedEpoch: state.lastFetchedEpoch,
          partitionMaxBytes
        }
      ])
    }
    try {
      const fetched = rawFetch(
        connection,
        {
          maxWaitMs,
          minBytes,
          maxBytes,
          isolationLevel: IsolationLevel.READ_COMMITTED,
          topics: [...topics].map(([topicId, partitions]) => ({ topicId, partitions }))
        },
        { pooledResponse: true }
      )
      // A stop drops a response still on its way: positions advance only in #process.
      const response = await untilAborted(fetched, this.#options.signal)
      return { response, requested }
    } catch (error) {
      this.#restartRequested = true
      throw this.#cluster.failure(`fetching from ${connection.host}:${connection.port}`, error)
    }
  }

  #process(response: RawFetchResponse, requested: Map<string, PartitionState>) {
    if (response.errorCode !== 0) {
      this.#restartRequested = true
      return { items: [], bytes: 0 }
    }
    const items: Array<{
      state: PartitionState
      batches: ReturnType<typeof splitRecordSet>['batches']
      positionAfter: bigint
      bytes: number
    }> = []
    let bytes = 0
    for (const topic of response.topics) {
      for (const fetched of topic.partitions) {
        const state = requested.get(`${topic.topicId}/${fetched.partition}`)
        if (!state || state.task.done) {
          continue
        }
        const item = this.#processPartition(state, fetched)
        if (item) {
          items.push({ state, ...item })
          bytes += item.bytes
        }
      }
    }
    return { items, bytes }
  }

  #processPartition(state: PartitionState, fetched: RawFetchPartition) {
    const { task } = state
    if (fetched.errorCode !== 0) {
      const name = errorName(fetched.errorCode)
      if (name === 'OFFSET_OUT_OF_RANGE') {
        state.needsOffsetCheck = true
        this.#restartRequested = true
        return undefined
      }
      if (refreshMetadataErrors.has(name) || isRetriable(fetched.errorCode)) {
        this.#restartRequested = true
        return undefined
      }
      if (name === 'TOPIC_AUTHORIZATION_FAILED') {
        throw new BackupError(
          'KB_KAFKA_AUTHORIZATION',
          `fetching ${task.topic}/${task.partition} failed: not authorized (${name}): the principal needs Read on topic ${task.topic}`,
          { topic: task.topic, partition: task.partition, kafkaError: name }
        )
      }
      throw new BackupError('KB_KAFKA', `fetching ${task.topic}/${task.partition} failed with ${name}`, {
        topic: task.topic,
        partition: task.partition,
        kafkaError: name
      })
    }
    if (fetched.divergingEpoch !== undefined) {
      const stored = { leaderEpoch: state.lastFetchedEpoch, nextOffset: task.fetchOffset }
      throw diverged(
        this.#options.backupId,
        task.topic,
        task.partition,
        stored,
        fetched.divergingEpoch,
        divergence(stored, fetched.divergingEpoch) ??
          `the leader reports that its log leaves epoch ${fetched.divergingEpoch.leaderEpoch} at offset ${fetched.divergingEpoch.endOffset}`
      )
    }
    task.lastStableOffset = fetched.lastStableOffset
    if (!fetched.records || fetched.records.length === 0) {
      return undefined
    }
    const fetchOffset = task.fetchOffset
    const { batches } = splitRecordSet(fetched.records, { verifyCrc: true })
    if (batches.length === 0) {
      return undefined
    }
    let positionAfter = fetchOffset
    const kept = []
    let bytes = 0
    for (const batch of state.transactions.filter(batches, fetched.abortedTransactions, fetchOffset)) {
      if (task.stopOffset !== undefined && batch.baseOffset >= task.stopOffset) {
        break
      }
      kept.push(batch)
      bytes += batch.bytes.length
    }
    let lastEpoch = state.lastFetchedEpoch
    for (const batch of batches) {
      if (task.stopOffset !== undefined && batch.baseOffset >= task.stopOffset) {
        break
      }
      if (batch.nextOffset > positionAfter) {
        positionAfter = batch.nextOffset
        lastEpoch = batch.partitionLeaderEpoch
      }
    }
    if (positionAfter === fetchOffset) {
      return undefined
    }
    task.fetchOffset = positionAfter
    state.lastFetchedEpoch = lastEpoch
    return { batches: kept, positionAfter, bytes }
  }
}
