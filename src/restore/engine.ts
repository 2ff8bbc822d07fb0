/**
 * The restore engine, the backup data path run backwards: plan, check the target, then per target
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
import { setTimeout as sleep } from 'node:timers/promises'
import type { ConsumerGroupEntry } from '../catalog/manifest.ts'
import type { ClusterMetadataKind } from '../config/schema-parts.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError, isBackupError } from '../errors.ts'
import { findTopics, listOffsets, partitionKey, type TopicInfo } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { initProducerId } from '../kafka/raw-produce.ts'
import { Outage, untilAborted } from '../kafka/retry.ts'
import { mapLimited, Slots } from '../slots.ts'
import type { Storage } from '../storage/storage.ts'
import { throttleOf } from '../throttle.ts'
import { toolVersion } from '../version.ts'
import {
  applyClusterMetadata,
  type ClusterMetadataChanges,
  type ClusterMetadataPlan,
  planClusterMetadata
} from './cluster-metadata.ts'
import { type EraseSpec, KeyEraser } from './erase.ts'
import { assertGroupInactive, commitTranslatedOffsets, groupsToReset } from './groups.ts'
import { mergeOutgoing, type OutgoingBatch, restoreFloor, toOutgoing } from './outgoing.ts'
import { buildPlan, type PartitionPlan, type PlanOptions, type RestorePlan } from './plan.ts'
import { PartitionFeed, RestartNeeded, sendToLeader } from './producer.ts'
import { PartitionProgress, skipWrittenRecords } from './progress.ts'
import { TopicRouter } from './repartition.ts'
import { checkBackupKeys, readPartitionBatches } from './source.ts'
import {
  type CommittedGroup,
  listDoneRecords,
  PARTITION_STATE_FORMAT,
  type PartitionDocument,
  type PartitionState,
  partitionStateBase,
  RESTORE_STATE_FORMAT,
  RESTORE_STATE_VERSION,
  type RestoreState,
  readDoneRecord,
  readPartitionDocument,
  readRestoreState,
  restoreIdOf,
  restoreStateBase,
  writeDoneRecord,
  writePartitionDocument,
  writeRestoreState
} from './state.ts'
import {
  checkTarget,
  checkTargetTopics,
  coalesceLimits,
  createTargetTopics,
  discardedMessage,
  pairKey,
  reconcilePartition,
  type TargetCheck,
  targetOffsets
} from './target.ts'
import { mayOverlap } from './window.ts'

export interface RestoreOptions extends PlanOptions {
  storage: Storage
  /** restore.encryption: decrypts an encrypted backup (docs/encryption.md). */
  keys?: KeyProvider
  /** Where restore state is kept (restores/{id}/restore/{revision}.json). Default: `storage`. */
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
  /** Keys whose records are left out of the restore (erase.ts). */
  erase?: EraseSpec
  /** restore.metadata: the backed-up cluster metadata to apply; unset: none. */
  clusterMetadata?: readonly ClusterMetadataKind[]
  /** restore.scram_users_file: passwords of the SCRAM users to create. */
  scramUsersFile?: string
  /**
   * restore.workers: this process is one of several that share the restore through a group
   * (docs/architecture.md, "Sharded restore"); unset: it restores every planned partition.
   */
  workers?: RestoreWorkers
  signal?: AbortSignal
  onWarning?: (message: string, context: Record<string, unknown>) => void
  onRequest?: (durationMs: number, bytes: number) => void
  /**
   * The target acknowledged a batch of this many records and bytes; `erased` records were left
   * out on the way (restore.erase).
   */
  onAcknowledged?: (records: number, bytes: number, erased: number) => void
}

/** One assignment of a work group: the items this member owns until `revoked` aborts. */
export interface WorkAssignment {
  generation: number
  memberId: string
  items: string[]
  /** False once the group may have given the items to another member: nothing more is produced. */
  leaseValid?(): boolean
}

/**
 * Joins group `groupId` sharing `items` and calls `onAssignment` with each assignment; resolves
 * once `onAssignment` says 'done' (the member then leaves) or the run's signal aborts.
 */
export type JoinWorkGroup = (
  groupId: string,
  items: string[],
  onAssignment: (assignment: WorkAssignment, revoked: AbortSignal) => Promise<'done' | 'continue'>
) => Promise<void>

export interface RestoreWorkers {
  /** Unset: `kafka-backup.restore.{backup id}.{restore id}`. */
  groupId?: string
  join: JoinWorkGroup
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
    /** Records left out because restore.erase names their key (0 in a dry run, which reads no records). */
    erasedRecords: number
  }>
  topicsCreated: string[]
  /** What the restore does differently from a plain copy, and why (also in a dry run). */
  notes: string[]
  records: number
  bytes: number
  /** Records left out because restore.erase names their key. */
  erasedRecords: number
  durationMs: number
  consumerGroups: CommittedGroup[]
  /** With restore.metadata: the ACLs, quotas and SCRAM credentials created (a dry run: to create). */
  metadata?: ClusterMetadataChanges
  /**
   * With restore.workers: what this worker restored itself (the rest of the summary is the
   * whole restore, all workers together).
   */
  worker?: { groupId: string; partitions: string[]; records: number; bytes: number }
}

/** The plan's changes without the passwords, for the summary. */
function metadataChanges(plan: ClusterMetadataPlan | undefined): ClusterMetadataChanges | undefined {
  return (
    plan && {
      acls: plan.acls,
      quotas: plan.quotas,
      scramUsers: plan.scramUsers,
      unchanged: plan.unchanged
    }
  )
}

/**
 * What a restore state says of the restore itself (which one, where to, since when, its
 * window): alike in a single-process restore's state and a sharded restore's merged one.
 */
function stateHeader(
  options: RestoreOptions,
  restoreId: string,
  clusterId: string | null,
  startedAt: string,
  updatedAt: string
): Omit<RestoreState, 'status' | 'partitions' | 'consumerGroups'> {
  return {
    format: RESTORE_STATE_FORMAT,
    formatVersion: RESTORE_STATE_VERSION,
    toolVersion,
    restoreId,
    backupId: options.backupId,
    startedAt,
    updatedAt,
    target: { clusterId, bootstrapServers: options.bootstrapServers },
    window: {
      start: options.window.start?.toString() ?? null,
      end: options.window.end?.toString() ?? null
    }
  }
}

/** What the sharded run takes over from the preparation that every run shares. */
interface ShardedRun {
  plan: RestorePlan
  restoreId: string
  clusterId: string | null
  check: TargetCheck
  groups: ConsumerGroupEntry[]
  metadataPlan: ClusterMetadataPlan | undefined
  applyMetadata: () => Promise<unknown>
  notes: string[]
  startedAt: number
  signal: AbortSignal
}

/**
 * The work item besides the partitions: its holder ends the restore (#finish). Partition items
 * always hold a '/', so it never names a partition.
 */
const FINISH_ITEM = 'finish'

/**
 * The work items of a plan's partitions: `{topic's index in the plan}/{source partition}`, by
 * item. Short on purpose: every member sends the whole list with each join, and the coordinator
 * keeps all members' lists in one record of __consumer_offsets (1 MB at most by default): 20
 * workers sharing 2,000 partitions named `topic/partition` overflowed it (UNKNOWN_SERVER_ERROR
 * on SyncGroup). Every worker of one restore id has the same plan, so the same items.
 */
function workItems(plan: RestorePlan): Map<string, PartitionPlan> {
  return new Map(plan.topics.flatMap((t, i) => t.partitions.map(p => [`${i}/${p.sourcePartition}`, p])))
}
/** How often a worker whose share is done looks for the done records of the others. */
const SHARE_POLL_MS = 1000
/** Partition states (or done records) read and written at once. */
const CLAIM_CONCURRENCY = 16

const MAX_RESTARTS = 30
/**
 * Only batches below this are merged: merging decodes and re-encodes on the main thread (22%
 * of restore CPU when 50-60 KiB producer batches were merged, bench/), and batches of this size
 * already fill a Produce request well. Topics written one record per batch still get merged.
 */
const SMALL_BATCH_BYTES = 16 * 1024

export class RestoreEngine {
  readonly #options: RestoreOptions
  readonly #stateStorage: Storage
  #state: RestoreState | undefined
  #progress: PartitionProgress[] = []
  #plannedRecords = 0
  /** A sharded restore's check before each Produce (WorkAssignment.leaseValid); unset alone. */
  #mayProduce: (() => boolean) | undefined
  #plannedByTarget = new Map<string, number>()
  /** Per target topic: the merge limit, within its max.message.bytes. */
  #coalesceLimits = new Map<string, number>()
  #eraser: KeyEraser | undefined
  #plan: RestorePlan | undefined

  constructor(options: RestoreOptions) {
    this.#options = options
    this.#stateStorage = options.stateStorage ?? options.storage
  }

  /** The partitions this process is restoring (with workers: its current share). */
  progress(): PartitionState[] {
    return this.#progress.map(p => p.state)
  }

  /** Records in the segments the plan reads (an upper bound with a time window); with workers, of this worker's share. */
  plannedRecords(): number {
    return this.#plannedRecords
  }

  /** Per target partition: planned records not restored yet (0 once done). */
  remaining(): Array<{ topic: string; partition: number; lagRecords: number }> {
    // A re-partitioned target partition has one state per source partition feeding it.
    const byTarget = new Map<string, { topic: string; partition: number; records: number; done: boolean }>()
    for (const p of this.progress()) {
      const key = `${p.targetTopic}/${p.targetPartition}`
      const target = byTarget.get(key) ?? { topic: p.targetTopic, partition: p.targetPartition, records: 0, done: true }
      target.records += p.records
      target.done &&= p.done
      byTarget.set(key, target)
    }
    return [...byTarget].map(([key, t]) => ({
      topic: t.topic,
      partition: t.partition,
      lagRecords: t.done ? 0 : Math.max((this.#plannedByTarget.get(key) ?? 0) - t.records, 0)
    }))
  }

  async run(): Promise<RestoreSummary> {
    try {
      return await this.#run()
    } catch (error) {
      await this.#endFailed(error)
      throw error
    }
  }

  /**
   * A restore whose state is on record as running ends as failed, whatever step failed (creating
   * topics, applying cluster metadata, sending): status and describe then tell the truth.
   */
  async #endFailed(error: unknown): Promise<void> {
    const state = this.#state
    if (state?.status !== 'running') {
      return
    }
    state.status = 'failed'
    state.error = (error as Error).message
    await this.#saveState().catch(saveError =>
      this.#options.onWarning?.(`could not save the restore state: ${(saveError as Error).message}`, {})
    )
  }

  async #run(): Promise<RestoreSummary> {
    const options = this.#options
    const startedAt = Date.now()
    const signal = options.signal ?? new AbortController().signal
    this.#eraser = await KeyEraser.load(options.erase)
    const plan = await buildPlan(options.storage, options, async names => {
      const found = await findTopics(options.cluster, names)
      return new Map([...found].map(([name, topic]) => [name, topic.partitionCount]))
    })
    this.#plan = plan
    await checkBackupKeys(
      options.storage,
      options.backupId,
      plan.topics.flatMap(t => t.partitions),
      options.keys
    )
    this.#plannedRecords = plan.records
    for (const partition of plan.topics.flatMap(t => t.partitions)) {
      const key = `${partition.targetTopic}/${partition.targetPartition}`
      this.#plannedByTarget.set(key, (this.#plannedByTarget.get(key) ?? 0) + partition.records)
    }
    const metadata = await options.cluster.metadata([])
    const restoreId = restoreIdOf(plan, metadata.id, options.window, this.#eraser?.fingerprint)
    const partitions = plan.topics.flatMap(t => t.partitions)
    // With workers, saved progress is per partition and reconciled when a worker claims one.
    const check: TargetCheck = options.workers
      ? { ...(await checkTargetTopics(options, plan)), partitions: [], previous: undefined }
      : await checkTarget(options, this.#stateStorage, plan, restoreId)
    for (const topic of plan.topics.filter(t => t.repartitioned)) {
      check.notes.push(
        `${topic.sourceTopic} is re-partitioned by key from ${topic.manifestPartitionCount} into the ${topic.partitionCount} partitions of ${topic.targetTopic} (restore.repartition): its batches are decoded and rebuilt`
      )
    }
    const groups = options.resetConsumerOffsets ? groupsToReset(plan, options.consumerGroups) : []
    if (options.resetConsumerOffsets && groups.length === 0) {
      options.onWarning?.(
        `none of the consumer groups restore.consumer_groups ${JSON.stringify(options.consumerGroups)} selects has offsets on the restored partitions; no offsets will be committed`,
        {}
      )
    }
    for (const group of groups) {
      await assertGroupInactive(options.cluster, group.groupId)
    }
    const metadataOptions = {
      storage: options.storage,
      backupId: options.backupId,
      cluster: options.cluster,
      kinds: options.clusterMetadata ?? [],
      topicMapping: options.topicMapping,
      scramUsersFile: options.scramUsersFile
    }
    const metadataPlan = await planClusterMetadata(metadataOptions)
    const notes = [...check.notes, ...(metadataPlan?.notes ?? [])]

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
          bytes: p.bytes,
          erasedRecords: 0
        })),
        topicsCreated: check.toCreate.map(t => t.name),
        notes,
        records: plan.records,
        bytes: plan.bytes,
        erasedRecords: 0,
        durationMs: Date.now() - startedAt,
        consumerGroups: [],
        metadata: metadataChanges(metadataPlan)
      }
    }

    if (options.workers) {
      return this.#runSharded(options.workers, {
        plan,
        restoreId,
        clusterId: metadata.id,
        check,
        groups,
        metadataPlan,
        applyMetadata: () => (metadataPlan ? applyClusterMetadata(metadataOptions, metadataPlan) : Promise.resolve()),
        notes,
        startedAt,
        signal
      })
    }

    const now = new Date().toISOString()
    const targetTopicIds: Record<string, string> = {}
    for (const [name, topic] of check.existing) {
      targetTopicIds[name] = topic.topicId
    }
    const state: RestoreState = {
      ...stateHeader(options, restoreId, metadata.id, check.previous?.startedAt ?? now, now),
      status: 'running',
      targetTopicIds,
      partitions: check.partitions,
      consumerGroups: check.previous?.consumerGroups ?? [],
      // The next revision follows the one read: restore states are never written over.
      revision: check.previous?.revision
    }
    this.#state = state
    this.#progress = state.partitions.map(p => new PartitionProgress(p))
    // Durable before the target changes: a run killed at any later moment resumes from it, and a
    // state location that cannot be written stops the restore before it writes anything.
    await this.#saveState().catch(error => {
      throw unwritableState(error, this.#stateStorage, restoreStateBase(options.backupId, restoreId))
    })
    const topicsCreated = await createTargetTopics(options.cluster, check.toCreate, options.defaultReplicationFactor)
    if (topicsCreated.length > 0) {
      const created = await findTopics(options.cluster, topicsCreated)
      for (const name of topicsCreated) {
        const topic = created.get(name)
        if (!topic) {
          throw new BackupError('KB_KAFKA', `created topic ${name} is missing from the cluster metadata`, {
            topic: name
          })
        }
        targetTopicIds[name] = topic.topicId
      }
      await this.#saveState()
    }
    if (metadataPlan) {
      await applyClusterMetadata(metadataOptions, metadataPlan)
    }
    this.#coalesceLimits = await coalesceLimits(options, plan)
    const byTarget = new Map(partitions.map(p => [`${p.targetTopic}/${p.targetPartition}`, p]))

    const checkpointTimer = setInterval(() => {
      this.#saveState().catch(error =>
        options.onWarning?.(`could not save the restore state: ${(error as Error).message}`, {})
      )
    }, options.checkpointIntervalMs)
    try {
      await this.#restoreUntilDone(byTarget, signal)
      if (!signal.aborted && options.resetConsumerOffsets) {
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
      ...partitionTotals(state.partitions),
      topicsCreated,
      notes,
      durationMs: Date.now() - startedAt,
      consumerGroups: state.consumerGroups,
      metadata: metadataChanges(metadataPlan)
    }
  }

  /**
   * This process is one of several workers of the restore (docs/architecture.md, "Sharded
   * restore"): it joins the group, restores the source partitions the coordinator assigns it,
   * each claimed in its own state chain before anything is produced, and then waits until every
   * partition of the restore is done, taking over those of workers that leave or die. The member
   * that holds FINISH_ITEM checks the target, commits the group offsets and writes the merged
   * restore state, which every worker waits for before it reports the restore complete.
   */
  async #runSharded(workers: RestoreWorkers, run: ShardedRun): Promise<RestoreSummary> {
    const options = this.#options
    const { plan, restoreId, signal } = run
    if (plan.topics.some(t => t.repartitioned)) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        'restore.workers cannot share a re-partitioned restore (restore.repartition): a re-partitioned topic is written from all its source partitions in turn by one process',
        { path: 'restore.workers.enabled' }
      )
    }
    const topicsCreated = await createTargetTopics(
      options.cluster,
      run.check.toCreate,
      options.defaultReplicationFactor,
      true
    )
    const topics = await findTopics(
      options.cluster,
      plan.topics.map(t => t.targetTopic)
    )
    const targetTopicIds: Record<string, string> = {}
    for (const topic of plan.topics) {
      const found = topics.get(topic.targetTopic)
      if (!found) {
        throw new BackupError('KB_KAFKA', `target topic ${topic.targetTopic} is missing from the cluster metadata`, {
          topic: topic.targetTopic
        })
      }
      targetTopicIds[topic.targetTopic] = found.topicId
    }
    this.#coalesceLimits = await coalesceLimits(options, plan)
    const byItem = workItems(plan)
    const groupId = workers.groupId ?? `kafka-backup.restore.${options.backupId}.${restoreId}`
    const share = new Map<string, PartitionState>()
    let finished: RestoreState | undefined
    await workers.join(groupId, [FINISH_ITEM, ...byItem.keys()], async (assignment, revoked) => {
      const assigned = AbortSignal.any([signal, revoked])
      finished ??= await this.#finishedState(restoreId)
      if (finished) {
        return 'done'
      }
      const items = assignment.items.filter(item => item !== FINISH_ITEM)
      const foreign = items.find(item => !byItem.has(item))
      if (foreign !== undefined) {
        throw new BackupError(
          'KB_CONFIG_INVALID',
          `work group ${groupId} gave this worker ${foreign}, which restore ${restoreId} does not plan: every worker of a group must run the same restore (same config and backup); check restore.workers.group_id`,
          { path: 'restore.workers.group_id', found: foreign }
        )
      }
      const fence = new AbortController()
      const working = AbortSignal.any([assigned, fence.signal])
      this.#mayProduce = () => {
        if (assignment.leaseValid?.() !== false) {
          return true
        }
        if (!fence.signal.aborted) {
          options.onWarning?.(
            `this worker's session in group ${groupId} lapsed (paused or cut off past its session timeout): it sends nothing more and joins again`,
            { groupId }
          )
          fence.abort()
        }
        return false
      }
      const claimed = await this.#claim(
        items.map(item => byItem.get(item)!),
        { restoreId, assignment, targetTopicIds, topics },
        working
      )
      await this.#restoreShare(claimed, fence, working, signal)
      for (const document of claimed) {
        if (document.partition.done) {
          share.set(`${document.partition.sourceTopic}/${document.partition.sourcePartition}`, document.partition)
        }
      }
      if (working.aborted) {
        return 'continue'
      }
      if (!(await this.#waitFor(() => this.#allDone(restoreId), assigned))) {
        return 'continue'
      }
      finished = assignment.items.includes(FINISH_ITEM)
        ? await this.#finish(run, targetTopicIds)
        : await this.#waitFor(() => this.#finishedState(restoreId), assigned)
      return finished ? 'done' : 'continue'
    })
    const restored = [...share.values()]
    const worker = {
      groupId,
      partitions: [...share.keys()],
      records: restored.reduce((sum, p) => sum + p.records, 0),
      bytes: restored.reduce((sum, p) => sum + p.bytes, 0)
    }
    if (!finished && !signal.aborted) {
      throw new BackupError(
        'KB_KAFKA',
        `this worker left group ${groupId} before restore ${restoreId} was complete; run it again to continue`,
        { groupId }
      )
    }
    return {
      restoreId,
      backupId: options.backupId,
      status: finished ? 'complete' : 'stopped',
      dryRun: false,
      ...partitionTotals(finished?.partitions ?? restored),
      topicsCreated,
      notes: run.notes,
      durationMs: Date.now() - run.startedAt,
      consumerGroups: finished?.consumerGroups ?? [],
      metadata: metadataChanges(run.metadataPlan),
      worker
    }
  }

  /**
   * Claims the assigned partitions that are not done yet: reconciles each one's saved state with
   * the target and writes its next revision under this member's name, before anything is
   * produced. A partition whose next revision another worker took meanwhile is left to it.
   */
  async #claim(
    assigned: PartitionPlan[],
    context: {
      restoreId: string
      assignment: WorkAssignment
      targetTopicIds: Record<string, string>
      topics: Map<string, TopicInfo>
    },
    signal: AbortSignal
  ): Promise<PartitionDocument[]> {
    const options = this.#options
    const { restoreId, assignment, targetTopicIds } = context
    const storage = this.#stateStorage
    const done = await listDoneRecords(storage, options.backupId, restoreId)
    const open = assigned.filter(
      p => (done.get(`${p.sourceTopic}/${p.sourcePartition}`)?.end ?? -1n) < BigInt(p.index.nextOffset)
    )
    const { logStart, highWatermark } = await targetOffsets(options.cluster, open, context.topics)
    const claimed: PartitionDocument[] = []
    await mapLimited(open, CLAIM_CONCURRENCY, async p => {
      if (signal.aborted) {
        return
      }
      const saved = await readPartitionDocument(storage, options.backupId, restoreId, p.sourceTopic, p.sourcePartition)
      const targetTopicId = targetTopicIds[p.targetTopic]!
      const target = partitionKey(p.targetTopic, p.targetPartition)
      const stateFile = `${storage.location}/${partitionStateBase(options.backupId, restoreId, p.sourceTopic, p.sourcePartition)}`
      const state = reconcilePartition(p, saved?.partition, {
        sameTopic: saved?.targetTopicId === targetTopicId,
        logStart: logStart.get(target) ?? 0n,
        highWatermark: highWatermark.get(target) ?? 0n,
        stateFile,
        allowNonEmptyTarget: options.allowNonEmptyTarget,
        repartitioned: false
      })
      if (saved && state !== saved.partition && (saved.partition.records > 0 || saved.partition.done)) {
        options.onWarning?.(discardedMessage(stateFile, p.targetTopic, targetTopicId), { topic: p.targetTopic })
      }
      const document: PartitionDocument = {
        format: PARTITION_STATE_FORMAT,
        formatVersion: 1,
        toolVersion,
        restoreId,
        backupId: options.backupId,
        owner: { memberId: assignment.memberId, generation: assignment.generation },
        targetTopicId,
        updatedAt: new Date().toISOString(),
        revision: saved?.revision,
        partition: state
      }
      try {
        await writePartitionDocument(storage, document)
      } catch (error) {
        if (!isBackupError(error, 'KB_BACKUP_BUSY')) {
          throw error
        }
        options.onWarning?.(
          `${p.sourceTopic}/${p.sourcePartition} was claimed by another worker meanwhile; leaving it to that worker`,
          { topic: p.sourceTopic, partition: p.sourcePartition }
        )
        return
      }
      claimed.push(document)
    })
    return claimed
  }

  /**
   * Restores the claimed partitions, saving each one's revision chain at every checkpoint and a
   * done record once it is done. A revision another worker wrote first means the partition was
   * given to that worker: `fence` aborts this share at once, and nothing more is written.
   */
  async #restoreShare(
    claimed: PartitionDocument[],
    fence: AbortController,
    signal: AbortSignal,
    stop: AbortSignal
  ): Promise<void> {
    const options = this.#options
    const storage = this.#stateStorage
    const plans = new Map(this.#plan!.topics.flatMap(t => t.partitions).map(p => [pairKey(p), p]))
    const byTarget = new Map(
      claimed.map(d => {
        const p = plans.get(pairKey(d.partition))!
        return [`${p.targetTopic}/${p.targetPartition}`, p]
      })
    )
    this.#progress = claimed.map(d => new PartitionProgress(d.partition))
    // The progress shown is this worker's share.
    this.#plannedRecords = [...byTarget.values()].reduce((sum, p) => sum + p.records, 0)
    const entries = claimed.map((document, i) => ({ document, progress: this.#progress[i]!, saved: '' }))
    const changeOf = (state: PartitionState) => `${state.records}:${state.sourceNextOffset}:${state.done}`
    for (const entry of entries) {
      entry.saved = changeOf(entry.document.partition)
    }
    let saving = Promise.resolve()
    const save = () => {
      saving = saving.then(async () => {
        for (const entry of entries) {
          const state = entry.document.partition
          if (fence.signal.aborted || changeOf(state) === entry.saved) {
            continue
          }
          entry.progress.sync()
          try {
            await writePartitionDocument(storage, entry.document)
          } catch (error) {
            if (isBackupError(error, 'KB_BACKUP_BUSY')) {
              options.onWarning?.(
                `${state.sourceTopic}/${state.sourcePartition} was taken over by another worker (${(error as Error).message}); this worker stops its share`,
                { topic: state.sourceTopic, partition: state.sourcePartition }
              )
              fence.abort()
              return
            }
            throw error
          }
          entry.saved = changeOf(state)
          if (state.done) {
            await writeDoneRecord(storage, entry.document)
          }
        }
      })
      return saving
    }
    const checkpointTimer = setInterval(() => {
      save().catch(error => options.onWarning?.(`could not save the restore state: ${(error as Error).message}`, {}))
    }, options.checkpointIntervalMs)
    try {
      await this.#restoreUntilDone(byTarget, signal, stop)
    } finally {
      clearInterval(checkpointTimer)
      await saving.catch(() => {})
      await save()
    }
    // Done before this claim (killed between its last revision and its done record).
    for (const entry of entries.filter(e => e.document.partition.done && !fence.signal.aborted)) {
      await writeDoneRecord(storage, entry.document)
    }
  }

  /** Every planned partition has a done record at (or past) the end the plan restores to. */
  async #allDone(restoreId: string): Promise<boolean> {
    const done = await listDoneRecords(this.#stateStorage, this.#options.backupId, restoreId)
    return this.#plan!.topics.every(t =>
      t.partitions.every(
        p => (done.get(`${p.sourceTopic}/${p.sourcePartition}`)?.end ?? -1n) >= BigInt(p.index.nextOffset)
      )
    )
  }

  /** The merged restore state when it says that all of this plan is restored, else undefined. */
  async #finishedState(restoreId: string): Promise<RestoreState | undefined> {
    const state = await readRestoreState(this.#stateStorage, this.#options.backupId, restoreId)
    if (state?.status !== 'complete') {
      return undefined
    }
    const saved = new Map(state.partitions.map(p => [pairKey(p), p]))
    const covered = this.#plan!.topics.every(t =>
      t.partitions.every(p => {
        const partition = saved.get(pairKey(p))
        return partition?.done === true && BigInt(partition.sourceNextOffset) >= BigInt(p.index.nextOffset)
      })
    )
    return covered ? state : undefined
  }

  /**
   * Polls `check` until it returns a value (true counts) or `signal` aborts (then undefined):
   * workers learn that others are done from storage, where the done records are.
   */
  async #waitFor<T>(check: () => Promise<T | undefined | false>, signal: AbortSignal): Promise<T | undefined> {
    while (!signal.aborted) {
      const result = await check()
      if (result) {
        return result
      }
      await sleep(SHARE_POLL_MS, undefined, { signal }).catch(() => {})
    }
    return undefined
  }

  /**
   * The end of a sharded restore, done once by the member holding FINISH_ITEM: checks that each
   * target partition ends where its done record says (a worker that lost a partition but kept
   * writing, or another writer, would show there), applies the cluster metadata, commits the
   * translated group offsets and writes the merged restore state, which marks the restore
   * complete for every worker, for reruns (no second commit) and for the offsets, report and
   * status commands. A merged state already there (another finisher) is taken as it is.
   */
  async #finish(run: ShardedRun, targetTopicIds: Record<string, string>): Promise<RestoreState> {
    const options = this.#options
    const storage = this.#stateStorage
    const { restoreId } = run
    const previous = await readRestoreState(storage, options.backupId, restoreId)
    const already = await this.#finishedState(restoreId)
    if (already) {
      return already
    }
    const done = await listDoneRecords(storage, options.backupId, restoreId)
    const planned = run.plan.topics.flatMap(t => t.partitions)
    const documents: PartitionDocument[] = new Array(planned.length)
    await mapLimited([...planned.keys()], CLAIM_CONCURRENCY, async i => {
      const p = planned[i]!
      documents[i] = await readDoneRecord(storage, done.get(`${p.sourceTopic}/${p.sourcePartition}`)!.key)
    })
    const ends = await listOffsets(
      options.cluster,
      planned.map(p => ({ topic: p.targetTopic, partition: p.targetPartition })),
      'latest'
    )
    for (const { partition: state } of documents) {
      const end = ends.get(partitionKey(state.targetTopic, state.targetPartition)) ?? 0n
      if (end !== BigInt(state.targetNextOffset)) {
        throw new BackupError(
          'KB_TARGET_CHANGED',
          `target partition ${state.targetTopic}/${state.targetPartition} ends at ${end}, but the restore of ${state.sourceTopic}/${state.sourcePartition} ended it at ${state.targetNextOffset}: ` +
            'something else wrote to it during the restore (or a worker that lost it kept writing); no consumer group offsets were committed',
          {
            topic: state.targetTopic,
            partition: state.targetPartition,
            offset: state.targetNextOffset,
            found: end.toString()
          }
        )
      }
    }
    await run.applyMetadata()
    const progress = documents.map(d => new PartitionProgress(d.partition))
    const now = new Date().toISOString()
    const state: RestoreState = {
      ...stateHeader(
        options,
        restoreId,
        run.clusterId,
        previous?.startedAt ?? new Date(run.startedAt).toISOString(),
        now
      ),
      status: 'complete',
      finishedAt: now,
      targetTopicIds,
      partitions: documents.map(d => d.partition),
      consumerGroups: options.resetConsumerOffsets
        ? await commitTranslatedOffsets(options.cluster, run.groups, progress)
        : [],
      revision: previous?.revision
    }
    try {
      await writeRestoreState(storage, state)
    } catch (error) {
      const other = isBackupError(error, 'KB_BACKUP_BUSY') && (await this.#finishedState(restoreId))
      if (!other) {
        throw error
      }
      return other
    }
    return state
  }

  /**
   * Restores the partitions of `#progress` until each is done or `signal` aborts, starting over
   * from what the target acknowledged when a leader moves, and waiting out a cluster that is
   * away (until its unreachable timeout). When `stop` (default: `signal`) aborts, the requests
   * in flight are abandoned; when only `signal` does (a worker giving its partitions up), they
   * are waited for, so that nothing this worker sent lands after the next owner took over.
   */
  async #restoreUntilDone(
    byTarget: Map<string, PartitionPlan>,
    signal: AbortSignal,
    stop: AbortSignal = signal
  ): Promise<void> {
    const options = this.#options
    const outage = new Outage({
      what: 'restore',
      deadlineMs: options.cluster.unreachableTimeoutMs,
      deadlineKey: options.cluster.unreachableTimeoutKey,
      signal,
      onRetry: options.onWarning
    })
    const acknowledged = () => this.#progress.reduce((sum, p) => sum + p.state.records, 0)
    for (let restarts = 0; ; ) {
      const active = this.#progress.filter(p => !p.state.done)
      if (active.length === 0 || signal.aborted) {
        return
      }
      const acknowledgedBefore = acknowledged()
      try {
        // A stop does not wait for a broker that does not answer: what the target acknowledged
        // is saved by the caller, and a rerun reconciles with the target's end offsets.
        await untilAborted(this.#sendAll(active, byTarget, signal), stop)
      } catch (error) {
        if (signal.aborted) {
          return
        }
        if (acknowledged() > acknowledgedBefore) {
          outage.recovered()
        }
        // A pass starts by reading end offsets and metadata: brokers that are away (stopped,
        // restarting) are waited for until the cluster's unreachable timeout.
        if (isBackupError(error, 'KB_KAFKA_UNREACHABLE')) {
          await outage.retry(error)
          continue
        }
        if (!(error instanceof RestartNeeded)) {
          throw error
        }
        if (restarts++ >= MAX_RESTARTS) {
          throw new BackupError('KB_KAFKA', `restore gave up after ${restarts} restarts: ${error.message}`, {
            cause: error
          })
        }
        options.onWarning?.(`restarting the restore from its acknowledged position: ${error.message}`, {})
        await outage.retry(undefined)
      }
    }
  }

  /**
   * A dry run saves no state, but the real run refuses when it cannot: writing and removing a
   * probe object next to where the state goes lets the dry run refuse too.
   */
  async #probeStateStorage(restoreId: string): Promise<void> {
    const key = `${restoreStateBase(this.#options.backupId, restoreId)}.dry-run-probe`
    try {
      await this.#stateStorage.replace(key, Buffer.from('written and removed by kafka-backup restore --dry-run\n'))
      await this.#stateStorage.delete(key)
    } catch (error) {
      throw unwritableState(error, this.#stateStorage, restoreStateBase(this.#options.backupId, restoreId))
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

  /** One pass: reconcile with the target, then send until done or a restart is needed. */
  async #sendAll(
    active: PartitionProgress[],
    byTarget: Map<string, PartitionPlan>,
    signal: AbortSignal
  ): Promise<void> {
    const { cluster, maxConcurrentPartitions } = this.#options
    const targetTopics = [...new Set(active.map(p => p.state.targetTopic))]
    const targets = new Map(
      active.map(p => [
        partitionKey(p.state.targetTopic, p.state.targetPartition),
        { topic: p.state.targetTopic, partition: p.state.targetPartition }
      ])
    )
    const ends = await listOffsets(cluster, [...targets.values()], 'latest')
    const metadata = await cluster.metadata(targetTopics)
    const anyBroker = metadata.brokers.keys().next().value
    if (anyBroker === undefined) {
      throw new RestartNeeded('the target cluster reported no brokers')
    }
    const producer = await cluster.call(
      'initializing the idempotent producer (InitProducerId)',
      async () => initProducerId(await cluster.connection(metadata, anyBroker)),
      'IdempotentWrite on the cluster or Write on a target topic'
    )
    const slots = new Slots(maxConcurrentPartitions)
    // Ends this pass's pumps when a sender fails, so that the next pass starts from a clean slate.
    const pass = new AbortController()
    const passSignal = AbortSignal.any([signal, pass.signal])
    const byLeader = new Map<number, Array<{ feed: PartitionFeed; finish: () => void }>>()
    const pumps: Promise<void>[] = []
    const withSlot = (work: () => Promise<void>) => slots.run(work)
    /** Opens target partition `targetTopic/targetPartition` for this pass: its feed, on its leader. */
    const open = (
      targetTopic: string,
      targetPartition: number,
      targetNext: bigint,
      progressOf: (outgoing: OutgoingBatch) => PartitionProgress,
      finish: () => void
    ) => {
      const end = ends.get(partitionKey(targetTopic, targetPartition)) ?? 0n
      const alreadyWritten = end - targetNext
      if (alreadyWritten < 0n) {
        throw new BackupError(
          'KB_TARGET_CHANGED',
          `target partition ${targetTopic}/${targetPartition} ends at ${end}, before the ${targetNext} this restore already wrote; was it deleted or truncated?`,
          { topic: targetTopic, partition: targetPartition, offset: targetNext.toString() }
        )
      }
      const leader = metadata.topics.get(targetTopic)?.partitions[targetPartition]?.leader ?? -1
      if (leader < 0) {
        throw new RestartNeeded(`${targetTopic}/${targetPartition} has no leader`)
      }
      const feed = new PartitionFeed(targetTopic, targetPartition, 4, (outgoing, baseOffset) => {
        progressOf(outgoing).acknowledged(outgoing, baseOffset)
        this.#options.onAcknowledged?.(outgoing.batch.recordCount, outgoing.batch.bytes.length, outgoing.erased)
      })
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), { feed, finish }])
      return { feed, alreadyWritten }
    }
    for (const progress of active.filter(p => !p.state.repartitioned)) {
      const { targetTopic, targetPartition } = progress.state
      const plan = byTarget.get(`${targetTopic}/${targetPartition}`)!
      const { feed, alreadyWritten } = open(
        targetTopic,
        targetPartition,
        BigInt(progress.state.targetNextOffset),
        () => progress,
        () => progress.finished(plan.index.nextOffset)
      )
      pumps.push(
        withSlot(() => feed.pump(progress.skipWritten(this.#outgoing(plan, progress), alreadyWritten), passSignal))
      )
    }
    for (const topic of new Set(active.filter(p => p.state.repartitioned).map(p => p.state.targetTopic))) {
      pumps.push(...this.#openRepartitioned(topic, active, open, withSlot, passSignal))
    }
    // One bucket for every leader: the limit is the process's, not each broker's.
    const throttle = throttleOf(this.#options.rateLimitBytesPerSec)
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
          mayProduce: this.#mayProduce,
          throttle,
          onRequest: this.#options.onRequest
        }
      )
      for (const { finish } of entries) {
        finish()
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

  /**
   * The feeds of re-partitioned target topic `targetTopic` and the reader that fills them
   * (repartition.ts): one pump per target partition, the reader under one concurrency slot.
   */
  #openRepartitioned(
    targetTopic: string,
    active: PartitionProgress[],
    open: (
      targetTopic: string,
      targetPartition: number,
      targetNext: bigint,
      progressOf: (outgoing: OutgoingBatch) => PartitionProgress,
      finish: () => void
    ) => { feed: PartitionFeed; alreadyWritten: bigint },
    withSlot: (work: () => Promise<void>) => Promise<void>,
    signal: AbortSignal
  ): Promise<void>[] {
    const all = this.#progress.filter(p => p.state.targetTopic === targetTopic)
    const topicPlan = this.#plan!.topics.find(t => t.targetTopic === targetTopic)!
    const pairs = new Map<number, Map<number, PartitionProgress>>()
    for (const progress of active.filter(p => p.state.targetTopic === targetTopic)) {
      const lane = pairs.get(progress.state.targetPartition) ?? new Map<number, PartitionProgress>()
      lane.set(progress.state.sourcePartition, progress)
      pairs.set(progress.state.targetPartition, lane)
    }
    const sources = new Map<number, PartitionPlan>()
    for (const partition of topicPlan.partitions) {
      sources.set(partition.sourcePartition, partition)
    }
    const router = new TopicRouter({
      storage: this.#options.storage,
      backupId: this.#options.backupId,
      window: this.#options.window,
      eraser: this.#eraser,
      sources: [...sources.values()].sort((a, b) => a.sourcePartition - b.sourcePartition),
      partitionCount: topicPlan.partitionCount,
      pairs,
      maxBatchBytes: this.#coalesceLimits.get(targetTopic) ?? this.#options.coalesceMaxBytes,
      signal
    })
    const pumps: Promise<void>[] = []
    for (const [targetPartition, lanePairs] of pairs) {
      const everyPair = all.filter(p => p.state.targetPartition === targetPartition)
      // The pairs of a target partition write one after the other: its end is the furthest.
      const targetNext = everyPair.map(p => BigInt(p.state.targetNextOffset)).reduce((a, b) => (a > b ? a : b))
      const { feed, alreadyWritten } = open(
        targetTopic,
        targetPartition,
        targetNext,
        outgoing => lanePairs.get(outgoing.sourcePartition!)!,
        () => {
          for (const progress of lanePairs.values()) {
            progress.finished(sources.get(progress.state.sourcePartition)!.index.nextOffset)
          }
        }
      )
      pumps.push(
        feed.pump(
          skipWrittenRecords(
            router.lane(targetPartition),
            alreadyWritten,
            { topic: targetTopic, partition: targetPartition, targetNext },
            outgoing => lanePairs.get(outgoing.sourcePartition!)!
          ),
          signal
        )
      )
    }
    pumps.push(withSlot(() => router.run()))
    return pumps
  }

  async *#outgoing(plan: PartitionPlan, progress: PartitionProgress): AsyncGenerator<OutgoingBatch> {
    const partition = progress.state
    const { storage, backupId, window, signal } = this.#options
    const eraser = this.#eraser
    const pendingErased = { erased: 0 }
    const coalesceMaxBytes = this.#coalesceLimits.get(plan.targetTopic) ?? this.#options.coalesceMaxBytes
    const smallBatchBytes = Math.min(SMALL_BATCH_BYTES, coalesceMaxBytes / 2)
    const fromOffset = BigInt(partition.sourceNextOffset)
    const planned = new Set(plan.segments)
    let pending: OutgoingBatch[] = []
    let pendingBytes = 0
    // Every segment of the partition is checked against its entry, also those the plan skips.
    for await (const batch of readPartitionBatches(storage, backupId, plan.index, {
      fromOffset,
      segmentFilter: segment => planned.has(segment),
      frameFilter: row => mayOverlap(window, row.maxTimestamp),
      keys: this.#options.keys,
      signal
    })) {
      const outgoing = toOutgoing(
        batch,
        window,
        restoreFloor(batch, fromOffset, plan.index.gaps),
        eraser,
        pendingErased
      )
      if (!outgoing) {
        continue
      }
      outgoing.erased += pendingErased.erased
      pendingErased.erased = 0
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
    progress.erasedAtEnd = pendingErased.erased
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

/** A restore summary's partitions and totals, from the partitions' states. */
function partitionTotals(partitions: readonly PartitionState[]) {
  return {
    partitions: partitions.map(p => ({
      source: `${p.sourceTopic}/${p.sourcePartition}`,
      target: `${p.targetTopic}/${p.targetPartition}`,
      records: p.records,
      bytes: p.bytes,
      erasedRecords: p.erasedRecords
    })),
    records: partitions.reduce((sum, p) => sum + p.records, 0),
    bytes: partitions.reduce((sum, p) => sum + p.bytes, 0),
    erasedRecords: partitions.reduce((sum, p) => sum + p.erasedRecords, 0)
  }
}
