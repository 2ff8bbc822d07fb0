/**
 * The backup layout of DESIGN.md section 2 and its JSON documents. Offsets and timestamps are
 * Kafka int64s and are stored as decimal strings so that no JSON reader rounds them.
 *
 *   {backup_id}/manifest.json
 *   {backup_id}/topics/{topic}/{partition}/index.json
 *   {backup_id}/topics/{topic}/{partition}/{first offset, 20 digits}.seg
 */
import { BackupError } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'

export const FORMAT = 'kafka-backup'
export const FORMAT_VERSION = 1

export interface SegmentEntry {
  /** Storage key relative to the backup's folder. */
  key: string
  firstOffset: string
  lastOffset: string
  /** Where the next segment continues: the last batch's lastOffset + 1. */
  nextOffset: string
  minTimestamp: string
  maxTimestamp: string
  recordCount: number
  batchCount: number
  frameCount: number
  sizeBytes: number
  uncompressedBytes: number
  codec: string
  createdAt: string
}

/** Offsets that existed in the topic but are not in the backup, with the reason. */
export interface OffsetGap {
  fromOffset: string
  /** Exclusive. */
  toOffset: string
  reason: 'log-start-moved'
  detectedAt: string
}

export interface PartitionIndex {
  format: typeof FORMAT
  formatVersion: number
  topic: string
  partition: number
  /** The first offset this backup covers (the log start or `latest` at the first run). */
  startOffset: string
  /** Checkpoint: every offset below this is in a durable segment, a gap, or was not data. */
  nextOffset: string
  segments: SegmentEntry[]
  gaps: OffsetGap[]
  updatedAt: string
}

export interface TopicEntry {
  name: string
  topicId: string
  partitionCount: number
  /** Topic-level config overrides (cleanup.policy, retention.ms, ...), re-applied by restore. */
  configs: Record<string, string>
  /** Set when the topic disappeared from the source cluster during a run. */
  deletedDuringBackup?: boolean
}

export interface ConsumerGroupEntry {
  groupId: string
  state: string
  capturedAt: string
  offsets: Array<{ topic: string; partition: number; offset: string; leaderEpoch: number; metadata: string | null }>
}

export interface RunEntry {
  startedAt: string
  finishedAt?: string
  /** `interrupted`: the process ended without finishing the run (killed); set by the next run. */
  status: 'running' | 'complete' | 'stopped' | 'failed' | 'interrupted'
  records: number
  bytes: number
  error?: string
}

export interface Manifest {
  format: typeof FORMAT
  formatVersion: number
  toolVersion: string
  backupId: string
  createdAt: string
  updatedAt: string
  source: { clusterId: string | null; bootstrapServers: string[] }
  compression: { codec: string; level: number }
  topics: TopicEntry[]
  consumerGroups: ConsumerGroupEntry[]
  runs: RunEntry[]
}

export const manifestKey = (backupId: string) => `${backupId}/manifest.json`
export const partitionDir = (backupId: string, topic: string, partition: number) =>
  `${backupId}/topics/${topic}/${partition}`
export const indexKey = (backupId: string, topic: string, partition: number) =>
  `${partitionDir(backupId, topic, partition)}/index.json`
export const segmentKey = (backupId: string, topic: string, partition: number, firstOffset: bigint) =>
  `${partitionDir(backupId, topic, partition)}/${firstOffset.toString().padStart(20, '0')}.seg`

async function readJson<T>(storage: Storage, key: string, kind: string): Promise<T | undefined> {
  if ((await storage.head(key)) === undefined) {
    return undefined
  }
  const bytes = await storage.get(key)
  let document: { format?: unknown; formatVersion?: unknown }
  try {
    document = JSON.parse(bytes.toString('utf8'))
  } catch (error) {
    throw new BackupError('KB_BACKUP_CORRUPT', `${kind} ${storage.location}/${key} is not valid JSON`, {
      cause: error,
      key
    })
  }
  if (document.format !== FORMAT || typeof document.formatVersion !== 'number') {
    throw new BackupError('KB_BACKUP_CORRUPT', `${kind} ${storage.location}/${key} is not a kafka-backup document`, {
      key
    })
  }
  if (document.formatVersion > FORMAT_VERSION) {
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `${kind} ${storage.location}/${key} has format version ${document.formatVersion}; this kafka-backup reads up to ${FORMAT_VERSION}`,
      { key, expected: FORMAT_VERSION, found: document.formatVersion }
    )
  }
  return document as T
}

export function readManifest(storage: Storage, backupId: string): Promise<Manifest | undefined> {
  return readJson<Manifest>(storage, manifestKey(backupId), 'manifest')
}

export function readPartitionIndex(
  storage: Storage,
  backupId: string,
  topic: string,
  partition: number
): Promise<PartitionIndex | undefined> {
  return readJson<PartitionIndex>(storage, indexKey(backupId, topic, partition), 'partition index')
}

export async function writeManifest(storage: Storage, manifest: Manifest): Promise<void> {
  manifest.updatedAt = new Date().toISOString()
  await storage.replace(manifestKey(manifest.backupId), Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`))
}

export async function writePartitionIndex(storage: Storage, backupId: string, index: PartitionIndex): Promise<void> {
  index.updatedAt = new Date().toISOString()
  await storage.replace(
    indexKey(backupId, index.topic, index.partition),
    Buffer.from(`${JSON.stringify(index, null, 2)}\n`)
  )
}
