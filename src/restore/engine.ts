/**
 * The restore engine (DESIGN.md section 1, backwards): plan, prepare target topics, then per
 * target partition read the backed-up frames that overlap the window, turn batches into
 * producible ones (outgoing.ts) and send them through the idempotent raw producer, recording
 * for every acknowledged batch which source offsets landed at which target offsets.
 *
 * Exactly once, also across crashes: the state (restores/{id}/restore.json) records, per
 * partition, the source position and the target end offset after the last acknowledged batch.
 * A run (or an internal restart after a leader change) first reads each target partition's
 * end offset; records beyond the recorded end were written by batches whose acknowledgement
 * was lost, and since our producer writes each partition in order, they are exactly the next
 * records of the source stream: those are skipped (and mapped), the rest is sent.
 * This assumes that nothing else writes to the target partitions during a restore.
 */
import { createHash } from 'node:crypto'
import { BackupError } from '../errors.ts'
import { listOffsets, listTopics, partitionKey, topicConfigValues } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { initProducerId } from '../kafka/raw-produce.ts'
import type { Storage } from '../storage/storage.ts'
import { topicMatcher } from '../topics.ts'
import { toolVersion } from '../version.ts'
import { OffsetMap, type SerializedOffsetRun } from './offset-map.ts'
import {
  dropLeadingRecords,
  leadingRuns,
  mergeOutgoing,
  type OutgoingBatch,
  restoreFloor,
  toOutgoing
} from './outgoing.ts'
import { buildPlan, type PartitionPlan, type PlanOptions, type RestorePlan } from './plan.ts'
import { PartitionFeed, RestartNeeded, sendToLeader } from './producer.ts'
import { readPartitionBatches } from './source.ts'
import { mayOverlap } from './window.ts'

export interface RestoreOptions extends PlanOptions {
  storage: Storage
  cluster: KafkaCluster
  bootstrapServers: string[]
  createTopics: boolean
  defaultReplicationFactor: number
  dryRun: boolean
  maxConcurrentPartitions: number
  rateLimitBytesPerSec?: number
  resetConsumerOffsets: boolean
  /** Groups whose offsets to translate and commit: names or `*` patterns. */
  consumerGroups: string[]
  /** Write into target partitions that already hold records (appending after them). */
  allowNonEmptyTarget: boolean
  maxInFlightPerPartition: number
  /**
   * Runs of consecutive small batches (under 16 KiB) are merged into one batch of up to this
   * many bytes (the broker takes one batch per partition per request, so a topic written one
   * record per batch would otherwise restore one record per round trip).
   */
  coalesceMaxBytes: number
  maxRequestBytes: number
  checkpointIntervalMs: number
  signal?: AbortSignal
  onWarning?: (message: string, context: Record<string, unknown>) => void
  onRequest?: (durationMs: number, bytes: number) => void
  /** The target acknowledged a batch of this many records and bytes. */
  onAcknowledged?: (records: number, bytes: number) => void
}

export interface PartitionState {
  sourceTopic: string
  sourcePartition: number
  targetTopic: string
  targetPartition: number
  /** Every source record below this is restored (or outside the window). */
  sourceNextOffset: string
  targetStartOffset: string
  /** The target partition's end after the last acknowledged batch. */
  targetNextOffset: string
  records: number
  bytes: number
  done: boolean
  offsetMap: SerializedOffsetRun[]
}

export interface CommittedGroup {
  groupId: string
  offsets: Array<{ topic: string; partition: number; sourceOffset: string; targetOffset: string }>
}

export interface RestoreState {
  format: 'kafka-backup-restore'
  formatVersion: 1
  toolVersion: string
  restoreId: string
  backupId: string
  status: 'running' | 'complete' | 'failed' | 'stopped'
  startedAt: string
  updatedAt: string
  finishedAt?: string
  error?: string
  target: { clusterId: string | null; bootstrapServers: string[] }
  window: { start: string | null; end: string | null }
  partitions: PartitionState[]
  consumerGroups: CommittedGroup[]
}

export interface RestoreSummary {
  restoreId: string
  backupId: string
  status: 'complete' | 'stopped' | 'planned'
  dryRun: boolean
  partitions: Array<{
    source: string
    target: string
    records: number
    bytes: number
  }>
  topicsCreated: string[]
  records: number
  bytes: number
  durationMs: number
  consumerGroups: CommittedGroup[]
}

export const restoreStateKey = (backupId: string, restoreId: string) => `${backupId}/restores/${restoreId}/restore.json`

const MAX_RESTARTS = 30
/**
 * Only batches below this are merged: merging decodes and re-encodes on the main thread (22%
 * of restore CPU when 50-60 KiB producer batches were merged, bench/), and batches of this size
 * already fill a Produce request well. Topics written one record per batch still get merged.
 */
const SMALL_BATCH_BYTES = 16 * 1024

/** A restore is identified by what it restores where, so that rerunning a config resumes it. */
function restoreIdOf(plan: RestorePlan, clusterId: string | null, options: RestoreOptions): string {
  const identity = JSON.stringify({
    clusterId,
    window: [options.window.start?.toString() ?? null, options.window.end?.toString() ?? null],
    partitions: plan.topics.flatMap(t =>
      t.partitions.map(p => [p.sourceTopic, p.sourcePartition, p.targetTopic, p.targetPartition])
    )
  })
  return `restore-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}`
}

class Semaphore {
  #available: number
  readonly #waiters: Array<() => void> = []

  constructor(count: number) {
    this.#available = count
  }

  async acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#available--
      return
    }
    await new Promise<void>(resolve => this.#waiters.push(resolve))
  }

  release(): void {
    const next = this.#waiters.shift()
    if (next) {
      next()
    } else {
      this.#available++
    }
  }
}

/** rate_limit_bytes_per_sec as a token bucket with one second of burst. */
function throttleOf(bytesPerSec: number | undefined): ((bytes: number) => Promise<void>) | undefined {
  if (!bytesPerSec) {
    return undefined
  }
  let tokens = bytesPerSec
  let refilledAt = performance.now()
  return async bytes => {
    for (;;) {
      const now = performance.now()
      tokens = Math.min(bytesPerSec, tokens + ((now - refilledAt) / 1000) * bytesPerSec)
      refilledAt = now
      if (tokens >= Math.min(bytes, bytesPerSec)) {
        tokens -= bytes
        return
      }
      await new Promise(resolve => setTimeout(resolve, ((Math.min(bytes, bytesPerSec) - tokens) / bytesPerSec) * 1000))
    }
  }
}

export class RestoreEngine {
  readonly #options: RestoreOptions
  #state: RestoreState | undefined
  #plannedRecords = 0
  #plannedByTarget = new Map<string, number>()
  /** Per target topic: the merge limit, within its max.message.bytes. */
  #coalesceLimits = new Map<string, number>()
  readonly #maps = new Map<PartitionState, OffsetMap>()

  constructor(options: RestoreOptions) {
    this.#options = options
  }

  progress(): PartitionState[] {
    return this.#state?.partitions ?? []
  }

  /** Records in the segments the plan reads (an upper bound with a time window). */
  plannedRecords(): number {
    return this.#plannedRecords
  }

  /** Per target partition: planned records not restored yet (0 once done). */
  remaining(): Array<{ topic: string; partition: number; lagRecords: number }> {
    return this.progress().map(p => ({
      topic: p.targetTopic,
      partition: p.targetPartition,
      lagRecords: p.done
        ? 0
        : Math.max((this.#plannedByTarget.get(`${p.targetTopic}/${p.targetPartition}`) ?? 0) - p.records, 0)
    }))
  }

  async run(): Promise<RestoreSummary> {
    const options = this.#options
    const startedAt = Date.now()
    const signal = options.signal ?? new AbortController().signal
    const plan = await buildPlan(options.storage, options)
    this.#plannedRecords = plan.records
    for (const partition of plan.topics.flatMap(t => t.partitions)) {
      this.#plannedByTarget.set(`${partition.targetTopic}/${partition.targetPartition}`, partition.records)
    }
    const metadata = await options.cluster.metadata([], false)
    const restoreId = restoreIdOf(plan, metadata.id, options)
    const partitions = plan.topics.flatMap(t => t.partitions)

    if (options.dryRun) {
      const existing = new Set((await listTopics(options.cluster)).map(t => t.name))
      return {
        restoreId,
        backupId: options.backupId,
        status: 'planned',
        dryRun: true,
        partitions: partitions.map(p => ({
          source: `${p.sourceTopic}/${p.sourcePartition}`,
          target: `${p.targetTopic}/${p.targetPartition}`,
          records: p.records,
          bytes: p.bytes
        })),
        topicsCreated: plan.topics.filter(t => !existing.has(t.targetTopic)).map(t => t.targetTopic),
        records: plan.records,
        bytes: plan.bytes,
        durationMs: Date.now() - startedAt,
        consumerGroups: []
      }
    }

    if (options.resetConsumerOffsets) {
      await this.#assertGroupsInactive(plan)
    }
    const topicsCreated = await this.#prepareTopics(plan)
    await this.#checkTargetConfigs(plan)
    const state = await this.#openState(restoreId, metadata.id, partitions)
    this.#state = state
    const byTarget = new Map(partitions.map(p => [`${p.targetTopic}/${p.targetPartition}`, p]))

    const checkpointTimer = setInterval(() => {
      this.#saveState().catch(error =>
        options.onWarning?.(`could not save the restore state: ${(error as Error).message}`, {})
      )
    }, options.checkpointIntervalMs)
    try {
      for (let attempt = 0; ; attempt++) {
        const active = state.partitions.filter(p => !p.done)
        if (active.length === 0 || signal.aborted) {
          break
        }
        try {
          await this.#sendAll(active, byTarget, signal)
        } catch (error) {
          if (error instanceof RestartNeeded && signal.aborted) {
            // Stopped by the caller (SIGINT/SIGTERM): the acknowledged position is saved below.
            break
          }
          if (!(error instanceof RestartNeeded)) {
            throw error
          }
          if (attempt >= MAX_RESTARTS) {
            throw new BackupError('KB_KAFKA', `restore gave up after ${attempt} restarts: ${error.message}`, {
              cause: error
            })
          }
          options.onWarning?.(`restarting the restore from its acknowledged position: ${error.message}`, {})
          await new Promise(resolve => setTimeout(resolve, Math.min(100 * 2 ** attempt, 5000)))
        }
      }
      if (!signal.aborted && options.resetConsumerOffsets) {
        state.consumerGroups = await this.#commitGroupOffsets(plan)
      }
      state.status = signal.aborted ? 'stopped' : 'complete'
      state.finishedAt = new Date().toISOString()
    } catch (error) {
      state.status = 'failed'
      state.error = (error as Error).message
      throw error
    } finally {
      clearInterval(checkpointTimer)
      await this.#saveState()
    }
    return {
      restoreId,
      backupId: options.backupId,
      status: signal.aborted ? 'stopped' : 'complete',
      dryRun: false,
      partitions: state.partitions.map(p => ({
        source: `${p.sourceTopic}/${p.sourcePartition}`,
        target: `${p.targetTopic}/${p.targetPartition}`,
        records: p.records,
        bytes: p.bytes
      })),
      topicsCreated,
      records: state.partitions.reduce((sum, p) => sum + p.records, 0),
      bytes: state.partitions.reduce((sum, p) => sum + p.bytes, 0),
      durationMs: Date.now() - startedAt,
      consumerGroups: state.consumerGroups
    }
  }

  async #saveState(): Promise<void> {
    const state = this.#state
    if (!state) {
      return
    }
    for (const [partition, map] of this.#maps) {
      partition.offsetMap = map.toJSON()
    }
    state.updatedAt = new Date().toISOString()
    await this.#options.storage.replace(
      restoreStateKey(state.backupId, state.restoreId),
      Buffer.from(`${JSON.stringify(state, null, 2)}\n`)
    )
  }

  async #prepareTopics(plan: RestorePlan): Promise<string[]> {
    const { cluster, createTopics, defaultReplicationFactor } = this.#options
    const existing = new Map((await listTopics(cluster)).map(t => [t.name, t]))
    const created: string[] = []
    for (const topic of plan.topics) {
      const found = existing.get(topic.targetTopic)
      if (found) {
        if (found.partitionCount < topic.partitionCount) {
          throw new BackupError(
            'KB_CONFIG_INVALID',
            `target topic ${topic.targetTopic} has ${found.partitionCount} partitions; restoring ${topic.sourceTopic} needs ${topic.partitionCount}`,
            { topic: topic.targetTopic, expected: topic.partitionCount, found: found.partitionCount }
          )
        }
        continue
      }
      if (!createTopics) {
        throw new BackupError(
          'KB_TOPIC_NOT_FOUND',
          `target topic ${topic.targetTopic} does not exist; create it or set restore.create_topics: true`,
          { topic: topic.targetTopic }
        )
      }
      try {
        await cluster.admin.createTopics({
          topics: [topic.targetTopic],
          partitions: topic.partitionCount,
          replicas: defaultReplicationFactor,
          configs: Object.entries(topic.configs).map(([name, value]) => ({ name, value }))
        })
      } catch (error) {
        throw new BackupError(
          'KB_KAFKA',
          `could not create target topic ${topic.targetTopic}: ${(error as Error).message}`,
          { cause: error, topic: topic.targetTopic }
        )
      }
      created.push(topic.targetTopic)
    }
    if (created.length > 0) {
      await this.#waitForLeaders(created)
    }
    return created
  }

  /**
   * Sizes merged batches to each target topic's max.message.bytes, and warns when its time
   * retention would delete restored records right away (old data restored into a topic with
   * the default 7 days is gone as soon as its segment rolls: KAFKA-NOTES.md, "Produce").
   */
  async #checkTargetConfigs(plan: RestorePlan): Promise<void> {
    const { cluster, coalesceMaxBytes } = this.#options
    const values = await topicConfigValues(
      cluster,
      plan.topics.map(t => t.targetTopic),
      ['max.message.bytes', 'retention.ms', 'cleanup.policy']
    )
    for (const topic of plan.topics) {
      const configs = values.get(topic.targetTopic) ?? {}
      const maxMessageBytes = Number(configs['max.message.bytes'])
      if (maxMessageBytes > 0) {
        // Leave room for the batch header and the request framing around it.
        this.#coalesceLimits.set(topic.targetTopic, Math.min(coalesceMaxBytes, maxMessageBytes - 1024))
      }
      const retentionMs = Number(configs['retention.ms'])
      const oldest = topic.partitions
        .flatMap(p => p.segments.map(s => Number(s.minTimestamp)))
        .filter(t => t >= 0)
        .reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY)
      if (configs['cleanup.policy']?.includes('delete') && retentionMs > 0 && oldest < Date.now() - retentionMs) {
        this.#options.onWarning?.(
          `target topic ${topic.targetTopic} has retention.ms=${retentionMs}, but restored records date back to ${new Date(oldest).toISOString()}: ` +
            `the broker deletes them as soon as their segment rolls; set retention.ms=-1 (or longer) on ${topic.targetTopic}`,
          { topic: topic.targetTopic, retentionMs }
        )
      }
    }
  }

  async #waitForLeaders(topics: string[]): Promise<void> {
    for (let attempt = 0; attempt < 300; attempt++) {
      const metadata = await this.#options.cluster.metadata(topics, true).catch(() => undefined)
      if (metadata && topics.every(t => metadata.topics.get(t)?.partitions.every(p => p.leader >= 0))) {
        return
      }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new BackupError('KB_KAFKA', `created topics ${topics.join(', ')} have no leaders after 30 s`, { topics })
  }

  async #openState(restoreId: string, clusterId: string | null, partitions: PartitionPlan[]): Promise<RestoreState> {
    const { storage, backupId, window, cluster, allowNonEmptyTarget } = this.#options
    const key = restoreStateKey(backupId, restoreId)
    const previous = (await storage.head(key))
      ? (JSON.parse((await storage.get(key)).toString('utf8')) as RestoreState)
      : undefined
    const known = new Map((previous?.partitions ?? []).map(p => [`${p.targetTopic}/${p.targetPartition}`, p]))
    const fresh = partitions.filter(p => !known.has(`${p.targetTopic}/${p.targetPartition}`))
    const targets = fresh.map(p => ({ topic: p.targetTopic, partition: p.targetPartition }))
    const [logStart, highWatermark] = await Promise.all([
      listOffsets(cluster, targets, 'earliest'),
      listOffsets(cluster, targets, 'latest')
    ])
    const states: PartitionState[] = []
    for (const plan of partitions) {
      const target = `${plan.targetTopic}/${plan.targetPartition}`
      const existing = known.get(target)
      if (existing) {
        states.push(existing)
        continue
      }
      const end = highWatermark.get(partitionKey(plan.targetTopic, plan.targetPartition)) ?? 0n
      const start = logStart.get(partitionKey(plan.targetTopic, plan.targetPartition)) ?? 0n
      if (end > start && !allowNonEmptyTarget) {
        throw new BackupError(
          'KB_TARGET_NOT_EMPTY',
          `target partition ${target} already holds ${end - start} records; restore into an empty topic, or set restore.allow_non_empty_target: true to append after them`,
          { topic: plan.targetTopic, partition: plan.targetPartition, found: (end - start).toString() }
        )
      }
      states.push({
        sourceTopic: plan.sourceTopic,
        sourcePartition: plan.sourcePartition,
        targetTopic: plan.targetTopic,
        targetPartition: plan.targetPartition,
        sourceNextOffset: '-1',
        targetStartOffset: end.toString(),
        targetNextOffset: end.toString(),
        records: 0,
        bytes: 0,
        done: false,
        offsetMap: []
      })
    }
    for (const partition of states) {
      this.#maps.set(partition, OffsetMap.fromJSON(partition.offsetMap))
    }
    const now = new Date().toISOString()
    return {
      format: 'kafka-backup-restore',
      formatVersion: 1,
      toolVersion,
      restoreId,
      backupId,
      status: 'running',
      startedAt: previous?.startedAt ?? now,
      updatedAt: now,
      target: { clusterId, bootstrapServers: this.#options.bootstrapServers },
      window: { start: window.start?.toString() ?? null, end: window.end?.toString() ?? null },
      partitions: states,
      consumerGroups: previous?.consumerGroups ?? []
    }
  }

  /** One pass: reconcile with the target, then send until done or a restart is needed. */
  async #sendAll(active: PartitionState[], byTarget: Map<string, PartitionPlan>, signal: AbortSignal): Promise<void> {
    const { cluster, maxConcurrentPartitions } = this.#options
    const targetTopics = [...new Set(active.map(p => p.targetTopic))]
    const ends = await listOffsets(
      cluster,
      active.map(p => ({ topic: p.targetTopic, partition: p.targetPartition })),
      'latest'
    )
    const metadata = await cluster.metadata(targetTopics, true)
    const anyBroker = metadata.brokers.keys().next().value
    if (anyBroker === undefined) {
      throw new RestartNeeded('the target cluster reported no brokers')
    }
    const producer = await initProducerId(await cluster.connection(metadata, anyBroker))
    const slots = new Semaphore(maxConcurrentPartitions)
    // Ends this pass's pumps when a sender fails, so that the next pass starts from a clean slate.
    const pass = new AbortController()
    const passSignal = AbortSignal.any([signal, pass.signal])
    const byLeader = new Map<number, PartitionFeed[]>()
    const pumps: Promise<void>[] = []
    for (const partition of active) {
      const plan = byTarget.get(`${partition.targetTopic}/${partition.targetPartition}`)!
      const end = ends.get(partitionKey(partition.targetTopic, partition.targetPartition)) ?? 0n
      const alreadyWritten = end - BigInt(partition.targetNextOffset)
      if (alreadyWritten < 0n) {
        throw new BackupError(
          'KB_KAFKA',
          `target partition ${partition.targetTopic}/${partition.targetPartition} ends at ${end}, before the ${partition.targetNextOffset} this restore already wrote; was it deleted or truncated?`,
          { topic: partition.targetTopic, partition: partition.targetPartition }
        )
      }
      const leader = metadata.topics.get(partition.targetTopic)?.partitions[partition.targetPartition]?.leader ?? -1
      if (leader < 0) {
        throw new RestartNeeded(`${partition.targetTopic}/${partition.targetPartition} has no leader`)
      }
      const map = this.#maps.get(partition)!
      const feed = new PartitionFeed(partition.targetTopic, partition.targetPartition, 4, (outgoing, baseOffset) => {
        for (const run of outgoing.runs) {
          map.add({
            sourceOffset: run.sourceOffset,
            targetOffset: baseOffset + BigInt(run.targetDelta),
            count: run.count
          })
        }
        partition.targetNextOffset = (baseOffset + BigInt(outgoing.batch.recordCount)).toString()
        partition.sourceNextOffset = outgoing.sourceNextAfter.toString()
        partition.records += outgoing.batch.recordCount
        partition.bytes += outgoing.batch.bytes.length
        this.#options.onAcknowledged?.(outgoing.batch.recordCount, outgoing.batch.bytes.length)
      })
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), feed])
      pumps.push(
        (async () => {
          await slots.acquire()
          try {
            await feed.pump(this.#skipWritten(partition, this.#outgoing(plan, partition), alreadyWritten), passSignal)
          } finally {
            slots.release()
          }
        })()
      )
    }
    const senders = [...byLeader].map(async ([leader, feeds]) => {
      const connection = await cluster.connection(metadata, leader)
      await sendToLeader(connection, feeds, {
        producer,
        maxInFlightPerPartition: this.#options.maxInFlightPerPartition,
        maxRequestBytes: this.#options.maxRequestBytes,
        timeoutMs: 30_000,
        signal: passSignal,
        throttle: throttleOf(this.#options.rateLimitBytesPerSec),
        onRequest: this.#options.onRequest
      })
      for (const feed of feeds) {
        const partition = active.find(p => p.targetTopic === feed.topic && p.targetPartition === feed.partition)!
        partition.done = true
        const plan = byTarget.get(`${partition.targetTopic}/${partition.targetPartition}`)!
        partition.sourceNextOffset = plan.index.nextOffset
      }
    })
    const results = await Promise.allSettled(senders)
    const failed = results.find(r => r.status === 'rejected')
    if (failed) {
      pass.abort()
      for (const feeds of byLeader.values()) {
        for (const feed of feeds) {
          feed.release()
        }
      }
      await Promise.allSettled(pumps)
      throw failed.reason
    }
    await Promise.all(pumps)
  }

  async *#outgoing(plan: PartitionPlan, partition: PartitionState): AsyncGenerator<OutgoingBatch> {
    const { storage, backupId, window, signal } = this.#options
    const coalesceMaxBytes = this.#coalesceLimits.get(plan.targetTopic) ?? this.#options.coalesceMaxBytes
    const smallBatchBytes = Math.min(SMALL_BATCH_BYTES, coalesceMaxBytes / 2)
    const fromOffset = BigInt(partition.sourceNextOffset)
    const index = { ...plan.index, segments: plan.segments }
    let pending: OutgoingBatch[] = []
    let pendingBytes = 0
    for await (const batch of readPartitionBatches(storage, backupId, index, {
      fromOffset,
      frameFilter: row => mayOverlap(window, row.maxTimestamp),
      signal
    })) {
      const outgoing = toOutgoing(batch, window, restoreFloor(batch, fromOffset, plan.index.gaps))
      if (!outgoing) {
        continue
      }
      const size = outgoing.batch.bytes.length
      const small = size < smallBatchBytes
      if (pending.length > 0 && (!small || pendingBytes + size > coalesceMaxBytes)) {
        yield mergeOutgoing(pending)
        pending = []
        pendingBytes = 0
      }
      if (!small) {
        yield outgoing
      } else {
        pending.push(outgoing)
        pendingBytes += size
      }
    }
    if (pending.length > 0) {
      yield mergeOutgoing(pending)
    }
  }

  /** Skips (and maps) the records a previous attempt wrote without seeing the acknowledgement. */
  async *#skipWritten(
    partition: PartitionState,
    source: AsyncIterable<OutgoingBatch>,
    alreadyWritten: bigint
  ): AsyncGenerator<OutgoingBatch> {
    const map = this.#maps.get(partition)!
    let remaining = alreadyWritten
    for await (const outgoing of source) {
      if (remaining === 0n) {
        yield outgoing
        continue
      }
      const count = outgoing.batch.recordCount
      const take = Number(remaining < BigInt(count) ? remaining : BigInt(count))
      const base = BigInt(partition.targetNextOffset)
      const runs = leadingRuns(outgoing, take)
      for (const run of runs) {
        map.add({ sourceOffset: run.sourceOffset, targetOffset: base + BigInt(run.targetDelta), count: run.count })
      }
      partition.targetNextOffset = (base + BigInt(take)).toString()
      partition.records += take
      remaining -= BigInt(take)
      if (take === count) {
        partition.sourceNextOffset = outgoing.sourceNextAfter.toString()
        continue
      }
      const lastRun = runs.at(-1)!
      partition.sourceNextOffset = (lastRun.sourceOffset + BigInt(lastRun.count)).toString()
      const rest = dropLeadingRecords(outgoing, take)
      if (rest) {
        yield rest
      }
    }
    if (remaining > 0n) {
      throw new BackupError(
        'KB_KAFKA',
        `target partition ${partition.targetTopic}/${partition.targetPartition} holds ${remaining} more records than this restore can account for; something else wrote to it`,
        { topic: partition.targetTopic, partition: partition.targetPartition }
      )
    }
  }

  /**
   * Refuses before anything is written when a group whose offsets this restore will reset has
   * active members on the target (checked again right before the commit).
   */
  async #assertGroupsInactive(plan: RestorePlan): Promise<void> {
    const wanted = topicMatcher({ include: this.#options.consumerGroups })
    const planned = new Set(plan.topics.flatMap(t => t.partitions.map(p => `${p.sourceTopic}/${p.sourcePartition}`)))
    for (const group of plan.manifest.consumerGroups) {
      if (wanted(group.groupId) && group.offsets.some(o => planned.has(`${o.topic}/${o.partition}`))) {
        await this.#assertGroupInactive(group.groupId)
      }
    }
  }

  async #assertGroupInactive(groupId: string): Promise<void> {
    const { cluster } = this.#options
    const described = await cluster.call(`describing consumer group ${groupId}`, () =>
      cluster.admin.describeGroups({ groups: [groupId] })
    )
    const targetState = described.get(groupId)?.state ?? 'Dead'
    if (!['Empty', 'Dead', 'EMPTY', 'DEAD'].includes(String(targetState))) {
      throw new BackupError(
        'KB_GROUP_ACTIVE',
        `consumer group ${groupId} is ${targetState} on the target; stop its consumers before resetting its offsets`,
        { groupId, found: targetState }
      )
    }
  }

  async #commitGroupOffsets(plan: RestorePlan): Promise<CommittedGroup[]> {
    const { cluster, consumerGroups } = this.#options
    const state = this.#state!
    const wanted = topicMatcher({ include: consumerGroups })
    const groups = plan.manifest.consumerGroups.filter(g => wanted(g.groupId))
    if (groups.length === 0) {
      this.#options.onWarning?.(
        `restore.consumer_groups ${JSON.stringify(consumerGroups)} matches none of the ${plan.manifest.consumerGroups.length} groups captured in the backup; no offsets committed`,
        {}
      )
    }
    const bySource = new Map(state.partitions.map(p => [`${p.sourceTopic}/${p.sourcePartition}`, p]))
    const committed: CommittedGroup[] = []
    for (const group of groups) {
      const offsets: CommittedGroup['offsets'] = []
      for (const entry of group.offsets) {
        const partition = bySource.get(`${entry.topic}/${entry.partition}`)
        if (!partition) {
          continue
        }
        const targetOffset = this.#maps
          .get(partition)!
          .translate(BigInt(entry.offset), BigInt(partition.targetNextOffset))
        offsets.push({
          topic: partition.targetTopic,
          partition: partition.targetPartition,
          sourceOffset: entry.offset,
          targetOffset: targetOffset.toString()
        })
      }
      if (offsets.length === 0) {
        continue
      }
      await this.#assertGroupInactive(group.groupId)
      const byTopic = new Map<string, Array<{ partition: number; offset: bigint }>>()
      for (const o of offsets) {
        byTopic.set(o.topic, [
          ...(byTopic.get(o.topic) ?? []),
          { partition: o.partition, offset: BigInt(o.targetOffset) }
        ])
      }
      await cluster.call(`committing offsets of consumer group ${group.groupId}`, () =>
        cluster.admin.alterConsumerGroupOffsets({
          groupId: group.groupId,
          topics: [...byTopic].map(([name, partitionOffsets]) => ({ name, partitionOffsets }))
        })
      )
      committed.push({ groupId: group.groupId, offsets })
    }
    return committed
  }
}
