/**
 * The restore engine (DESIGN.md section 1, backwards): plan, check the target, then per target
 * partition read the backed-up frames that overlap the window, turn batches into producible
 * ones (outgoing.ts) and send them through the idempotent raw producer, recording for every
 * acknowledged batch which source offsets landed at which target offsets (progress.ts).
 *
 * Exactly once, also across crashes: the state (state.ts) records, per partition, the source
 * position and the target end offset after the last acknowledged batch, and it is durable
 * before the first record is produced. A run (or an internal restart after a leader change)
 * first reads each target partition's end offset; records beyond the recorded end were written
 * by batches whose acknowledgement was lost, and since our producer writes each partition in
 * order, they are exactly the next records of the source stream: those are skipped (and
 * mapped), the rest is sent. Saved progress is trusted only for the target topic it was made
 * on (same topic id) and while the target still holds what it records.
 * This assumes that nothing else writes to the target partitions during a restore.
 *
 * Everything that can refuse a restore is checked before anything is written, and a dry run
 * runs the same checks, so it fails where the real run would.
 */
import { BackupError, isBackupError } from '../errors.ts'
import {
  createTopic,
  findTopics,
  listOffsets,
  partitionKey,
  type TopicInfo,
  topicConfigValues,
  waitForLeaders
} from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { initProducerId } from '../kafka/raw-produce.ts'
import type { Storage } from '../storage/storage.ts'
import { toolVersion } from '../version.ts'
import { assertGroupInactive, commitTranslatedOffsets, groupsToReset } from './groups.ts'
import { mergeOutgoing, type OutgoingBatch, restoreFloor, toOutgoing } from './outgoing.ts'
import { buildPlan, type PartitionPlan, type PlanOptions, type RestorePlan, type TopicPlan } from './plan.ts'
import { PartitionFeed, RestartNeeded, sendToLeader, throttleOf } from './producer.ts'
import { PartitionProgress } from './progress.ts'
import { readPartitionBatches } from './source.ts'
import {
  type CommittedGroup,
  type PartitionState,
  RESTORE_STATE_FORMAT,
  RESTORE_STATE_VERSION,
  type RestoreState,
  readRestoreState,
  restoreIdOf,
  restoreStateKey,
  writeRestoreState
} from './state.ts'
import { mayOverlap } from './window.ts'

export type { CommittedGroup, PartitionState, RestoreState } from './state.ts'
export { restoreStateKey } from './state.ts'

export interface RestoreOptions extends PlanOptions {
  storage: Storage
  /** Where restore state is kept (restores/{id}/restore.json). Default: `storage`. */
  stateStorage?: Storage
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
  /**
   * Write into existing target topics with message.timestamp.type=LogAppendTime, accepting that
   * the broker stamps restored records with the time of the restore.
   */
  allowLogAppendTimeTarget: boolean
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
  /** What the restore does differently from a plain copy, and why (also in a dry run). */
  notes: string[]
  records: number
  bytes: number
  durationMs: number
  consumerGroups: CommittedGroup[]
}

const MAX_RESTARTS = 30
/**
 * Only batches below this are merged: merging decodes and re-encodes on the main thread (22%
 * of restore CPU when 50-60 KiB producer batches were merged, bench/), and batches of this size
 * already fill a Produce request well. Topics written one record per batch still get merged.
 */
const SMALL_BATCH_BYTES = 16 * 1024

/**
 * A LogAppendTime topic stamps every record with the time the broker appends it, so restored
 * records would lose their backed-up timestamps. Created topics therefore always use
 * CreateTime, and the restored batches carry the backed-up times (outgoing.ts).
 */
const TIMESTAMP_TYPE = 'message.timestamp.type'

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

/** What the checks found on the target, before anything is written. */
interface TargetCheck {
  /** Existing target topics by name. */
  existing: Map<string, TopicInfo>
  /** Per planned partition (same order): its state, saved and still valid, or fresh. */
  partitions: PartitionState[]
  previous: RestoreState | undefined
  notes: string[]
}

export class RestoreEngine {
  readonly #options: RestoreOptions
  readonly #stateStorage: Storage
  #state: RestoreState | undefined
  #progress: PartitionProgress[] = []
  #plannedRecords = 0
  #plannedByTarget = new Map<string, number>()
  /** Per target topic: the merge limit, within its max.message.bytes. */
  #coalesceLimits = new Map<string, number>()

  constructor(options: RestoreOptions) {
    this.#options = options
    this.#stateStorage = options.stateStorage ?? options.storage
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
    const restoreId = restoreIdOf(plan, metadata.id, options.window)
    const partitions = plan.topics.flatMap(t => t.partitions)
    const check = await this.#checkTarget(plan, restoreId)
    const groups = options.resetConsumerOffsets ? groupsToReset(plan, options.consumerGroups) : []
    for (const group of groups) {
      await assertGroupInactive(options.cluster, group.groupId)
    }
    const toCreate = plan.topics.filter(t => !check.existing.has(t.targetTopic))

    if (options.dryRun) {
      await this.#probeStateStorage(restoreId)
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
        topicsCreated: toCreate.map(t => t.targetTopic),
        notes: check.notes,
        records: plan.records,
        bytes: plan.bytes,
        durationMs: Date.now() - startedAt,
        consumerGroups: []
      }
    }

    const now = new Date().toISOString()
    const state: RestoreState = {
      format: RESTORE_STATE_FORMAT,
      formatVersion: RESTORE_STATE_VERSION,
      toolVersion,
      restoreId,
      backupId: options.backupId,
      status: 'running',
      startedAt: check.previous?.startedAt ?? now,
      updatedAt: now,
      target: { clusterId: metadata.id, bootstrapServers: options.bootstrapServers },
      targetTopicIds: Object.fromEntries(
        plan.topics.flatMap(t => {
          const existing = check.existing.get(t.targetTopic)
          return existing ? [[t.targetTopic, existing.topicId]] : []
        })
      ),
      window: {
        start: options.window.start?.toString() ?? null,
        end: options.window.end?.toString() ?? null
      },
      partitions: check.partitions,
      consumerGroups: check.previous?.consumerGroups ?? []
    }
    this.#state = state
    this.#progress = state.partitions.map(p => new PartitionProgress(p))
    // Durable before the target changes: a run killed at any later moment resumes from it, and a
    // state location that cannot be written stops the restore before it writes anything.
    await this.#saveState().catch(error => {
      throw unwritableState(error, this.#stateStorage, restoreStateKey(options.backupId, restoreId))
    })
    const topicsCreated = await this.#createTopics(toCreate)
    if (topicsCreated.length > 0) {
      const created = await findTopics(options.cluster, topicsCreated)
      for (const topic of topicsCreated) {
        state.targetTopicIds![topic] = created.get(topic)!.topicId
      }
      await this.#saveState()
    }
    await this.#checkTargetConfigs(plan)
    const byTarget = new Map(partitions.map(p => [`${p.targetTopic}/${p.targetPartition}`, p]))

    const checkpointTimer = setInterval(() => {
      this.#saveState().catch(error =>
        options.onWarning?.(`could not save the restore state: ${(error as Error).message}`, {})
      )
    }, options.checkpointIntervalMs)
    try {
      for (let attempt = 0; ; attempt++) {
        const active = this.#progress.filter(p => !p.state.done)
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
        if (groups.length === 0) {
          options.onWarning?.(
            `restore.consumer_groups ${JSON.stringify(options.consumerGroups)} matches none of the ${plan.manifest.consumerGroups.length} groups captured in the backup with offsets on the restored partitions; no offsets committed`,
            {}
          )
        }
        state.consumerGroups = await commitTranslatedOffsets(options.cluster, groups, this.#progress)
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
      notes: check.notes,
      records: state.partitions.reduce((sum, p) => sum + p.records, 0),
      bytes: state.partitions.reduce((sum, p) => sum + p.bytes, 0),
      durationMs: Date.now() - startedAt,
      consumerGroups: state.consumerGroups
    }
  }

  /**
   * A dry run saves no state, but the real run refuses when it cannot: writing and removing a
   * probe object next to where the state goes lets the dry run refuse too.
   */
  async #probeStateStorage(restoreId: string): Promise<void> {
    const key = `${restoreStateKey(this.#options.backupId, restoreId)}.dry-run-probe`
    try {
      await this.#stateStorage.replace(key, Buffer.from('written and removed by kafka-backup restore --dry-run\n'))
      await this.#stateStorage.delete(key)
    } catch (error) {
      throw unwritableState(error, this.#stateStorage, restoreStateKey(this.#options.backupId, restoreId))
    }
  }

  async #saveState(): Promise<void> {
    const state = this.#state
    if (!state) {
      return
    }
    for (const progress of this.#progress) {
      progress.sync()
    }
    await writeRestoreState(this.#stateStorage, state)
  }

  /**
   * Every refusal that depends on the target, without changing it: missing topics, too few
   * partitions, LogAppendTime topics, records already there, and saved progress that no longer
   * matches the target.
   */
  async #checkTarget(plan: RestorePlan, restoreId: string): Promise<TargetCheck> {
    const { cluster, createTopics, allowLogAppendTimeTarget } = this.#options
    const existing = await findTopics(
      cluster,
      plan.topics.map(t => t.targetTopic)
    )
    const notes: string[] = []
    for (const topic of plan.topics) {
      const found = existing.get(topic.targetTopic)
      if (found && found.partitionCount < topic.partitionCount) {
        throw new BackupError(
          'KB_CONFIG_INVALID',
          `target topic ${topic.targetTopic} has ${found.partitionCount} partitions; restoring ${topic.sourceTopic} needs ${topic.partitionCount}`,
          { topic: topic.targetTopic, expected: topic.partitionCount, found: found.partitionCount }
        )
      }
      if (!found && !createTopics) {
        throw new BackupError(
          'KB_TOPIC_NOT_FOUND',
          `target topic ${topic.targetTopic} does not exist; create it or set restore.create_topics: true`,
          { topic: topic.targetTopic }
        )
      }
      if (!found && topic.configs[TIMESTAMP_TYPE] === 'LogAppendTime') {
        notes.push(
          `${topic.targetTopic} is created with ${TIMESTAMP_TYPE}=CreateTime, not the backed-up LogAppendTime, so that restored records keep their backed-up timestamps`
        )
      }
    }
    const existingTargets = plan.topics.map(t => t.targetTopic).filter(name => existing.has(name))
    const timestampTypes = await topicConfigValues(cluster, existingTargets, [TIMESTAMP_TYPE])
    for (const name of existingTargets) {
      if (timestampTypes.get(name)?.[TIMESTAMP_TYPE] !== 'LogAppendTime') {
        continue
      }
      if (!allowLogAppendTimeTarget) {
        throw new BackupError(
          'KB_CONFIG_INVALID',
          `target topic ${name} has ${TIMESTAMP_TYPE}=LogAppendTime: the broker would replace every restored timestamp with the time of the restore; ` +
            `restore into a new topic (created with CreateTime), set ${TIMESTAMP_TYPE}=CreateTime on ${name}, or set restore.allow_log_append_time_target: true to accept restore-time timestamps`,
          { path: 'restore.allow_log_append_time_target', topic: name, found: 'LogAppendTime' }
        )
      }
      notes.push(
        `${name} has ${TIMESTAMP_TYPE}=LogAppendTime: restored records get the time of the restore as their timestamp (restore.allow_log_append_time_target)`
      )
    }
    const { partitions, previous } = await this.#reconcileState(plan, restoreId, existing)
    return { existing, partitions, previous, notes }
  }

  /**
   * The saved state of each planned partition if it still describes the target, else a fresh
   * one. Saved progress is for one target topic (its id): a topic deleted and recreated since
   * (or never created before a kill) starts over, as does a partition of a version-2 state that
   * names no id for its topic (nothing was produced to it). The target must still hold what the
   * restore wrote.
   */
  async #reconcileState(
    plan: RestorePlan,
    restoreId: string,
    existing: Map<string, TopicInfo>
  ): Promise<{ partitions: PartitionState[]; previous: RestoreState | undefined }> {
    const { cluster, backupId, allowNonEmptyTarget, onWarning } = this.#options
    const previous = await readRestoreState(this.#stateStorage, backupId, restoreId)
    const stateFile = `${this.#stateStorage.location}/${restoreStateKey(backupId, restoreId)}`
    const saved = new Map((previous?.partitions ?? []).map(p => [`${p.targetTopic}/${p.targetPartition}`, p]))
    const planned = plan.topics.flatMap(t => t.partitions)
    const targets = planned
      .filter(p => existing.has(p.targetTopic))
      .map(p => ({ topic: p.targetTopic, partition: p.targetPartition }))
    const [logStart, highWatermark] = await Promise.all([
      listOffsets(cluster, targets, 'earliest'),
      listOffsets(cluster, targets, 'latest')
    ])
    const discarded = new Set<string>()
    const partitions: PartitionState[] = []
    for (const p of planned) {
      const target = partitionKey(p.targetTopic, p.targetPartition)
      const end = highWatermark.get(target) ?? 0n
      const state = saved.get(target)
      const topicId = existing.get(p.targetTopic)?.topicId
      const sameTopic =
        topicId !== undefined &&
        (previous?.formatVersion === 1 || previous?.targetTopicIds?.[p.targetTopic] === topicId)
      const start = logStart.get(target) ?? 0n
      if (state && sameTopic) {
        if (start > BigInt(state.targetStartOffset) && state.records > 0) {
          throw new BackupError(
            'KB_TARGET_CHANGED',
            `target partition ${target} starts at offset ${start}, but restore state ${stateFile} records restored records from ${state.targetStartOffset}: records this restore wrote were deleted (retention or DeleteRecords); ` +
              `delete topic ${p.targetTopic} and run the restore again (a recreated topic is restored from the start)`,
            {
              topic: p.targetTopic,
              partition: p.targetPartition,
              offset: state.targetStartOffset,
              found: start.toString()
            }
          )
        }
        if (end < BigInt(state.targetNextOffset)) {
          throw new BackupError(
            'KB_TARGET_CHANGED',
            `target partition ${target} ends at ${end}, but restore state ${stateFile} records restored records up to ${state.targetNextOffset}: records this restore wrote are gone; ` +
              `delete topic ${p.targetTopic} and run the restore again (a recreated topic is restored from the start)`,
            {
              topic: p.targetTopic,
              partition: p.targetPartition,
              offset: state.targetNextOffset,
              found: end.toString()
            }
          )
        }
        partitions.push(state)
        continue
      }
      if (state && (state.records > 0 || state.done) && !discarded.has(p.targetTopic)) {
        discarded.add(p.targetTopic)
        onWarning?.(
          `restore state ${stateFile} records progress on target topic ${p.targetTopic} ${topicId === undefined ? 'which no longer exists' : 'under another topic id (deleted and recreated since)'}: restoring it again from the start`,
          { topic: p.targetTopic }
        )
      }
      if (end > start && !allowNonEmptyTarget) {
        throw new BackupError(
          'KB_TARGET_NOT_EMPTY',
          `target partition ${target} already holds ${end - start} records; restore into an empty topic, or set restore.allow_non_empty_target: true to append after them`,
          { topic: p.targetTopic, partition: p.targetPartition, found: (end - start).toString() }
        )
      }
      partitions.push(freshState(p, end))
    }
    return { partitions, previous }
  }

  async #createTopics(topics: TopicPlan[]): Promise<string[]> {
    const { cluster, defaultReplicationFactor } = this.#options
    for (const topic of topics) {
      await createTopic(cluster, {
        name: topic.targetTopic,
        partitions: topic.partitionCount,
        replicationFactor: defaultReplicationFactor,
        configs: { ...topic.configs, [TIMESTAMP_TYPE]: 'CreateTime' }
      })
    }
    const created = topics.map(t => t.targetTopic)
    if (created.length > 0) {
      await waitForLeaders(cluster, created)
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

  /** One pass: reconcile with the target, then send until done or a restart is needed. */
  async #sendAll(
    active: PartitionProgress[],
    byTarget: Map<string, PartitionPlan>,
    signal: AbortSignal
  ): Promise<void> {
    const { cluster, maxConcurrentPartitions } = this.#options
    const targetTopics = [...new Set(active.map(p => p.state.targetTopic))]
    const ends = await listOffsets(
      cluster,
      active.map(p => ({ topic: p.state.targetTopic, partition: p.state.targetPartition })),
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
    const byLeader = new Map<number, Array<{ feed: PartitionFeed; progress: PartitionProgress }>>()
    const pumps: Promise<void>[] = []
    for (const progress of active) {
      const { targetTopic, targetPartition } = progress.state
      const plan = byTarget.get(`${targetTopic}/${targetPartition}`)!
      const end = ends.get(partitionKey(targetTopic, targetPartition)) ?? 0n
      const alreadyWritten = end - BigInt(progress.state.targetNextOffset)
      if (alreadyWritten < 0n) {
        throw new BackupError(
          'KB_TARGET_CHANGED',
          `target partition ${targetTopic}/${targetPartition} ends at ${end}, before the ${progress.state.targetNextOffset} this restore already wrote; was it deleted or truncated?`,
          { topic: targetTopic, partition: targetPartition, offset: progress.state.targetNextOffset }
        )
      }
      const leader = metadata.topics.get(targetTopic)?.partitions[targetPartition]?.leader ?? -1
      if (leader < 0) {
        throw new RestartNeeded(`${targetTopic}/${targetPartition} has no leader`)
      }
      const feed = new PartitionFeed(targetTopic, targetPartition, 4, (outgoing, baseOffset) => {
        progress.acknowledged(outgoing, baseOffset)
        this.#options.onAcknowledged?.(outgoing.batch.recordCount, outgoing.batch.bytes.length)
      })
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), { feed, progress }])
      pumps.push(
        (async () => {
          await slots.acquire()
          try {
            await feed.pump(progress.skipWritten(this.#outgoing(plan, progress.state), alreadyWritten), passSignal)
          } finally {
            slots.release()
          }
        })()
      )
    }
    const senders = [...byLeader].map(async ([leader, entries]) => {
      const connection = await cluster.connection(metadata, leader)
      await sendToLeader(
        connection,
        entries.map(e => e.feed),
        {
          producer,
          maxInFlightPerPartition: this.#options.maxInFlightPerPartition,
          maxRequestBytes: this.#options.maxRequestBytes,
          timeoutMs: 30_000,
          signal: passSignal,
          throttle: throttleOf(this.#options.rateLimitBytesPerSec),
          onRequest: this.#options.onRequest
        }
      )
      for (const { progress } of entries) {
        progress.state.done = true
        const plan = byTarget.get(`${progress.state.targetTopic}/${progress.state.targetPartition}`)!
        progress.state.sourceNextOffset = plan.index.nextOffset
      }
    })
    const results = await Promise.allSettled(senders)
    const failed = results.find(r => r.status === 'rejected')
    if (failed) {
      pass.abort()
      for (const entries of byLeader.values()) {
        for (const { feed } of entries) {
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
}

function freshState(plan: PartitionPlan, targetEnd: bigint): PartitionState {
  return {
    sourceTopic: plan.sourceTopic,
    sourcePartition: plan.sourcePartition,
    targetTopic: plan.targetTopic,
    targetPartition: plan.targetPartition,
    sourceNextOffset: '-1',
    targetStartOffset: targetEnd.toString(),
    targetNextOffset: targetEnd.toString(),
    records: 0,
    bytes: 0,
    done: false,
    offsetMap: []
  }
}

/** The first save failed: nothing is written yet, and the error says how to restore anyway. */
function unwritableState(error: unknown, storage: Storage, key: string): unknown {
  if (!isBackupError(error) || !error.code.startsWith('KB_STORAGE')) {
    return error
  }
  return new BackupError(
    error.code,
    `cannot save the restore state ${storage.location}/${key}, so nothing was restored (${error.message}); ` +
      'when the backup location is read-only (a snapshot or read-only mount), set restore.state_storage to a writable location',
    { cause: error, key, location: storage.location }
  )
}
