/**
 * Looking at backups without Kafka: list them, describe one, validate one. Validation checks
 * that the manifest, the partition indexes and the segments agree (sizes, offsets, counts,
 * footers), reports offset gaps, and with `deep` reads every frame, verifying every frame
 * checksum and every batch CRC.
 */
import { BackupError, isBackupError } from '../errors.ts'
import { readSegmentIndex, validateSegment } from '../segment/reader.ts'
import { openRangeSource } from '../storage/range-source.ts'
import type { Storage } from '../storage/storage.ts'
import {
  type Manifest,
  type PartitionIndex,
  partitionDir,
  readManifest,
  readPartitionIndex,
  type SegmentEntry
} from './manifest.ts'

export interface BackupListing {
  backupId: string
  createdAt: string
  updatedAt: string
  topics: number
  lastRun: string | null
}

export async function listBackups(storage: Storage): Promise<BackupListing[]> {
  const ids = (await storage.list(''))
    .map(object => /^([^/]+)\/manifest\.json$/.exec(object.key)?.[1])
    .filter(id => id !== undefined)
  const listings: BackupListing[] = []
  for (const backupId of ids) {
    const manifest = await readManifest(storage, backupId)
    if (manifest) {
      listings.push({
        backupId,
        createdAt: manifest.createdAt,
        updatedAt: manifest.updatedAt,
        topics: manifest.topics.length,
        lastRun: manifest.runs.at(-1)?.status ?? null
      })
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
  const topics = []
  for (const topic of manifest.topics) {
    const partitions: PartitionDescription[] = []
    for (let partition = 0; partition < topic.partitionCount; partition++) {
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
    records: all.reduce((sum, p) => sum + p.records, 0),
    bytes,
    storedBytes,
    compressionRatio: storedBytes > 0 ? bytes / storedBytes : null,
    topics,
    consumerGroups: manifest.consumerGroups,
    runs: manifest.runs
  }
}

export interface ValidationProblem {
  severity: 'error' | 'warning'
  code: string
  message: string
  topic?: string
  partition?: number
  key?: string
}

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

export async function validateBackup(
  storage: Storage,
  backupId: string,
  options: { deep?: boolean; signal?: AbortSignal; onSegment?: () => void } = {}
): Promise<ValidationReport> {
  const manifest = await requireManifest(storage, backupId)
  const problems: ValidationProblem[] = []
  const report = { backupId, deep: options.deep ?? false, partitions: 0, segments: 0, frames: 0, records: 0 }
  for (const topic of manifest.topics) {
    for (let partition = 0; partition < topic.partitionCount; partition++) {
      const where = { topic: topic.name, partition }
      let index: PartitionIndex | undefined
      try {
        index = await readPartitionIndex(storage, backupId, topic.name, partition)
      } catch (error) {
        problems.push({
          severity: 'error',
          code: (error as BackupError).code ?? 'KB_BACKUP_CORRUPT',
          message: (error as Error).message,
          ...where
        })
        continue
      }
      if (!index) {
        problems.push({
          severity: 'warning',
          code: 'KB_BACKUP_CORRUPT',
          message: `${topic.name}/${partition} has no index: nothing of it was backed up`,
          ...where
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
      let previous: SegmentEntry | undefined
      for (const segment of index.segments) {
        if (previous && BigInt(segment.firstOffset) < BigInt(previous.nextOffset)) {
          problems.push({
            severity: 'error',
            code: 'KB_BACKUP_CORRUPT',
            message: `${segment.key} starts at offset ${segment.firstOffset}, inside the previous segment (which ends before ${previous.nextOffset})`,
            ...where,
            key: segment.key
          })
        }
        previous = segment
        report.segments++
        report.records += segment.recordCount
        const problem = await checkSegment(storage, backupId, segment, options)
        options.onSegment?.()
        if (typeof problem === 'number') {
          report.frames += problem
        } else {
          problems.push({ ...problem, ...where, key: segment.key })
        }
      }
      if (previous && BigInt(previous.nextOffset) > BigInt(index.nextOffset)) {
        problems.push({
          severity: 'error',
          code: 'KB_BACKUP_CORRUPT',
          message: `${topic.name}/${partition}: the checkpoint ${index.nextOffset} is behind the last segment's end ${previous.nextOffset}`,
          ...where
        })
      }
      const indexed = new Set(index.segments.map(s => `${backupId}/${s.key}`))
      for (const object of await storage.list(`${partitionDir(backupId, topic.name, partition)}/`)) {
        if (object.key.endsWith('.seg') && !indexed.has(object.key)) {
          problems.push({
            severity: 'warning',
            code: 'KB_ORPHAN_SEGMENT',
            message: `${object.key} is not in its partition index (left by an interrupted run; the next backup run removes it)`,
            ...where,
            key: object.key
          })
        }
      }
    }
  }
  return { ...report, valid: !problems.some(p => p.severity === 'error'), problems }
}

/** The number of frames checked, or the problem found. */
async function checkSegment(
  storage: Storage,
  backupId: string,
  segment: SegmentEntry,
  options: { deep?: boolean; signal?: AbortSignal }
): Promise<number | Omit<ValidationProblem, 'topic' | 'partition'>> {
  const key = `${backupId}/${segment.key}`
  try {
    const info = await storage.head(key)
    if (!info) {
      return {
        severity: 'error',
        code: 'KB_STORAGE_NOT_FOUND',
        message: `segment ${key} is in the index but missing from storage`
      }
    }
    if (info.size !== segment.sizeBytes) {
      return {
        severity: 'error',
        code: 'KB_SEGMENT_CORRUPT',
        message: `segment ${key} has ${info.size} bytes, its index entry says ${segment.sizeBytes}`
      }
    }
    const source = await openRangeSource(storage, key, { size: info.size })
    const { index, frameCount, recordCount } = options.deep
      ? await validateSegment(source, key, { deep: true, signal: options.signal })
      : { index: await readSegmentIndex(source, key), frameCount: 0, recordCount: segment.recordCount }
    const footer = index.footer
    const mismatch = [
      ['firstOffset', segment.firstOffset, footer.firstOffset.toString()],
      ['lastOffset', segment.lastOffset, footer.lastOffset.toString()],
      ['recordCount', segment.recordCount, footer.recordCount],
      ['recordCount (counted)', segment.recordCount, recordCount]
    ].find(([, expected, found]) => String(expected) !== String(found))
    if (mismatch) {
      return {
        severity: 'error',
        code: 'KB_SEGMENT_CORRUPT',
        message: `segment ${key}: ${mismatch[0]} is ${mismatch[2]}, its index entry says ${mismatch[1]}`
      }
    }
    return options.deep ? frameCount : footer.frames.length
  } catch (error) {
    if (isBackupError(error)) {
      return { severity: 'error', code: error.code, message: error.message }
    }
    throw error
  }
}
