/**
 * Looking at backups without Kafka: list them, describe one, validate one. Validation checks
 * that storage holds what the manifest and the partition indexes say (audit.ts), that the
 * segments agree with their entries (sizes, header, footer), reports offset gaps, and with
 * `deep` reads every frame, verifying every frame checksum and every batch CRC
 * (docs/catalog.md).
 */
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError, isBackupError } from '../errors.ts'
import { validateSegment } from '../segment/reader.ts'
import type { Storage } from '../storage/storage.ts'
import {
  type CatalogProblem,
  layoutProblems,
  openIndexedSegment,
  type StoredPartition,
  type StoredPartitions,
  scanStoredPartitions,
  unindexedSegmentProblems
} from './audit.ts'
import { readClusterMetadata } from './cluster-metadata.ts'
import {
  type Manifest,
  type PartitionIndex,
  readManifest,
  readPartitionIndex,
  type SegmentEntry,
  type TopicEntry
} from './manifest.ts'

/** A backup whose manifest could be read, or one flagged with the problem that stopped it. */
export type BackupListing =
  | { backupId: string; createdAt: string; updatedAt: string; topics: number; lastRun: string | null }
  | { backupId: string; error: { code: string; message: string } }

/**
 * Every backup under the location. A backup whose manifest is unreadable, or a folder holding
 * topics/ without a manifest, is listed with its error instead of failing the whole listing.
 */
export async function listBackups(storage: Storage): Promise<BackupListing[]> {
  const withManifest = new Set<string>()
  const withData = new Set<string>()
  for (const object of await storage.list('')) {
    const match = /^([^/]+)\/(manifest\.json$|manifest\/\d{12}\.json$|topics\/)/.exec(object.key)
    if (match) {
      ;(match[2] === 'topics/' ? withData : withManifest).add(match[1]!)
    }
  }
  const listings: BackupListing[] = []
  for (const backupId of [...new Set([...withManifest, ...withData])].sort()) {
    if (!withManifest.has(backupId)) {
      listings.push({
        backupId,
        error: {
          code: 'KB_BACKUP_CORRUPT',
          message: `${storage.location}/${backupId} holds topics/ but no manifest: the manifest is lost`
        }
      })
      continue
    }
    try {
      const manifest = await requireManifest(storage, backupId)
      listings.push({
        backupId,
        createdAt: manifest.createdAt,
        updatedAt: manifest.updatedAt,
        topics: manifest.topics.length,
        lastRun: manifest.runs.at(-1)?.status ?? null
      })
    } catch (error) {
      if (!isBackupError(error)) {
        throw error
      }
      listings.push({ backupId, error: { code: error.code, message: error.message } })
    }
  }
  return listings
}

export async function requireManifest(storage: Storage, backupId: string): Promise<Manifest> {
  const manifest = await readManifest(storage, backupId)
  if (!manifest) {
    throw new BackupError('KB_BACKUP_NOT_FOUND', `no backup ${backupId} at ${storage.location}`, {
      backupId,
      location: storage.location
    })
  }
  return manifest
}

export interface PartitionDescription {
  topic: string
  partition: number
  startOffset: string
  nextOffset: string
  segments: number
  records: number
  bytes: number
  storedBytes: number
  minTimestamp: string | null
  maxTimestamp: string | null
  gaps: PartitionIndex['gaps']
}

export interface BackupDescription {
  backupId: string
  location: string
  createdAt: string
  updatedAt: string
  source: Manifest['source']
  compression: Manifest['compression']
  /** The key ids that encrypted its segments (docs/encryption.md); null when none is encrypted. */
  encryption: { keyIds: string[] } | null
  records: number
  bytes: number
  storedBytes: number
  compressionRatio: number | null
  topics: Array<{
    name: string
    partitionCount: number
    configs: Record<string, string>
    deletedDuringBackup: boolean
    partitions: PartitionDescription[]
  }>
  consumerGroups: Manifest['consumerGroups']
  runs: Manifest['runs']
}

function extreme(values: bigint[], pick: (a: bigint, b: bigint) => boolean): string | null {
  const known = values.filter(v => v >= 0n)
  return known.length === 0 ? null : known.reduce((a, b) => (pick(a, b) ? a : b)).toString()
}

export async function describeBackup(storage: Storage, backupId: string): Promise<BackupDescription> {
  const manifest = await requireManifest(storage, backupId)
  const stored = await scanStoredPartitions(storage, backupId)
  const topics = []
  for (const topic of manifest.topics) {
    const partitions: PartitionDescription[] = []
    for (const partition of indexedPartitions(stored, topic)) {
      const index = await readPartitionIndex(storage, backupId, topic.name, partition)
      if (!index) {
        continue
      }
      const sum = (field: 'recordCount' | 'uncompressedBytes' | 'sizeBytes') =>
        index.segments.reduce((total, s) => total + s[field], 0)
      partitions.push({
        topic: topic.name,
        partition,
        startOffset: index.startOffset,
        nextOffset: index.nextOffset,
        segments: index.segments.length,
        records: sum('recordCount'),
        bytes: sum('uncompressedBytes'),
        storedBytes: sum('sizeBytes'),
        minTimestamp: extreme(
          index.segments.map(s => BigInt(s.minTimestamp)),
          (a, b) => a < b
        ),
        maxTimestamp: extreme(
          index.segments.map(s => BigInt(s.maxTimestamp)),
          (a, b) => a > b
        ),
        gaps: index.gaps
      })
    }
    topics.push({
      name: topic.name,
      partitionCount: topic.partitionCount,
      configs: topic.configs,
      deletedDuringBackup: topic.deletedDuringBackup ?? false,
      partitions
    })
  }
  const all = topics.flatMap(t => t.partitions)
  const bytes = all.reduce((sum, p) => sum + p.bytes, 0)
  const storedBytes = all.reduce((sum, p) => sum + p.storedBytes, 0)
  return {
    backupId,
    location: `${storage.location}/${backupId}`,
    createdAt: manifest.createdAt,
    updatedAt: manifest.updatedAt,
    source: manifest.source,
    compression: manifest.compression,
    encryption: manifest.encryption ?? null,
    records: all.reduce((sum, p) => sum + p.records, 0),
    bytes,
    storedBytes,
    compressionRatio: storedBytes > 0 ? bytes / storedBytes : null,
    topics,
    consumerGroups: manifest.consumerGroups,
    runs: manifest.runs
  }
}

export type ValidationProblem = CatalogProblem

export interface ValidationReport {
  backupId: string
  deep: boolean
  valid: boolean
  partitions: number
  segments: number
  frames: number
  records: number
  problems: ValidationProblem[]
}

/**
 * Checks everything the catalogue says against what storage holds: the layout (every listed
 * partition has an index, nothing unlisted is stored), each index (schema, order of its
 * entries, segments outside it), each segment against its entry (size, header, footer), and
 * with `deep` every frame checksum and every batch CRC.
 */
export async function validateBackup(
  storage: Storage,
  backupId: string,
  options: {
    deep?: boolean
    /** Needed with `deep` when the backup is encrypted: every frame's tag is checked. */
    keys?: KeyProvider
    signal?: AbortSignal
    onSegment?: (checked: number, total: number) => void
  } = {}
): Promise<ValidationReport> {
  const manifest = await requireManifest(storage, backupId)
  if (options.deep && !options.keys && manifest.encryption) {
    throw new BackupError(
      'KB_KEY_NOT_FOUND',
      `backup ${backupId} is encrypted (key ids ${manifest.encryption.keyIds.join(', ')}): deep validation decrypts every frame and needs the keyring (--keyring-file, --keyring-env, or a --config with an encryption block); without --deep every checksum is still checked`,
      { backupId, keyIds: manifest.encryption.keyIds }
    )
  }
  const stored = await scanStoredPartitions(storage, backupId)
  const problems: ValidationProblem[] = layoutProblems(backupId, manifest, stored)
  await readClusterMetadata(storage, backupId).catch(error => {
    if (!isBackupError(error)) {
      throw error
    }
    problems.push({ severity: 'error', code: error.code, message: error.message, key: error.key as string })
  })
  const report = { backupId, deep: options.deep ?? false, partitions: 0, segments: 0, frames: 0, records: 0 }
  const total = manifest.topics
    .flatMap(topic => indexedPartitions(stored, topic).map(p => stored.get(topic.name)!.get(p)!.segments.length))
    .reduce((sum, count) => sum + count, 0)
  let checked = 0
  for (const topic of manifest.topics) {
    for (const partition of indexedPartitions(stored, topic)) {
      const where = { topic: topic.name, partition }
      const found = stored.get(topic.name)!.get(partition)!
      let index: PartitionIndex
      try {
        index = (await readPartitionIndex(storage, backupId, topic.name, partition))!
      } catch (error) {
        if (!isBackupError(error)) {
          throw error
        }
        problems.push({
          severity: 'error',
          code: error.code,
          message: error.message,
          ...where,
          key: error.key as string
        })
        continue
      }
      report.partitions++
      for (const gap of index.gaps) {
        problems.push({
          severity: 'warning',
          code: 'KB_OFFSET_GAP',
          message: `${topic.name}/${partition}: offsets ${gap.fromOffset}..${BigInt(gap.toOffset) - 1n} are missing (${gap.reason}, detected ${gap.detectedAt})`,
          ...where
        })
      }
      problems.push(...(await unindexedSegmentProblems(storage, backupId, index, found)))
      const sizes = new Map(found.segments.map(s => [s.key, s.size]))
      for (const segment of index.segments) {
        report.segments++
        report.records += segment.recordCount
        const size = sizes.get(`${backupId}/${segment.key}`)
        if (size !== undefined) {
          const result = await checkSegment(storage, backupId, where, segment, size, options)
          if (typeof result === 'number') {
            report.frames += result
          } else {
            problems.push({ ...result, ...where, key: `${backupId}/${segment.key}` })
          }
        }
        options.onSegment?.(++checked, total)
      }
    }
  }
  return { ...report, valid: !problems.some(p => p.severity === 'error'), problems }
}

/** Partitions of a manifest topic that have an index in storage, in order. */
function indexedPartitions(stored: StoredPartitions, topic: TopicEntry): number[] {
  return [...(stored.get(topic.name) ?? new Map<number, StoredPartition>())]
    .filter(([partition, found]) => found.hasIndex && partition < topic.partitionCount)
    .map(([partition]) => partition)
    .sort((a, b) => a - b)
}

/** The number of frames checked, or the problem found. */
async function checkSegment(
  storage: Storage,
  backupId: string,
  where: { topic: string; partition: number },
  segment: SegmentEntry,
  size: number,
  options: { deep?: boolean; keys?: KeyProvider; signal?: AbortSignal }
): Promise<number | Omit<ValidationProblem, 'topic' | 'partition'>> {
  const key = `${backupId}/${segment.key}`
  if (size !== segment.sizeBytes) {
    return {
      severity: 'error',
      code: 'KB_SEGMENT_CORRUPT',
      message: `segment ${key} has ${size} bytes, its index entry says ${segment.sizeBytes}`
    }
  }
  try {
    const { source, index } = await openIndexedSegment(storage, backupId, where.topic, where.partition, segment)
    if (!options.deep) {
      return index.footer.frames.length
    }
    const { frameCount, recordCount } = await validateSegment(source, key, {
      deep: true,
      keys: options.keys,
      signal: options.signal
    })
    if (recordCount !== segment.recordCount) {
      return {
        severity: 'error',
        code: 'KB_SEGMENT_CORRUPT',
        message: `segment ${key}: its batches hold ${recordCount} records, its index entry says ${segment.recordCount}`
      }
    }
    return frameCount
  } catch (error) {
    if (isBackupError(error)) {
      return { severity: 'error', code: error.code, message: error.message }
    }
    throw error
  }
}
