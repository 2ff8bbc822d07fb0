/**
 * The backup engine: selects topics, captures what a restore needs
 * besides the data (partition counts, topic configs, consumer-group offsets), then streams
 * every partition's raw batches into segments, concurrently, until each partition reaches the
 * last stable offset it had when the run started (one-shot) or the signal aborts (continuous).
 *
 * Running the same backup again continues from each partition's checkpoint (incremental),
 * after checking that the source still continues it: same topic id, log not truncated below
 * the checkpoint (docs/source-changes.md). One process writes a backup at a time: two runs on
 * the same backup_id are coordinated only by the catalogue's revisions: the second to write a
 * checkpoint stops with KB_BACKUP_BUSY. With backup.workers, several processes share the backup
 * instead: a Kafka group assigns each its partitions, and each claims them in their indexes
 * before writing (docs/architecture.md, "Workers"). A run and a prune are coordinated by the
 * prune's lock: a run refuses while a prune holds it (catalog/prune.ts).
 *
 * A run never overwrites or deletes an object (docs/architecture.md, "Never overwrite"): every
 * segment, checkpoint and manifest is a new object, and what an interrupted run or prune left
 * is either taken into the index (the segment a killed run finished but did not record) or
 * left for `prune` to delete.
 */

import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { isFencedLeftover, unindexedSegmentProblems } from '../catalog/audit.ts'
import { writeClusterMetadata } from '../catalog/cluster-metadata.ts'
import {
  FORMAT,
  FORMAT_VERSION,
  type Manifest,
  type PartitionIndex,
  parseSegmentKey,
  partitionDir,
  type RunEntry,
  readManifest,
  readPartitionIndex,
  readPartitionIndexAmong,
  SEGMENT_NAME,
  type SegmentEntry,
  type TopicEntry,
  updateManifest,
  writeManifest,
  writePartitionIndex
} from '../catalog/manifest.ts'
import { pruneBackup, refuseWhilePruning } from '../catalog/prune.ts'
import type { ClusterMetadataKind } from '../config/schema-parts.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError, type ErrorCode, isBackupError } from '../errors.ts'
import { type Assignment, groupMemberClients, runWorkGroup, type WorkGroupLogger } from '../group/work-group.ts'
import {
  captureGroupOffsets,
  describeTopicConfigs,
  isInternalTopic,
  listOffsets,
  matchingTopics,
  partitionKey
} from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import type { SegmentCodec } from '../segment/codecs.ts'
import { readSegmentIndex } from '../segment/reader.ts'
import type { StoreRecords } from '../segment/writer.ts'
import { mapLimited, Slots } from '../slots.ts'
import { openRangeSource } from '../storage/range-source.ts'
import type { Storage } from '../storage/storage.ts'
import { type Throttle, throttleOf } from '../throttle.ts'
import { topicMatcher } from '../topics.ts'
import { toolVersion } from '../version.ts'
import { ByteBudget } from './budget.ts'
import { captureClusterMetadata } from './cluster-metadata.ts'
import { refuseDivergedPartitions } from './divergence.ts'
import { BackupFetcher } from './fetcher.ts'
import { PartitionTask } from './partition-task.ts'

/**
 * Partitions whose indexes are read or written, or whose segments are closed, at once. Many
 * partitions with little data each (2,000 in docs/benchmarks.md, "Many partitions with little
 * data each") all reach these steps together: unbounded, their objects (open files, streams,
 * promises) lived long enough for V8 to promote them and grow its heap to 170-190 MiB; 16 to
 * 64 at once keep the filesystem's threads and an object store's connections busy.
 */
const PARTITIONS_AT_ONCE = 64

export interface BackupOptions {
  backupId: string
  storage: Storage
  cluster: KafkaCluster
  bootstrapServers: string[]
  topics: { include: string[]; exclude: string[] }
  includeInternalTopics: boolean
  compression: SegmentCodec
  compressionLevel: number
  frameMaxBytes: number
  /** Store compressed batches as fetched or with their records decompressed (src/segment/stored-records.ts). */
  storeRecords: StoreRecords
  /** backup.encryption: new segments are encrypted (docs/encryption.md). */
  keys?: KeyProvider
  segmentMaxBytes: number
  segmentMaxIntervalMs: number
  /** Bounds how long fetched data may stay outside a durable, indexed segment. */
  checkpointIntervalMs: number
  continuous: boolean
  startOffset: 'earliest' | 'latest'
  maxBytesInFlight: number
  /** Per-partition cap on fetched bytes not yet appended to a segment; unset: none. */
  maxPartitionBufferedBytes?: number
  /** How often a continuous run looks for partitions added to its topics; default 30 s. */
  metadataRefreshIntervalMs?: number
  /** At most this many partitions are fetched at once (one-shot only); unset: all. */
  maxConcurrentPartitions?: number
  fetch: { maxWaitMs: number; minBytes: number; maxBytes: number; partitionMaxBytes: number }
  signal?: AbortSignal
  onWarning?: (message: string, context: Record<string, unknown>) => void
  /** A segment became durable: its records, batch bytes, stored bytes, and the time its close took. */
  onSegmentDurable?: (segment: {
    topic: string
    partition: number
    records: number
    bytes: number
    sizeBytes: number
    durationMs: number
  }) => void
  /** A fetched record set reached its segment: records, bytes, and the time since it was fetched. */
  onBatchesWritten?: (records: number, bytes: number, durationMs: number) => void
  onFetch?: (durationMs: number, bytes: number) => void
  /** backup.retention: after a run that ends without error, prune what is older than this. */
  retention?: { keepWithinMs: number }
  /** backup.metadata: the cluster metadata captured into metadata/kafka/{revision}.json; unset: none. */
  clusterMetadata?: readonly ClusterMetadataKind[]
  /** backup.rate_limit_bytes_per_sec: cap on bytes written per second by this process; unset: none. */
  rateLimitBytesPerSec?: number
  /** backup.workers: run as one worker of a group sharing the backup; unset: one process does all. */
  workers?: WorkersOptions
}

export interface WorkersOptions {
  /** The group's own connections (src/group/work-group.ts says why), not `cluster`. */
  cluster: KafkaCluster
  groupId: string
  /** Names this worker in run records and claims; also the group connection's client id, so live workers can be told from killed ones. */
  workerId: string
  sessionTimeoutMs: number
  heartbeatIntervalMs: number
  rebalanceTimeoutMs: number
  logger?: WorkGroupLogger
}

export interface PartitionProgress {
  topic: string
  partition: number
  startOffset: string
  fetchOffset: string
  checkpoint: string
  stopOffset: string | null
  /** Records the partition had at its last Fetch beyond what was fetched (READ_COMMITTED). */
  lagRecords: number | null
  records: number
  bytes: number
}

export interface BackupSummary {
  backupId: string
  location: string
  status: 'complete' | 'stopped'
  topics: number
  partitions: number
  records: number
  /** Raw RecordBatch bytes backed up in this run. */
  bytes: number
  /** Bytes of the segments written in this run (after compression). */
  storedBytes: number
  durationMs: number
  gaps: Array<{ topic: string; partition: number; fromOffset: string; toOffset: string }>
  deletedTopics: string[]
  /** What backup.retention pruned after the run, when set. */
  pruned?: { keptFrom: string; segments: number; records: number; sizeBytes: number }
}

export class BackupEngine {
  readonly #options: BackupOptions
  #tasks: PartitionTask[] = []
  #storedBytes = 0
  /** backup.rate_limit_bytes_per_sec, shared by every partition of the run. */
  readonly #throttle: Throttle | undefined
  /** Shared by the run's tasks: segments closing at once (PARTITIONS_AT_ONCE). */
  readonly #closeSlots = new Slots(PARTITIONS_AT_ONCE)

  constructor(options: BackupOptions) {
    this.#options = options
    this.#throttle = throttleOf(options.rateLimitBytesPerSec)
  }

  progress(): PartitionProgress[] {
    return this.#tasks.map(task => ({
      topic: task.topic,
      partition: task.partition,
      startOffset: task.runStartOffset.toString(),
      fetchOffset: task.fetchOffset.toString(),
      checkpoint: task.checkpoint.toString(),
      stopOffset: task.stopOffset?.toString() ?? null,
      lagRecords:
        task.lastStableOffset === undefined ? null : Math.max(Number(task.lastStableOffset - task.fetchOffset), 0),
      records: task.recordsWritten,
      bytes: task.bytesWritten
    }))
  }

  async run(): Promise<BackupSummary> {
    const options = this.#options
    const startedAt = Date.now()
    const signal = options.signal ?? new AbortController().signal
    // Refused before anything is read or written; checked again once the run is on record.
    await refuseWhilePruning(options.storage, options.backupId)
    const captured = await this.#capture()
    return options.workers
      ? this.#runAsWorker(options.workers, captured, startedAt, signal)
      : this.#runAlone(captured, startedAt, signal)
  }

  /** What every run reads from the cluster before it writes anything, with the refusals it implies. */
  async #capture(): Promise<Captured> {
    const options = this.#options
    const { storage, cluster, backupId } = options
    const topics = await this.#selectTopics()
    const metadata = await cluster.metadata([])
    const existingManifest = await readManifest(storage, backupId)
    refuseOtherCluster(existingManifest, metadata.id, options.bootstrapServers)
    refuseRecreatedTopics(existingManifest, topics, backupId)
    refuseUnencryptedRun(existingManifest, options.keys)
    const partitions = topics.flatMap(t =>
      Array.from({ length: t.partitionCount }, (_, partition) => ({ topic: t.name, partition }))
    )
    if (
      options.continuous &&
      options.maxConcurrentPartitions !== undefined &&
      options.maxConcurrentPartitions < partitions.length
    ) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `backup.max_concurrent_partitions (${options.maxConcurrentPartitions}) is below the ${partitions.length} selected partitions; a continuous backup follows every partition at once`,
        {
          path: 'backup.max_concurrent_partitions',
          expected: `>= ${partitions.length}`,
          found: options.maxConcurrentPartitions
        }
      )
    }
    const metadataKinds = options.clusterMetadata ?? []
    const [configs, logStart, highWatermark, lastStable, groups, clusterMetadata] = await Promise.all([
      describeTopicConfigs(
        cluster,
        topics.map(t => t.name)
      ),
      listOffsets(cluster, partitions, 'earliest'),
      listOffsets(cluster, partitions, 'latest'),
      listOffsets(cluster, partitions, 'lastStable'),
      captureGroupOffsets(cluster, new Set(topics.map(t => t.name))),
      metadataKinds.length === 0
        ? undefined
        : captureClusterMetadata(cluster, metadataKinds, metadata.id, options.onWarning)
    ])
    return {
      topics,
      clusterId: metadata.id,
      existingManifest,
      partitions,
      configs,
      logStart,
      highWatermark,
      lastStable,
      groups,
      clusterMetadata,
      capturedAt: new Date().toISOString()
    }
  }

  /** Puts what the run captured into the manifest: topics with their configs, group offsets, key ids. */
  #applyCapture(manifest: Manifest, captured: Captured): void {
    const { keys } = this.#options
    if (keys) {
      const keyIds = manifest.encryption?.keyIds ?? []
      manifest.encryption = {
        keyIds: keyIds.includes(keys.activeKeyId) ? keyIds : [...keyIds, keys.activeKeyId]
      }
    }
    for (const topic of captured.topics) {
      const existing = manifest.topics.findIndex(t => t.name === topic.name)
      const entry: TopicEntry = {
        ...topic,
        // A worker that saw the topic grow may have counted more partitions than this capture.
        partitionCount: Math.max(topic.partitionCount, existing >= 0 ? manifest.topics[existing]!.partitionCount : 0),
        configs: captured.configs.get(topic.name) ?? {}
      }
      if (existing >= 0) {
        manifest.topics[existing] = entry
      } else {
        manifest.topics.push(entry)
      }
    }
    manifest.topics.sort((a, b) => a.name.localeCompare(b.name))
    manifest.consumerGroups = captured.groups.map(g => ({
      groupId: g.groupId,
      state: g.state,
      capturedAt: captured.capturedAt,
      offsets: g.offsets.map(o => ({ ...o, offset: o.offset.toString() }))
    }))
  }

  /** The run of one process that backs up every selected partition itself. */
  async #runAlone(captured: Captured, startedAt: number, signal: AbortSignal): Promise<BackupSummary> {
    const options = this.#options
    const { storage, cluster, backupId } = options
    const { topics, partitions, logStart, highWatermark, lastStable, clusterMetadata } = captured
    const manifest = captured.existingManifest ?? this.#newManifest(captured.clusterId)
    for (const earlier of manifest.runs) {
      if (earlier.status === 'running') {
        earlier.status = 'interrupted'
      }
    }
    this.#applyCapture(manifest, captured)
    const checked = await mapLimited(partitions, PARTITIONS_AT_ONCE, ({ topic, partition }) => {
      const key = partitionKey(topic, partition)
      return this.#readIndex(topic, partition, {
        logStart: logStart.get(key) ?? 0n,
        highWatermark: highWatermark.get(key) ?? 0n,
        lastStable: lastStable.get(key) ?? 0n
      })
    })
    await refuseDivergedPartitions(
      cluster,
      storage,
      backupId,
      checked.map(c => c.index),
      options.keys
    )
    // One process writes a backup at a time, so uploads and temp files of ours still open are
    // a killed run's. Restores write under restores/ and may run beside us: not ours to clear.
    let cleared = 0
    for (const prefix of [`${backupId}/topics/`, `${backupId}/manifest`]) {
      cleared += (await storage.abortIncompleteUploads?.(prefix, new Date(startedAt))) ?? 0
    }
    if (cleared > 0) {
      options.onWarning?.(`removed ${cleared} incomplete uploads an interrupted run left behind`, { backupId })
    }
    const indexes = await mapLimited(checked, PARTITIONS_AT_ONCE, opened => this.#openIndex(opened))
    const run: RunEntry = { startedAt: new Date(startedAt).toISOString(), status: 'running', records: 0, bytes: 0 }
    manifest.runs.push(run)
    if (clusterMetadata) {
      await writeClusterMetadata(storage, backupId, clusterMetadata)
    }
    await writeManifest(storage, manifest)
    try {
      await refuseWhilePruning(storage, backupId)
    } catch (error) {
      Object.assign(run, { status: 'failed', error: (error as Error).message, finishedAt: new Date().toISOString() })
      await writeManifest(storage, manifest)
      throw error
    }

    const deletedTopics = new Set<string>()
    this.#tasks = indexes.map(index => {
      const topicId = topics.find(t => t.name === index.topic)!.topicId
      return this.#newTask(index, topicId, lastStable.get(partitionKey(index.topic, index.partition)))
    })
    const gapsBefore = new Map(this.#tasks.map(t => [t, t.index.gaps.length]))

    const budget = new ByteBudget(options.maxBytesInFlight)
    const fetcher = new BackupFetcher(cluster, this.#tasks, {
      ...options.fetch,
      backupId,
      maxConcurrentPartitions: options.maxConcurrentPartitions,
      maxPartitionBufferedBytes: options.maxPartitionBufferedBytes,
      budget,
      signal,
      onFetch: options.onFetch,
      metadataRefreshIntervalMs: options.continuous ? (options.metadataRefreshIntervalMs ?? 30_000) : undefined,
      onPartitionsAdded: (topic, partitionCount) => this.#addPartitions(manifest, topic, partitionCount),
      onRetry: options.onWarning,
      onTopicDeleted: task => {
        deletedTopics.add(task.topic)
        options.onWarning?.(`topic ${task.topic} was deleted during the backup; its partitions stop here`, {
          topic: task.topic,
          partition: task.partition
        })
      }
    })
    const ticker = setInterval(() => {
      for (const task of this.#tasks) {
        task.tick()
      }
    }, 1000)
    try {
      await fetcher.run()
      await Promise.all(this.#tasks.map(task => task.flush()))
    } catch (error) {
      await Promise.all(this.#tasks.map(task => task.abort(error)))
      run.status = 'failed'
      run.error = (error as Error).message
      run.finishedAt = new Date().toISOString()
      await writeManifest(storage, manifest).catch(() => {})
      throw error
    } finally {
      clearInterval(ticker)
    }

    for (const topic of manifest.topics) {
      if (deletedTopics.has(topic.name)) {
        topic.deletedDuringBackup = true
      }
    }
    const records = this.#tasks.reduce((sum, t) => sum + t.recordsWritten, 0)
    const bytes = this.#tasks.reduce((sum, t) => sum + t.bytesWritten, 0)
    Object.assign(run, {
      status: signal.aborted ? 'stopped' : 'complete',
      records,
      bytes,
      finishedAt: new Date().toISOString()
    })
    await writeManifest(storage, manifest)
    const pruned =
      options.retention &&
      (await pruneBackup({
        storage,
        backupId,
        keepFrom: Date.now() - options.retention.keepWithinMs,
        onWarning: options.onWarning
      }))
    return {
      backupId,
      location: `${storage.location}/${backupId}`,
      status: signal.aborted ? 'stopped' : 'complete',
      topics: topics.length,
      partitions: this.#tasks.length,
      records,
      bytes,
      storedBytes: this.#storedBytes,
      durationMs: Date.now() - startedAt,
      gaps: this.#tasks.flatMap(t =>
        t.index.gaps.slice(gapsBefore.get(t)).map(g => ({ topic: t.topic, partition: t.partition, ...g }))
      ),
      deletedTopics: [...deletedTopics],
      ...(pruned && {
        pruned: {
          keptFrom: pruned.keptFrom,
          segments: pruned.segments,
          records: pruned.records,
          sizeBytes: pruned.sizeBytes
        }
      })
    }
  }

  /**
   * The run of one worker of several (backup.workers, docs/architecture.md "Workers"): it joins
   * the backup's work group and backs up the partitions the group assigns it, claiming each in
   * its index first, until it is stopped (continuous) or every partition of the backup reached
   * the last stable offset it had when this worker started, whoever backed it up (one-shot).
   */
  async #runAsWorker(
    workers: WorkersOptions,
    captured: Captured,
    startedAt: number,
    signal: AbortSignal
  ): Promise<BackupSummary> {
    const options = this.#options
    const { storage, backupId } = options
    const run: RunEntry = {
      startedAt: new Date(startedAt).toISOString(),
      status: 'running',
      worker: workers.workerId,
      records: 0,
      bytes: 0
    }
    const newManifest = () => this.#newManifest(captured.clusterId)
    await updateManifest(storage, backupId, newManifest, manifest => {
      for (const earlier of manifest.runs) {
        // A lone process's run still marked running was killed; other workers' runs may be live.
        if (earlier.status === 'running' && earlier.worker === undefined) {
          earlier.status = 'interrupted'
        }
      }
      this.#applyCapture(manifest, captured)
      upsertRun(manifest, run)
    })
    if (captured.clusterMetadata) {
      await writeClusterMetadata(storage, backupId, captured.clusterMetadata).catch(error => {
        // Workers starting together capture the same thing: one revision of it is enough.
        if (!isBackupError(error, 'KB_BACKUP_BUSY')) {
          throw error
        }
      })
    }
    const worker: WorkerState = {
      workers,
      captured,
      items: captured.partitions.map(p => itemOf(p.topic, p.partition)),
      pending: new Map(
        captured.partitions.map(p => [
          itemOf(p.topic, p.partition),
          captured.lastStable.get(partitionKey(p.topic, p.partition)) ?? 0n
        ])
      ),
      budget: new ByteBudget(options.maxBytesInFlight),
      records: 0,
      bytes: 0,
      partitions: new Set(),
      gaps: [],
      deletedTopics: new Set()
    }
    try {
      await refuseWhilePruning(storage, backupId)
      await runWorkGroup(
        {
          cluster: workers.cluster,
          groupId: workers.groupId,
          items: () => worker.items,
          sessionTimeoutMs: workers.sessionTimeoutMs,
          heartbeatIntervalMs: workers.heartbeatIntervalMs,
          rebalanceTimeoutMs: workers.rebalanceTimeoutMs,
          signal,
          logger: workers.logger
        },
        (assignment, revoked) => this.#work(worker, assignment, revoked)
      )
    } catch (error) {
      Object.assign(run, {
        status: 'failed',
        error: (error as Error).message,
        records: worker.records,
        bytes: worker.bytes,
        finishedAt: new Date().toISOString()
      })
      await updateManifest(storage, backupId, newManifest, manifest => upsertRun(manifest, run)).catch(() => {})
      throw error
    }
    const status = signal.aborted ? 'stopped' : 'complete'
    Object.assign(run, { status, records: worker.records, bytes: worker.bytes, finishedAt: new Date().toISOString() })
    // Workers still in the group are live; a run still marked running by any other was killed.
    const live = await groupMemberClients(workers.cluster, workers.groupId).then(
      clients => new Set(clients),
      () => undefined
    )
    await updateManifest(storage, backupId, newManifest, manifest => {
      for (const earlier of manifest.runs) {
        if (
          live !== undefined &&
          earlier.status === 'running' &&
          earlier.worker !== workers.workerId &&
          !live.has(earlier.worker ?? '')
        ) {
          earlier.status = 'interrupted'
        }
      }
      upsertRun(manifest, run)
      for (const topic of manifest.topics) {
        if (worker.deletedTopics.has(topic.name)) {
          topic.deletedDuringBackup = true
        }
      }
    })
    return {
      backupId,
      location: `${storage.location}/${backupId}`,
      status,
      topics: captured.topics.length,
      partitions: worker.partitions.size,
      records: worker.records,
      bytes: worker.bytes,
      storedBytes: this.#storedBytes,
      durationMs: Date.now() - startedAt,
      gaps: worker.gaps,
      deletedTopics: [...worker.deletedTopics]
    }
  }

  /**
   * One generation of the group: claims the assigned partitions, backs them up until the
   * assignment is revoked (or, one-shot, until they reach their stop offsets), makes what was
   * appended durable, and says whether the worker is done. A partition another worker claimed
   * meanwhile (KB_PARTITION_FENCED: this worker lost it without noticing) is dropped with a
   * warning and the worker joins the group again.
   */
  async #work(worker: WorkerState, assignment: Assignment, revoked: AbortSignal): Promise<'done' | 'continue'> {
    const options = this.#options
    const assignedAt = Date.now()
    const regroup = new AbortController()
    const stop = AbortSignal.any([revoked, regroup.signal])
    const tasks = await this.#claim(worker, assignment, assignedAt, stop)
    if (tasks === undefined) {
      return 'continue'
    }
    this.#tasks = tasks
    const gapsBefore = new Map(tasks.map(t => [t, t.index.gaps.length]))
    const fetcher = new BackupFetcher(options.cluster, tasks, {
      ...options.fetch,
      backupId: options.backupId,
      maxConcurrentPartitions: options.maxConcurrentPartitions,
      maxPartitionBufferedBytes: options.maxPartitionBufferedBytes,
      budget: worker.budget,
      signal: stop,
      onFetch: options.onFetch,
      metadataRefreshIntervalMs: options.continuous ? (options.metadataRefreshIntervalMs ?? 30_000) : undefined,
      // The fetcher counts its own tasks, a share of the topic: only more than the backup's items is growth.
      onPartitionsAdded: async (topic, partitionCount) => {
        if (await this.#topicGrew(worker, topic, partitionCount)) {
          // The group hands the new partitions out: join again with them among this worker's items.
          regroup.abort()
        }
        return []
      },
      onRetry: options.onWarning,
      onTopicDeleted: task => {
        worker.deletedTopics.add(task.topic)
        options.onWarning?.(`topic ${task.topic} was deleted during the backup; its partitions stop here`, {
          topic: task.topic,
          partition: task.partition
        })
      }
    })
    const ticker = setInterval(() => {
      for (const task of tasks) {
        task.tick()
      }
    }, 1000)
    const discard = () => {
      for (const task of tasks) {
        task.discardQueued()
      }
    }
    stop.addEventListener('abort', discard, { once: true })
    const failures: unknown[] = []
    try {
      await fetcher.run()
    } catch (error) {
      failures.push(error)
    } finally {
      clearInterval(ticker)
      stop.removeEventListener('abort', discard)
    }
    // Whatever stopped the fetch, what was appended becomes durable (a fenced partition's
    // write is refused by the claim of its new owner, so flushing is always safe).
    for (const flushed of await Promise.allSettled(tasks.map(task => task.flush()))) {
      if (flushed.status === 'rejected') {
        failures.push(flushed.reason)
      }
    }
    for (const task of tasks) {
      worker.records += task.recordsWritten
      worker.bytes += task.bytesWritten
      worker.gaps.push(
        ...task.index.gaps
          .slice(gapsBefore.get(task))
          .map(g => ({ topic: task.topic, partition: task.partition, ...g }))
      )
    }
    this.#tasks = []
    const fatal = failures.find(error => !isBackupError(error, 'KB_PARTITION_FENCED'))
    if (fatal !== undefined) {
      await Promise.all(tasks.map(task => task.abort(fatal)))
      throw fatal
    }
    const fenced = [...new Set(failures)] as BackupError[]
    for (const error of fenced) {
      options.onWarning?.(error.message, {
        code: error.code,
        topic: error.topic,
        partition: error.partition,
        key: error.key
      })
    }
    if (fenced.length > 0 || stop.aborted) {
      return 'continue'
    }
    if (options.continuous) {
      // A continuous worker with nothing to do waits for the group to change.
      await once(revoked, 'abort')
      return 'continue'
    }
    return this.#waitForBackupEnd(worker, revoked)
  }

  /**
   * Claims each assigned partition for this worker: reads its index (taking in the segment a
   * killed owner finished but did not record) and writes the next revision naming this worker
   * and its epoch. From then on the previous owner's writes of the partition are refused: its
   * next index revision is taken. Returns the tasks, or undefined when the assignment was revoked
   * meanwhile or proved stale (another member claimed a partition in a later generation).
   */
  async #claim(
    worker: WorkerState,
    assignment: Assignment,
    assignedAt: number,
    stop: AbortSignal
  ): Promise<PartitionTask[] | undefined> {
    const options = this.#options
    const { storage, cluster, backupId } = options
    const partitions = assignment.items.map(parseItem)
    if (partitions.length === 0) {
      return []
    }
    const [logStart, highWatermark, lastStable] = await Promise.all([
      listOffsets(cluster, partitions, 'earliest'),
      listOffsets(cluster, partitions, 'latest'),
      listOffsets(cluster, partitions, 'lastStable')
    ])
    const claimedAt = Date.now()
    const claimOne = async ({ topic, partition }: { topic: string; partition: number }) => {
      const key = partitionKey(topic, partition)
      const topicId = worker.captured.topics.find(t => t.name === topic)?.topicId
      if (topicId === undefined) {
        return undefined
      }
      for (let attempt = 1; ; attempt++) {
        if (stop.aborted) {
          return 'stale'
        }
        let opened: OpenedIndex
        try {
          opened = await this.#readIndex(topic, partition, {
            logStart: logStart.get(key) ?? 0n,
            highWatermark: highWatermark.get(key) ?? 0n,
            lastStable: lastStable.get(key) ?? 0n
          })
        } catch (error) {
          // The previous owner may have checkpointed past the end we read before its index.
          if (isBackupError(error, 'KB_SOURCE_TRUNCATED') && attempt === 1) {
            const latest = await listOffsets(cluster, [{ topic, partition }], 'latest')
            highWatermark.set(key, latest.get(key) ?? 0n)
            continue
          }
          throw error
        }
        const { index } = opened
        if (claimedSince(index, assignment, assignedAt)) {
          // Another member claimed it in a later generation than ours: this worker's assignment
          // is stale (it was paused or cut off); it must not take the partition back.
          options.onWarning?.(
            `${topic}/${partition} was claimed by ${index.owner!.worker} in generation ${index.owner!.generation} after this worker's generation ${assignment.generation}; joining the group again`,
            { topic, partition, generation: assignment.generation }
          )
          return 'stale'
        }
        index.owner = {
          epoch: (index.revision ?? 0) + 1,
          worker: worker.workers.workerId,
          memberId: assignment.memberId,
          generation: assignment.generation,
          claimedAt: new Date(claimedAt).toISOString()
        }
        try {
          await writePartitionIndex(storage, backupId, index)
        } catch (error) {
          // The previous owner wrote a checkpoint between our read and our claim: read again.
          if (isBackupError(error, 'KB_BACKUP_BUSY') && attempt < 20) {
            continue
          }
          throw error
        }
        if (opened.adopted) {
          options.onWarning?.(
            `recorded segment ${backupId}/${opened.adopted} in its partition index: its previous owner wrote it and stopped before recording it`,
            { topic, partition, key: `${backupId}/${opened.adopted}` }
          )
        }
        worker.partitions.add(key)
        return this.#newTask(index, topicId, lastStable.get(key), index.owner.epoch)
      }
    }
    // Claimed side by side, as a lone run reads its indexes: a worker may hold hundreds.
    const claimed = await mapLimited(partitions, PARTITIONS_AT_ONCE, claimOne)
    if (claimed.includes('stale')) {
      return undefined
    }
    const tasks = claimed.filter((task): task is PartitionTask => task instanceof PartitionTask)
    // As a lone run does before its first Fetch: the source must still continue what is stored.
    await refuseDivergedPartitions(
      cluster,
      storage,
      backupId,
      tasks.map(task => task.index),
      options.keys
    )
    return tasks
  }

  /**
   * One-shot: this worker is done once every partition of the backup is in storage up to the
   * last stable offset it had when this worker started, so a partition whose owner died is
   * still finished by whoever the group gives it to. Polls the indexes until then, or until the
   * group changes.
   */
  async #waitForBackupEnd(worker: WorkerState, revoked: AbortSignal): Promise<'done' | 'continue'> {
    const { storage, backupId } = this.#options
    while (!revoked.aborted) {
      await Promise.all(
        [...worker.pending].map(async ([item, stopOffset]) => {
          const { topic, partition } = parseItem(item)
          const index = await readPartitionIndex(storage, backupId, topic, partition)
          if (worker.deletedTopics.has(topic) || (index !== undefined && BigInt(index.nextOffset) >= stopOffset)) {
            worker.pending.delete(item)
          }
        })
      )
      if (worker.pending.size === 0) {
        return 'done'
      }
      await sleep(worker.workers.heartbeatIntervalMs, undefined, { signal: revoked }).catch(() => {})
    }
    return 'continue'
  }

  /**
   * A topic grew while a continuous worker follows it: the new partitions get an index (from
   * their log start) and the manifest names the new count before any of their segments exists,
   * then the worker joins the group again with them among its items.
   */
  async #topicGrew(worker: WorkerState, topic: string, partitionCount: number): Promise<boolean> {
    const { cluster, storage, backupId } = this.#options
    const known = worker.items.filter(item => parseItem(item).topic === topic).length
    if (!this.#options.continuous || partitionCount <= known) {
      return false
    }
    const added = Array.from({ length: partitionCount - known }, (_, i) => ({ topic, partition: known + i }))
    const [logStart, highWatermark] = await Promise.all([
      listOffsets(cluster, added, 'earliest'),
      listOffsets(cluster, added, 'latest')
    ])
    for (const { partition } of added) {
      const key = partitionKey(topic, partition)
      const start = logStart.get(key) ?? 0n
      const opened = await this.#readIndex(topic, partition, {
        logStart: start,
        highWatermark: highWatermark.get(key) ?? 0n,
        lastStable: start
      })
      if (opened.isNew) {
        await writePartitionIndex(storage, backupId, opened.index).catch(error => {
          // Another worker saw the same partitions appear and wrote the index first.
          if (!isBackupError(error, 'KB_BACKUP_BUSY')) {
            throw error
          }
        })
      }
    }
    await updateManifest(
      storage,
      backupId,
      () => this.#newManifest(worker.captured.clusterId),
      manifest => {
        const entry = manifest.topics.find(t => t.name === topic)
        if (entry && entry.partitionCount < partitionCount) {
          entry.partitionCount = partitionCount
        }
      }
    )
    worker.items = [...worker.items, ...added.map(p => itemOf(p.topic, p.partition))]
    this.#options.onWarning?.(`topic ${topic} grew to ${partitionCount} partitions; backing up the new ones too`, {
      topic,
      partitions: added.map(p => p.partition)
    })
    return true
  }

  #newTask(index: PartitionIndex, topicId: string, lastStable: bigint | undefined, ownerEpoch?: number): PartitionTask {
    const options = this.#options
    const task = new PartitionTask({
      ...(ownerEpoch !== undefined && { ownerEpoch }),
      ...(this.#throttle && { throttle: this.#throttle }),
      storage: options.storage,
      backupId: options.backupId,
      index,
      topicId,
      codec: options.compression,
      compressionLevel: options.compressionLevel,
      frameMaxBytes: options.frameMaxBytes,
      storeRecords: options.storeRecords,
      keys: options.keys,
      segmentMaxBytes: options.segmentMaxBytes,
      segmentMaxIntervalMs: Math.min(options.segmentMaxIntervalMs, options.checkpointIntervalMs),
      closeSlots: this.#closeSlots,
      onSegmentDurable: (t, entry, durationMs) => {
        this.#storedBytes += entry.sizeBytes
        options.onSegmentDurable?.({
          topic: t.topic,
          partition: t.partition,
          records: entry.recordCount,
          bytes: entry.uncompressedBytes,
          sizeBytes: entry.sizeBytes,
          durationMs
        })
      },
      onBatchesWritten: (_t, records, bytes, durationMs) => options.onBatchesWritten?.(records, bytes, durationMs)
    })
    if (!options.continuous) {
      task.stopOffset = lastStable
    }
    return task
  }

  /**
   * Partitions added to a topic while a continuous run follows it: backed up from their log
   * start (every record in them is newer than the run, whatever start_offset says). The
   * manifest names the new count before any of their segments exists, so that a restore of a
   * backup whose run is killed later still sees them.
   */
  async #addPartitions(manifest: Manifest, topic: string, partitionCount: number): Promise<PartitionTask[]> {
    const { cluster, storage } = this.#options
    const entry = manifest.topics.find(t => t.name === topic)!
    const added = Array.from({ length: partitionCount - entry.partitionCount }, (_, i) => ({
      topic,
      partition: entry.partitionCount + i
    }))
    const [logStart, highWatermark] = await Promise.all([
      listOffsets(cluster, added, 'earliest'),
      listOffsets(cluster, added, 'latest')
    ])
    const checked = await mapLimited(added, PARTITIONS_AT_ONCE, ({ partition }) => {
      const key = partitionKey(topic, partition)
      const start = logStart.get(key) ?? 0n
      return this.#readIndex(topic, partition, {
        logStart: start,
        highWatermark: highWatermark.get(key) ?? 0n,
        lastStable: start
      })
    })
    const indexes = await mapLimited(checked, PARTITIONS_AT_ONCE, opened => this.#openIndex(opened))
    entry.partitionCount = partitionCount
    await writeManifest(storage, manifest)
    this.#options.onWarning?.(`topic ${topic} grew to ${partitionCount} partitions; backing up the new ones too`, {
      topic,
      partitions: added.map(p => p.partition)
    })
    const tasks = indexes.map(index => this.#newTask(index, entry.topicId, undefined))
    this.#tasks.push(...tasks)
    return tasks
  }

  async #selectTopics() {
    const { cluster, topics: selection, includeInternalTopics, bootstrapServers } = this.#options
    const matches = topicMatcher(selection)
    const { topics: selected, listed } = await matchingTopics(
      cluster,
      name => (includeInternalTopics || !isInternalTopic(name)) && matches(name)
    )
    if (selected.length === 0) {
      throw new BackupError(
        'KB_TOPIC_NOT_FOUND',
        `source.topics (include ${JSON.stringify(selection.include)}, exclude ${JSON.stringify(selection.exclude)}) matches none of the ${listed} topics on ${bootstrapServers.join(',')}`,
        { include: selection.include, exclude: selection.exclude }
      )
    }
    return selected.map(t => ({ name: t.name, topicId: t.topicId, partitionCount: t.partitionCount }))
  }

  #newManifest(clusterId: string | null): Manifest {
    const now = new Date().toISOString()
    return {
      format: FORMAT,
      formatVersion: FORMAT_VERSION,
      toolVersion,
      backupId: this.#options.backupId,
      createdAt: now,
      updatedAt: now,
      source: { clusterId, bootstrapServers: this.#options.bootstrapServers },
      compression: { codec: this.#options.compression, level: this.#options.compressionLevel },
      topics: [],
      consumerGroups: [],
      runs: []
    }
  }

  /**
   * The partition's index, or a new one starting at the log start (or the last stable offset
   * for start_offset: latest), checked against the source log, with the segment an interrupted
   * run left past its checkpoint taken in. Changes nothing in storage: a refused run leaves the
   * backup as it was.
   */
  async #readIndex(topic: string, partition: number, offsets: SourceOffsets): Promise<OpenedIndex> {
    const { storage, backupId, startOffset } = this.#options
    // One listing of the partition's folder finds both its index revisions and its segments.
    const objects = await storage.list(`${partitionDir(backupId, topic, partition)}/`)
    const existing = await readPartitionIndexAmong(
      storage,
      backupId,
      topic,
      partition,
      objects.map(object => object.key)
    )
    const segmentObjects = objects
      .filter(object => SEGMENT_NAME.test(object.key))
      .sort((a, b) => (a.key < b.key ? -1 : 1))
    const segmentKeys = segmentObjects.map(object => object.key)
    const where = `${storage.location}/${partitionDir(backupId, topic, partition)}`
    if (!existing) {
      if (segmentKeys.length > 0) {
        // Starting over would delete these as orphans: they may be the only copy of that data.
        throw new BackupError(
          'KB_BACKUP_CORRUPT',
          `${where} holds ${segmentKeys.length} segments but no index; restore the index or move the folder away`,
          { topic, partition, key: segmentKeys[0] }
        )
      }
      const first = startOffset === 'latest' ? offsets.lastStable : offsets.logStart
      const index: PartitionIndex = {
        format: FORMAT,
        formatVersion: FORMAT_VERSION,
        topic,
        partition,
        startOffset: first.toString(),
        nextOffset: first.toString(),
        segments: [],
        gaps: [],
        updatedAt: new Date().toISOString()
      }
      return { index, isNew: true }
    }
    // Only what an interrupted run or prune left is outside the index; a segment the index lost
    // an entry for may be the only copy of records the source no longer holds, so the run
    // refuses instead of going on.
    const problems = await unindexedSegmentProblems(storage, backupId, existing, {
      hasIndex: true,
      segments: segmentObjects
    })
    const lost = problems.find(problem => problem.severity === 'error')
    if (lost) {
      throw new BackupError(lost.code as ErrorCode, `${lost.message}; the backup was left as it is`, {
        topic,
        partition,
        key: lost.key
      })
    }
    // A segment an earlier owner wrote after another worker claimed the partition is never taken in.
    const unfinished = problems.find(
      problem =>
        problem.key !== undefined &&
        !isFencedLeftover(existing, problem.key) &&
        firstOffsetOf(problem.key) >= BigInt(existing.nextOffset)
    )
    const adopted = unfinished && (await this.#unrecordedSegment(existing, unfinished.key!))
    if (adopted) {
      existing.segments.push(adopted)
      existing.nextOffset = adopted.nextOffset
    }
    const checkpoint = BigInt(existing.nextOffset)
    if (checkpoint > offsets.highWatermark) {
      throw new BackupError(
        'KB_SOURCE_TRUNCATED',
        `${topic}/${partition} ends at offset ${offsets.highWatermark} on the source, below the backup's checkpoint ${checkpoint}: ` +
          'the log was truncated (e.g. an unclean leader election), so offsets from here on would not be the backed-up ones; ' +
          'back the topic up under a new backup_id',
        {
          topic,
          partition,
          offset: checkpoint.toString(),
          expected: `>= ${checkpoint}`,
          found: offsets.highWatermark.toString()
        }
      )
    }
    return { index: existing, isNew: false, adopted: adopted?.key }
  }

  /**
   * The entry of the segment an interrupted run finished writing but was killed before it
   * recorded in the index: the one segment past the checkpoint (audit.ts allows no more), whole
   * (stores show an object only once all of it is written), of this partition. Recording it is
   * the step that run did not get to; writing the partition again from the checkpoint would need
   * its key, and a backup never writes over an object.
   */
  async #unrecordedSegment(index: PartitionIndex, key: string): Promise<SegmentEntry> {
    const { storage, backupId } = this.#options
    const source = await openRangeSource(storage, key)
    const { header, footer } = await readSegmentIndex(source, key)
    if (header.topic !== index.topic || header.partition !== index.partition) {
      throw new BackupError(
        'KB_SEGMENT_CORRUPT',
        `segment ${key} holds ${header.topic}/${header.partition}, but is filed under ${index.topic}/${index.partition}; the backup was left as it is`,
        { key, topic: index.topic, partition: index.partition }
      )
    }
    return {
      key: key.slice(backupId.length + 1),
      firstOffset: footer.firstOffset.toString(),
      lastOffset: footer.lastOffset.toString(),
      nextOffset: footer.nextOffset.toString(),
      minTimestamp: footer.minTimestamp.toString(),
      maxTimestamp: footer.maxTimestamp.toString(),
      recordCount: footer.recordCount,
      batchCount: footer.batchCount,
      frameCount: footer.frames.length,
      sizeBytes: source.size,
      uncompressedBytes: footer.uncompressedBytes,
      codec: footer.codec,
      ...(header.encryption === undefined ? {} : { keyId: header.encryption.keyId }),
      createdAt: new Date(Number(header.createdAtMs)).toISOString()
    }
  }

  /**
   * Writes the index when it is new or took in a segment an interrupted run left. A new index is
   * written now, not with the first segment: an empty partition is then on record as covered up
   * to its end, so that a later run finding the log start moved records a gap.
   */
  async #openIndex({ index, isNew, adopted }: OpenedIndex): Promise<PartitionIndex> {
    const { storage, backupId } = this.#options
    if (isNew || adopted) {
      await writePartitionIndex(storage, backupId, index)
    }
    if (adopted) {
      this.#options.onWarning?.(
        `recorded segment ${backupId}/${adopted} in its partition index: an interrupted run wrote it and stopped before recording it`,
        { topic: index.topic, partition: index.partition, key: `${backupId}/${adopted}` }
      )
    }
    return index
  }
}

/** What a run read from the cluster before writing (BackupEngine.#capture). */
interface Captured {
  topics: Array<{ name: string; topicId: string; partitionCount: number }>
  clusterId: string | null
  existingManifest: Manifest | undefined
  partitions: Array<{ topic: string; partition: number }>
  configs: Map<string, Record<string, string>>
  logStart: Map<string, bigint>
  highWatermark: Map<string, bigint>
  lastStable: Map<string, bigint>
  groups: Awaited<ReturnType<typeof captureGroupOffsets>>
  clusterMetadata: Awaited<ReturnType<typeof captureClusterMetadata>> | undefined
  capturedAt: string
}

/** A worker's state across the generations of its group. */
interface WorkerState {
  workers: WorkersOptions
  captured: Captured
  /** The backup's partitions as work items (`topic/partition`), grown when a topic grows. */
  items: string[]
  /** One-shot: the partitions not yet seen complete in storage, with the offset they must reach. */
  pending: Map<string, bigint>
  budget: ByteBudget
  records: number
  bytes: number
  /** Every partition this worker claimed during the run. */
  partitions: Set<string>
  gaps: BackupSummary['gaps']
  deletedTopics: Set<string>
}

/**
 * Whether another member claimed the partition after this worker got its assignment, in a later
 * generation: then this worker's assignment is stale. Both conditions, because a group that
 * emptied and expired starts its generations again at 1 (older claims then carry higher ones),
 * while a claim made after our assignment can only come from a later generation.
 */
function claimedSince(index: PartitionIndex, assignment: Assignment, assignedAt: number): boolean {
  const owner = index.owner
  return (
    owner !== undefined &&
    owner.memberId !== assignment.memberId &&
    owner.generation > assignment.generation &&
    Date.parse(owner.claimedAt) > assignedAt
  )
}

const itemOf = (topic: string, partition: number) => `${topic}/${partition}`

/** Topic names cannot hold a `/` (Kafka allows a-z A-Z 0-9 . _ -). */
function parseItem(item: string): { topic: string; partition: number } {
  const slash = item.lastIndexOf('/')
  return { topic: item.slice(0, slash), partition: Number(item.slice(slash + 1)) }
}

/** Sets this worker's run entry in a manifest revision: replaced when present, added otherwise. */
function upsertRun(manifest: Manifest, run: RunEntry): void {
  const at = manifest.runs.findIndex(r => r.worker === run.worker && r.startedAt === run.startedAt)
  if (at >= 0) {
    manifest.runs[at] = { ...run }
  } else {
    manifest.runs.push({ ...run })
  }
}

interface SourceOffsets {
  logStart: bigint
  highWatermark: bigint
  lastStable: bigint
}

interface OpenedIndex {
  index: PartitionIndex
  isNew: boolean
  /** The key (in the backup) of a segment an interrupted run left, now in the index. */
  adopted?: string | undefined
}

/** The first offset a segment key names (`.../{20 digits}.seg`, or `-{owner epoch}.seg` from a worker). */
function firstOffsetOf(key: string): bigint {
  return parseSegmentKey(key)?.firstOffset ?? -1n
}

/**
 * Another cluster's topics of the same names are other topics (other ids, other offsets): a
 * backup continues only from the cluster it was taken from.
 */
function refuseOtherCluster(
  manifest: Manifest | undefined,
  clusterId: string | null,
  bootstrapServers: string[]
): void {
  const backedUp = manifest?.source.clusterId
  if (manifest && backedUp && clusterId && backedUp !== clusterId) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `source.bootstrap_servers (${bootstrapServers.join(',')}) reaches cluster ${clusterId}, but backup ${manifest.backupId} ` +
        `was taken from cluster ${backedUp}; its offsets do not continue there. Use a new backup_id for this cluster`,
      { path: 'source.bootstrap_servers', expected: backedUp, found: clusterId }
    )
  }
}

/**
 * Once a backup holds encrypted segments, a run without the keyring would add segments in the
 * clear beside them; the operator who enabled encryption meant all of it (docs/encryption.md).
 */
function refuseUnencryptedRun(manifest: Manifest | undefined, keys: KeyProvider | undefined): void {
  if (manifest?.encryption && !keys) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `backup ${manifest.backupId} is encrypted (key ids ${manifest.encryption.keyIds.join(', ')}); set backup.encryption to continue it, a run without it would store records unencrypted`,
      { path: 'backup.encryption', keyIds: manifest.encryption.keyIds }
    )
  }
}

/**
 * A topic deleted and recreated under the same name is another topic: its offsets start again
 * and its records are not the backed-up ones. Continuing would write the new records as if
 * they followed the old ones, so the run refuses before it writes anything (docs/source-changes.md).
 */
function refuseRecreatedTopics(
  manifest: Manifest | undefined,
  topics: Array<{ name: string; topicId: string }>,
  backupId: string
): void {
  const recreated = topics.flatMap(topic => {
    const known = manifest?.topics.find(t => t.name === topic.name)
    return known && known.topicId !== topic.topicId ? [{ ...topic, backedUpId: known.topicId }] : []
  })
  const [first] = recreated
  if (first) {
    throw new BackupError(
      'KB_TOPIC_RECREATED',
      `${recreated.map(t => `topic ${t.name} (id ${t.backedUpId} in backup ${backupId}, now ${t.topicId})`).join(', ')} ` +
        `was deleted and recreated since it was backed up; back the new topic up under a new backup_id, or leave it out ` +
        'with source.topics.exclude. The backup keeps the old topic as it was',
      {
        topic: first.name,
        topics: recreated.map(t => t.name),
        expected: first.backedUpId,
        found: first.topicId
      }
    )
  }
}
