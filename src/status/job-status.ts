/**
 * The progress of a backup and of its restores, running or finished, read from what they
 * checkpoint in storage only: the manifest's runs and each partition's index (backup), and each
 * restore's state (`restore/{revision}.json`). Nothing here talks to Kafka, so it works from any machine that can
 * read the storage, while the job runs elsewhere.
 *
 * What it shows is as fresh as the last checkpoint (`backup.checkpoint_interval_secs`,
 * `restore.checkpoint_interval_secs`); `updatedAt` says when that was.
 */
import { requireManifest } from '../catalog/inspect.ts'
import { type PartitionIndex, type RunEntry, readPartitionIndex } from '../catalog/manifest.ts'
import { listRestoreStates, type RestoreState, readRestoreState } from '../restore/state.ts'
import type { Storage } from '../storage/storage.ts'

export interface BackupPartitionStatus {
  topic: string
  partition: number
  /** First offset the backup covers. */
  startOffset: string
  /** Checkpoint: every offset below it is durable in storage (or a recorded gap). */
  checkpointOffset: string
  records: number
  /** Stored (compressed) bytes. */
  bytes: number
  segments: number
  updatedAt: string
}

export interface BackupStatus {
  backupId: string
  /** The newest run: `running` until it ends (or, if killed, until the next run marks it `interrupted`). */
  run: RunEntry | null
  /** With workers (backup.workers): the runs of the workers still running, one per worker. */
  workers: RunEntry[]
  partitions: BackupPartitionStatus[]
  records: number
  bytes: number
  /** The newest checkpoint of any partition. */
  updatedAt: string
}

export interface RestorePartitionStatus {
  sourceTopic: string
  sourcePartition: number
  targetTopic: string
  targetPartition: number
  /** Every backed-up record below this is restored (or outside the time window). */
  sourceNextOffset: string
  /** Where the backup of this partition ends (its checkpoint): the restore is through at this offset. */
  sourceEndOffset: string | null
  targetNextOffset: string
  records: number
  bytes: number
  done: boolean
  /** Share of the backed-up offset range restored, 0 to 100; null when the backup has no index for it. */
  percent: number | null
}

export interface RestoreStatus {
  restoreId: string
  status: RestoreState['status']
  startedAt: string
  updatedAt: string
  finishedAt: string | null
  error: string | null
  partitions: RestorePartitionStatus[]
  records: number
  bytes: number
}

export interface JobStatus {
  backup: BackupStatus
  restores: RestoreStatus[]
}

export interface StatusOptions {
  backupId: string
  storage: Storage
  /** Where restore state lives (`restore.state_storage`); default: `storage`. */
  stateStorage?: Storage
  /** Only this restore. */
  restoreId?: string
}

export async function readJobStatus(options: StatusOptions): Promise<JobStatus> {
  const manifest = await requireManifest(options.storage, options.backupId)
  const indexes = (
    await Promise.all(
      manifest.topics.flatMap(topic =>
        Array.from({ length: topic.partitionCount }, (_, partition) =>
          readPartitionIndex(options.storage, options.backupId, topic.name, partition)
        )
      )
    )
  ).filter((index): index is PartitionIndex => index !== undefined)
  const partitions = indexes.map(index => ({
    topic: index.topic,
    partition: index.partition,
    startOffset: index.startOffset,
    checkpointOffset: index.nextOffset,
    records: index.segments.reduce((sum, s) => sum + s.recordCount, 0),
    bytes: index.segments.reduce((sum, s) => sum + s.sizeBytes, 0),
    segments: index.segments.length,
    updatedAt: index.updatedAt
  }))
  const backup: BackupStatus = {
    backupId: options.backupId,
    run: manifest.runs.at(-1) ?? null,
    workers: manifest.runs.filter(r => r.worker !== undefined && r.status === 'running'),
    partitions,
    records: partitions.reduce((sum, p) => sum + p.records, 0),
    bytes: partitions.reduce((sum, p) => sum + p.bytes, 0),
    updatedAt: [manifest.updatedAt, ...partitions.map(p => p.updatedAt)].sort().at(-1) ?? manifest.updatedAt
  }
  const stateStorage = options.stateStorage ?? options.storage
  const states =
    options.restoreId === undefined
      ? await listRestoreStates(stateStorage, options.backupId)
      : [await readRestoreState(stateStorage, options.backupId, options.restoreId)].filter(
          (state): state is RestoreState => state !== undefined
        )
  const byPartition = new Map(indexes.map(index => [`${index.topic}/${index.partition}`, index]))
  const restores = states
    .map(state => restoreStatus(state, byPartition))
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
  return { backup, restores }
}

function restoreStatus(state: RestoreState, indexes: Map<string, PartitionIndex>): RestoreStatus {
  const partitions = state.partitions.map(p => {
    const index = indexes.get(`${p.sourceTopic}/${p.sourcePartition}`)
    return {
      sourceTopic: p.sourceTopic,
      sourcePartition: p.sourcePartition,
      targetTopic: p.targetTopic,
      targetPartition: p.targetPartition,
      sourceNextOffset: p.sourceNextOffset,
      sourceEndOffset: index?.nextOffset ?? null,
      targetNextOffset: p.targetNextOffset,
      records: p.records,
      bytes: p.bytes,
      done: p.done,
      percent: p.done ? 100 : index === undefined ? null : percentOf(index, BigInt(p.sourceNextOffset))
    }
  })
  return {
    restoreId: state.restoreId,
    status: state.status,
    startedAt: state.startedAt,
    updatedAt: state.updatedAt,
    finishedAt: state.finishedAt ?? null,
    error: state.error ?? null,
    partitions,
    records: partitions.reduce((sum, p) => sum + p.records, 0),
    bytes: partitions.reduce((sum, p) => sum + p.bytes, 0)
  }
}

/** How far `position` is through the backed-up offsets of `index`, rounded down to a tenth. */
function percentOf(index: PartitionIndex, position: bigint): number {
  const start = BigInt(index.startOffset)
  const end = BigInt(index.nextOffset)
  if (end <= start || position >= end) return 100
  if (position <= start) return 0
  return Number(((position - start) * 1000n) / (end - start)) / 10
}

/** True while the backup's newest run or any restore shown is still running. */
export function isRunning(status: JobStatus): boolean {
  return (
    status.backup.run?.status === 'running' ||
    status.backup.workers.length > 0 ||
    status.restores.some(r => r.status === 'running')
  )
}

/** True when the newest backup run or a restore shown ended without completing its work. */
export function hasFailed(status: JobStatus): boolean {
  const ended = ['failed', 'interrupted']
  return ended.includes(status.backup.run?.status ?? '') || status.restores.some(r => r.status === 'failed')
}
