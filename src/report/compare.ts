/**
 * The verification report (docs/verification-report.md): a backup compared with the cluster it
 * was taken from, or a restore compared with the backup it came from, partition by partition.
 * Both sides of a partition are read record by record and summed up the same way (digest.ts);
 * the report says, per partition and overall, whether they agree.
 */

import { iterateRecords, recordOffset, recordTimestamp } from '../batch/records.ts'
import { splitRecordSet } from '../batch/split.ts'
import { readCommittedBatches } from '../batch/transactions.ts'
import { requireManifest } from '../catalog/inspect.ts'
import { type PartitionIndex, readPartitionIndex } from '../catalog/manifest.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { listOffsets, partitionKey } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { IsolationLevel, rawFetch } from '../kafka/raw-fetch.ts'
import { readPartitionBatches } from '../restore/source.ts'
import { listRestoreStates } from '../restore/state.ts'
import { inWindow, type TimeWindow } from '../restore/window.ts'
import type { Storage } from '../storage/storage.ts'
import { toolVersion } from '../version.ts'
import { RecordDigest, type RecordSummary, summaryDifferences } from './digest.ts'

export const REPORT_FORMAT = 'kafka-backup-report'
export const REPORT_VERSION = 1

/** What of the backup a partition's comparison covers: offsets [fromOffset, toOffset), in the window. */
export interface BackupRange {
  topic: string
  partition: number
  fromOffset: string
  toOffset: string
  window: { start: string | null; end: string | null }
}

export interface PartitionComparison {
  source: BackupRange
  /** Where the other side was read: the cluster's partition, or the restore target's. */
  other: { topic: string; partition: number; fromOffset: string; toOffset: string }
  backup: RecordSummary
  cluster: RecordSummary
  /** Fields that differ; empty when the partition matches. */
  differences: string[]
}

export interface VerificationReport {
  format: typeof REPORT_FORMAT
  formatVersion: number
  toolVersion: string
  kind: 'backup' | 'restore'
  createdAt: string
  backupId: string
  location: string
  cluster: { clusterId: string | null; bootstrapServers: string[] }
  /** kind backup: the backup's runs (what was backed up, when). kind restore: the restore's id and times. */
  backup: { createdAt: string; runs: Array<{ startedAt: string; finishedAt: string | null; status: string }> }
  restore: { restoreId: string; status: string; startedAt: string; finishedAt: string | null } | null
  partitions: PartitionComparison[]
  /** Offsets compared as well (kind backup); a restore writes at other offsets. */
  comparesOffsets: boolean
  result: 'match' | 'mismatch'
}

const toWindow = (window: BackupRange['window']): TimeWindow => ({
  ...(window.start === null ? {} : { start: BigInt(window.start) }),
  ...(window.end === null ? {} : { end: BigInt(window.end) })
})

/**
 * The backed-up records of a range, as a consumer of the source saw them: control batches are
 * not records, offsets in a gap were deleted on the source (the backup may hold them inside a
 * batch it kept whole), and the window selects by record timestamp as a restore does.
 */
export async function summarizeBackup(
  storage: Storage,
  backupId: string,
  range: BackupRange,
  keys?: KeyProvider
): Promise<RecordSummary> {
  const index = await readPartitionIndex(storage, backupId, range.topic, range.partition)
  if (!index) {
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `backup ${backupId} has no index for ${range.topic}/${range.partition}, which the report names`,
      {
        topic: range.topic,
        partition: range.partition
      }
    )
  }
  return summarizeIndex(storage, backupId, index, range, keys)
}

async function summarizeIndex(
  storage: Storage,
  backupId: string,
  index: PartitionIndex,
  range: BackupRange,
  keys: KeyProvider | undefined
): Promise<RecordSummary> {
  const from = BigInt(range.fromOffset)
  const to = BigInt(range.toOffset)
  const window = toWindow(range.window)
  const gaps = index.gaps.map(g => [BigInt(g.fromOffset), BigInt(g.toOffset)] as const)
  const digest = new RecordDigest()
  for await (const batch of readPartitionBatches(storage, backupId, index, { fromOffset: from, keys })) {
    if (batch.isControl || batch.baseOffset >= to) {
      continue
    }
    for (const record of iterateRecords(batch)) {
      const offset = recordOffset(batch, record)
      const timestamp = recordTimestamp(batch, record)
      if (
        offset < from ||
        offset >= to ||
        gaps.some(([gapFrom, gapTo]) => offset >= gapFrom && offset < gapTo) ||
        !inWindow(window, timestamp)
      ) {
        continue
      }
      digest.add(offset, timestamp, record.key, record.value, record.headers)
    }
  }
  return digest.summary()
}

/** The committed records of a cluster partition in [from, to), read as a READ_COMMITTED consumer. */
export async function summarizeCluster(
  cluster: KafkaCluster,
  topic: string,
  partition: number,
  from: bigint,
  to: bigint
): Promise<RecordSummary> {
  const digest = new RecordDigest()
  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)
  const leader = topicMetadata?.partitions[partition]?.leader
  if (!topicMetadata || leader === undefined || leader < 0) {
    throw new BackupError('KB_TOPIC_NOT_FOUND', `${topic}/${partition} is not on the cluster (or has no leader)`, {
      topic,
      partition
    })
  }
  const connection = await cluster.connection(metadata, leader)
  let offset = from
  while (offset < to) {
    const response = await rawFetch(connection, {
      maxWaitMs: 100,
      minBytes: 1,
      maxBytes: 8 * 1024 * 1024,
      isolationLevel: IsolationLevel.READ_COMMITTED,
      topics: [
        {
          topicId: topicMetadata.id,
          partitions: [{ partition, fetchOffset: offset, currentLeaderEpoch: -1, partitionMaxBytes: 8 * 1024 * 1024 }]
        }
      ]
    })
    const fetched = response.topics[0]!.partitions[0]!
    if (fetched.errorCode !== 0) {
      throw new BackupError(
        'KB_KAFKA',
        `fetch of ${topic}/${partition} at offset ${offset} failed with error code ${fetched.errorCode}`,
        {
          topic,
          partition,
          offset: offset.toString()
        }
      )
    }
    const { batches } = splitRecordSet(fetched.records ?? Buffer.alloc(0))
    for (const batch of readCommittedBatches(batches, fetched.abortedTransactions, offset)) {
      for (const record of iterateRecords(batch)) {
        const recordAt = recordOffset(batch, record)
        if (recordAt >= offset && recordAt < to) {
          digest.add(recordAt, recordTimestamp(batch, record), record.key, record.value, record.headers)
        }
      }
    }
    const last = batches.at(-1)
    if (!last) {
      break
    }
    offset = last.nextOffset
  }
  return digest.summary()
}

function finish(
  report: Omit<VerificationReport, 'result' | 'partitions'>,
  partitions: PartitionComparison[]
): VerificationReport {
  return { ...report, partitions, result: partitions.every(p => p.differences.length === 0) ? 'match' : 'mismatch' }
}

/**
 * A backup against the cluster it was taken from: per backed-up partition, the offsets both
 * still hold (from the later of the backup's start and the log start, to the earlier of the
 * checkpoint and the last stable offset).
 */
export async function reportBackup(
  storage: Storage,
  backupId: string,
  cluster: KafkaCluster,
  bootstrapServers: string[],
  keys?: KeyProvider
): Promise<VerificationReport> {
  const manifest = await requireManifest(storage, backupId)
  const indexes: PartitionIndex[] = []
  for (const topic of manifest.topics) {
    for (let partition = 0; partition < topic.partitionCount; partition++) {
      const index = await readPartitionIndex(storage, backupId, topic.name, partition)
      if (index) {
        indexes.push(index)
      }
    }
  }
  const wanted = indexes.map(i => ({ topic: i.topic, partition: i.partition }))
  const [logStart, lastStable, metadata] = await Promise.all([
    listOffsets(cluster, wanted, 'earliest'),
    listOffsets(cluster, wanted, 'lastStable'),
    cluster.metadata([])
  ])
  const partitions: PartitionComparison[] = []
  for (const index of indexes) {
    const key = partitionKey(index.topic, index.partition)
    const start = BigInt(index.startOffset)
    const clusterStart = logStart.get(key) ?? 0n
    const from = start > clusterStart ? start : clusterStart
    const checkpoint = BigInt(index.nextOffset)
    const clusterEnd = lastStable.get(key) ?? 0n
    const to = checkpoint < clusterEnd ? checkpoint : clusterEnd
    const range: BackupRange = {
      topic: index.topic,
      partition: index.partition,
      fromOffset: from.toString(),
      toOffset: (to > from ? to : from).toString(),
      window: { start: null, end: null }
    }
    const backup = await summarizeIndex(storage, backupId, index, range, keys)
    const other = await summarizeCluster(cluster, index.topic, index.partition, from, BigInt(range.toOffset))
    partitions.push({
      source: range,
      other: { topic: index.topic, partition: index.partition, fromOffset: range.fromOffset, toOffset: range.toOffset },
      backup,
      cluster: other,
      differences: summaryDifferences(backup, other, true)
    })
  }
  return finish(
    {
      format: REPORT_FORMAT,
      formatVersion: REPORT_VERSION,
      toolVersion,
      kind: 'backup',
      createdAt: new Date().toISOString(),
      backupId,
      location: `${storage.location}/${backupId}`,
      cluster: { clusterId: metadata.id, bootstrapServers },
      backup: { createdAt: manifest.createdAt, runs: runsOf(manifest.runs) },
      restore: null,
      comparesOffsets: true
    },
    partitions
  )
}

function runsOf(runs: Array<{ startedAt: string; finishedAt?: string; status: string }>) {
  return runs.map(r => ({ startedAt: r.startedAt, finishedAt: r.finishedAt ?? null, status: r.status }))
}

/**
 * A restore against the backup it came from: per restored partition, the backed-up records the
 * restore was to write (its window, up to where its state says it got) against what the target
 * partition holds between the restore's first and last written offset.
 */
export async function reportRestore(
  storage: Storage,
  stateStorage: Storage,
  backupId: string,
  restoreId: string | undefined,
  cluster: KafkaCluster,
  bootstrapServers: string[],
  keys?: KeyProvider
): Promise<VerificationReport> {
  const manifest = await requireManifest(storage, backupId)
  const states = (await listRestoreStates(stateStorage, backupId)).filter(
    s => restoreId === undefined || s.restoreId === restoreId
  )
  const state = states.sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : -1))[0]
  if (!state) {
    throw new BackupError(
      'KB_BACKUP_NOT_FOUND',
      `backup ${backupId} has ${restoreId ? `no restore ${restoreId}` : 'not been restored'} (no restore state in ${stateStorage.location})`,
      { backupId, restoreId }
    )
  }
  const metadata = await cluster.metadata([])
  const partitions: PartitionComparison[] = []
  for (const p of state.partitions) {
    const index = await readPartitionIndex(storage, backupId, p.sourceTopic, p.sourcePartition)
    if (!index) {
      throw new BackupError(
        'KB_BACKUP_CORRUPT',
        `restore ${state.restoreId} wrote ${p.sourceTopic}/${p.sourcePartition}, which backup ${backupId} has no index for`,
        { topic: p.sourceTopic, partition: p.sourcePartition }
      )
    }
    // A restore that never started a partition has the sentinel -1: nothing of it was restored.
    const restoredTo = p.done ? index.nextOffset : p.sourceNextOffset === '-1' ? index.startOffset : p.sourceNextOffset
    const range: BackupRange = {
      topic: p.sourceTopic,
      partition: p.sourcePartition,
      fromOffset: index.startOffset,
      toOffset: restoredTo,
      window: state.window
    }
    const backup = await summarizeIndex(storage, backupId, index, range, keys)
    const other = await summarizeCluster(
      cluster,
      p.targetTopic,
      p.targetPartition,
      BigInt(p.targetStartOffset),
      BigInt(p.targetNextOffset)
    )
    partitions.push({
      source: range,
      other: {
        topic: p.targetTopic,
        partition: p.targetPartition,
        fromOffset: p.targetStartOffset,
        toOffset: p.targetNextOffset
      },
      backup,
      cluster: other,
      differences: summaryDifferences(backup, other, false)
    })
  }
  return finish(
    {
      format: REPORT_FORMAT,
      formatVersion: REPORT_VERSION,
      toolVersion,
      kind: 'restore',
      createdAt: new Date().toISOString(),
      backupId,
      location: `${storage.location}/${backupId}`,
      cluster: { clusterId: metadata.id, bootstrapServers },
      backup: { createdAt: manifest.createdAt, runs: runsOf(manifest.runs) },
      restore: {
        restoreId: state.restoreId,
        status: state.status,
        startedAt: state.startedAt,
        finishedAt: state.finishedAt ?? null
      },
      comparesOffsets: false
    },
    partitions
  )
}
