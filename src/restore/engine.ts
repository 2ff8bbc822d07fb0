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
import type { ClusterMetadataKind } from '../config/schema-parts.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError, isBackupError } from '../errors.ts'
import { findTopics, listOffsets, partitionKey } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { initProducerId } from '../kafka/raw-produce.ts'
import { Outage, untilAborted } from '../kafka/retry.ts'
import type { Storage } from '../storage/storage.ts'
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
import { PartitionFeed, RestartNeeded, sendToLeader, throttleOf } from './producer.ts'
import { PartitionProgress, skipWrittenRecords } from './progress.ts'
import { TopicRouter } from './repartition.ts'
import { checkBackupKeys, readPartitionBatches } from './source.ts'
import {
  type CommittedGroup,
  type PartitionState,
  RESTORE_STATE_FORMAT,
  RESTORE_STATE_VERSION,
  type RestoreState,
  restoreIdOf,
  restoreStateBase,
  writeRestoreState
} from './state.ts'
import { checkTarget, coalesceLimits, createTargetTopics } from './target.ts'
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
  signal?: AbortSignal
  onWarning?: (message: string, context: Record<string, unknown>) => void
  onRequest?: (durationMs: number, bytes: number) => void
  /**
   * The target acknowledged a batch of this many records and bytes; `erased` records were left
   * out on the way (restore.erase).
   */
  onAcknowledged?: (records: number, bytes: number, erased: number) => void
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

const MAX_RESTARTS = 30
/**
 * Only batches below this are merged: merging decodes and re-encodes on the main thread (22%
 * of restore CPU when 50-60 KiB producer batches were merged, bench/), and batches of this size
 * already fill a Produce request well. Topics written one record per batch still get merged.
 */
const SMALL_BATCH_BYTES = 16 * 1024

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

export class RestoreEngine {
  readonly #options: RestoreOptions
  readonly #stateStorage: Storage
  #state: RestoreState | undefined
  #progress: PartitionProgress[] = []
  #plannedRecords = 0
  #plannedByTarget = new Map<string, number>()
  /** Per target topic: the merge limit, within its max.message.bytes. */
  #coalesceLimits = new Map<string, number>()
  #eraser: KeyEraser | undefined
  #plan: RestorePlan | undefined

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
    const check = await checkTarget(options, this.#stateStorage, plan, restoreId)
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

    const now = new Date().toISOString()
    const targetTopicIds: Record<string, string> = {}
    for (const [name, topic] of check.existing) {
      targetTopicIds[name] = topic.topicId
    }
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
      targetTopicIds,
      window: {
        start: options.window.start?.toString() ?? null,
        end: options.window.end?.toString() ?? null
      },
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
    const outage = new Outage({
      what: 'restore',
      deadlineMs: options.cluster.unreachableTimeoutMs,
      deadlineKey: options.cluster.unreachableTimeoutKey,
      signal,
      onRetry: options.onWarning
    })
    const acknowledged = () => state.partitions.reduce((sum, p) => sum + p.records, 0)
    try {
      for (let restarts = 0; ; ) {
        const active = this.#progress.filter(p => !p.state.done)
        if (active.length === 0 || signal.aborted) {
          break
        }
        const acknowledgedBefore = acknowledged()
        try {
          // A stop does not wait for a broker that does not answer: what the target acknowledged
          // is saved below, and a rerun reconciles with the target's end offsets.
          await untilAborted(this.#sendAll(active, byTarget, signal), signal)
        } catch (error) {
          if (signal.aborted) {
            break
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
      partitions: state.partitions.map(p => ({
        source: `${p.sourceTopic}/${p.sourcePartition}`,
        target: `${p.targetTopic}/${p.targetPartition}`,
        records: p.records,
        bytes: p.bytes,
        erasedRecords: p.erasedRecords
      })),
      topicsCreated,
      notes,
      records: state.partitions.reduce((sum, p) => sum + p.records, 0),
      bytes: state.partitions.reduce((sum, p) => sum + p.bytes, 0),
      erasedRecords: state.partitions.reduce((sum, p) => sum + p.erasedRecords, 0),
      durationMs: Date.now() - startedAt,
      consumerGroups: state.consumerGroups,
      metadata: metadataChanges(metadataPlan)
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
    const slots = new Semaphore(maxConcurrentPartitions)
    // Ends this pass's pumps when a sender fails, so that the next pass starts from a clean slate.
    const pass = new AbortController()
    const passSignal = AbortSignal.any([signal, pass.signal])
    const byLeader = new Map<number, Array<{ feed: PartitionFeed; finish: () => void }>>()
    const pumps: Promise<void>[] = []
    const withSlot = (work: () => Promise<void>) =>
      (async () => {
        await slots.acquire()
        try {
          await work()
        } finally {
          slots.release()
        }
      })()
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
