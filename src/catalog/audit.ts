/**
 * What storage holds against what the catalogue says it holds. The manifest and the indexes
 * are the only way in to the data, so a lost index, a partition the manifest does not count,
 * or an index that lost an entry would hide records from a restore without any read failing.
 * These checks find them; `validate` reports them and a restore refuses to start on them.
 * Each indexed segment is also checked against its entry when it is opened: the header must
 * name the partition it is filed under, and the footer must agree with the entry.
 */
import { BackupError, isBackupError } from '../errors.ts'
import { readSegmentIndex, type SegmentIndex } from '../segment/reader.ts'
import { openRangeSource, type StorageRangeSource } from '../storage/range-source.ts'
import type { Storage } from '../storage/storage.ts'
import { type Manifest, type PartitionIndex, parseSegmentKey, partitionDir, type SegmentEntry } from './manifest.ts'

export interface CatalogProblem {
  severity: 'error' | 'warning'
  code: string
  message: string
  topic?: string
  partition?: number
  key?: string
}

export interface StoredPartition {
  hasIndex: boolean
  /** Keys of the index's revisions (and of an index.json of older versions), in any order. */
  indexKeys?: string[]
  /** Segment keys (from the storage root) and sizes, in offset order. */
  segments: Array<{ key: string; size: number }>
}

/** Per topic folder, per partition folder: what is there. */
export type StoredPartitions = Map<string, Map<number, StoredPartition>>

/** A partition's index (a revision, or the index.json of older versions) or one of its segments. */
const PARTITION_FILE =
  /^topics\/([^/]+)\/(0|[1-9]\d{0,9})\/(?:index\.json|index\/\d{12}\.json|(\d{20})(?:-[1-9]\d{0,11})?\.seg)$/

/** One listing of the backup's topics/ folder. Files that are not ours are ignored. */
export async function scanStoredPartitions(storage: Storage, backupId: string): Promise<StoredPartitions> {
  const stored: StoredPartitions = new Map()
  for (const object of await storage.list(`${backupId}/topics/`)) {
    const match = PARTITION_FILE.exec(object.key.slice(backupId.length + 1))
    if (!match) {
      continue
    }
    const [, topic, partitionText, firstOffset] = match as unknown as [string, string, string, string | undefined]
    const partitions = stored.get(topic) ?? new Map<number, StoredPartition>()
    stored.set(topic, partitions)
    const partition = Number(partitionText)
    const entry = partitions.get(partition) ?? { hasIndex: false, segments: [] }
    partitions.set(partition, entry)
    if (firstOffset === undefined) {
      entry.hasIndex = true
      entry.indexKeys = [...(entry.indexKeys ?? []), object.key]
    } else {
      entry.segments.push({ key: object.key, size: object.size })
    }
  }
  return stored
}

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`

/**
 * Every partition the manifest lists must have an index (a backup run writes one for each
 * partition it covers, even an empty one), and everything in storage must be listed by the
 * manifest. `wanted` narrows the check to what a restore reads (partition undefined: the topic).
 */
export function layoutProblems(
  backupId: string,
  manifest: Manifest,
  stored: StoredPartitions,
  wanted: (topic: string, partition?: number) => boolean = () => true
): CatalogProblem[] {
  const problems: CatalogProblem[] = []
  const error = (problem: Omit<CatalogProblem, 'severity' | 'code'>) =>
    problems.push({ severity: 'error', code: 'KB_BACKUP_CORRUPT', ...problem })
  const listed = new Map(manifest.topics.map(t => [t.name, t]))
  for (const [topic, partitions] of stored) {
    if (!listed.has(topic) && wanted(topic)) {
      const segments = [...partitions.values()].reduce((sum, p) => sum + p.segments.length, 0)
      error({
        topic,
        key: `${backupId}/topics/${topic}/`,
        message: `${backupId}/topics/${topic}/ holds ${plural(partitions.size, 'partition')} (${plural(segments, 'segment')}) of topic ${topic}, which the manifest does not list`
      })
    }
  }
  for (const topic of manifest.topics) {
    const partitions = stored.get(topic.name) ?? new Map<number, StoredPartition>()
    for (const [partition, found] of partitions) {
      if (partition >= topic.partitionCount && wanted(topic.name, partition)) {
        error({
          topic: topic.name,
          partition,
          key: `${partitionDir(backupId, topic.name, partition)}/`,
          message: `${topic.name}/${partition} is in storage (${plural(found.segments.length, 'segment')}), but the manifest gives ${topic.name} ${plural(topic.partitionCount, 'partition')} (partitionCount)`
        })
      }
    }
    let missingFrom: number | undefined
    const reportMissing = (to: number) => {
      if (missingFrom !== undefined) {
        const which = missingFrom === to ? `partition ${to}` : `partitions ${missingFrom}..${to}`
        error({
          topic: topic.name,
          partition: missingFrom,
          message: `${topic.name} ${which} of the ${topic.partitionCount} the manifest lists ${missingFrom === to ? 'has' : 'have'} no index: nothing of ${missingFrom === to ? 'it' : 'them'} is in the backup`
        })
        missingFrom = undefined
      }
    }
    for (let partition = 0; partition < topic.partitionCount; partition++) {
      const found = partitions.get(partition)
      if (found?.hasIndex || !wanted(topic.name, partition)) {
        reportMissing(partition - 1)
        continue
      }
      if (found && found.segments.length > 0) {
        reportMissing(partition - 1)
        error({
          topic: topic.name,
          partition,
          key: `${partitionDir(backupId, topic.name, partition)}/index`,
          message: `${partitionDir(backupId, topic.name, partition)}/ holds ${plural(found.segments.length, 'segment')} but no index: the index is lost, and the records of these segments with it`
        })
        continue
      }
      missingFrom ??= partition
    }
    reportMissing(topic.partitionCount - 1)
  }
  return problems
}

/**
 * Segments in the partition's folder against the entries of its index. An interrupted run
 * leaves at most one segment outside the index: the one it was writing, past the checkpoint,
 * created after the index was last written (the index is not rewritten while a segment is
 * open); the next run records it in the index. An interrupted prune leaves segments below the
 * index's startOffset, in the range its `pruned` record covers; the next prune removes them.
 * Any other segment outside the index means the index lost entries.
 */
export async function unindexedSegmentProblems(
  storage: Storage,
  backupId: string,
  index: PartitionIndex,
  stored: StoredPartition | undefined
): Promise<CatalogProblem[]> {
  const where = { topic: index.topic, partition: index.partition }
  const indexed = new Set(index.segments.map(s => `${backupId}/${s.key}`))
  const inStorage = new Set(stored?.segments.map(s => s.key))
  const problems: CatalogProblem[] = []
  for (const segment of index.segments) {
    const key = `${backupId}/${segment.key}`
    if (!inStorage.has(key)) {
      problems.push({
        severity: 'error',
        code: 'KB_STORAGE_NOT_FOUND',
        message: `segment ${key} is in the index but missing from storage`,
        ...where,
        key
      })
    }
  }
  const checkpoint = BigInt(index.nextOffset)
  const outside: Array<{ key: string; segment: SegmentIndex }> = []
  for (const { key, size } of (stored?.segments ?? []).filter(s => !indexed.has(s.key))) {
    try {
      outside.push({ key, segment: await readSegmentIndex(await openRangeSource(storage, key, { size }), key) })
    } catch (error) {
      if (!isBackupError(error)) {
        throw error
      }
      problems.push({ severity: 'error', code: error.code, message: error.message, ...where, key })
    }
  }
  const pastCheckpoint = outside.filter(
    o => o.segment.footer.firstOffset >= checkpoint && !isFencedLeftover(index, o.key)
  )
  const orphan = (key: string, why: string) =>
    problems.push({ severity: 'warning', code: 'KB_ORPHAN_SEGMENT', message: `${key} ${why}`, ...where, key })
  const lost = (key: string, why: string) =>
    problems.push({ severity: 'error', code: 'KB_BACKUP_CORRUPT', message: `${key} ${why}`, ...where, key })
  for (const { key, segment } of outside) {
    const { firstOffset, lastOffset } = segment.footer
    const copyOf = index.segments.find(s => BigInt(s.firstOffset) <= firstOffset && lastOffset <= BigInt(s.lastOffset))
    const createdAt = new Date(Number(segment.header.createdAtMs))
    if (isFencedLeftover(index, key)) {
      orphan(
        key,
        `holds offsets ${firstOffset}..${lastOffset} written by an earlier owner of the partition (epoch ${parseSegmentKey(key)?.epoch}, now ${index.owner?.epoch}) after another worker claimed it; it is not part of the backup (the next prune removes it)`
      )
    } else if (isPrunedLeftover(index, firstOffset, lastOffset)) {
      orphan(
        key,
        `holds offsets ${firstOffset}..${lastOffset}, below the index's startOffset ${index.startOffset}: a prune removed it from the index and stopped before deleting it (the next prune removes it)`
      )
    } else if (copyOf) {
      orphan(
        key,
        `is not in its partition index; its offsets ${firstOffset}..${lastOffset} are in indexed segment ${copyOf.key} (the next prune removes it)`
      )
    } else if (firstOffset < checkpoint) {
      lost(
        key,
        `is not in its partition index, but holds offsets ${firstOffset}..${lastOffset}, below the index's nextOffset ${index.nextOffset} and in no indexed segment: the index lost this entry`
      )
    } else if (pastCheckpoint.length > 1) {
      lost(
        key,
        `is one of ${pastCheckpoint.length} segments past the index's nextOffset ${index.nextOffset}: an interrupted run leaves at most one, so the index lost entries`
      )
    } else if (createdAt.getTime() < Date.parse(index.updatedAt)) {
      lost(
        key,
        `is not in its partition index and was written at ${createdAt.toISOString()}, before the index (${index.updatedAt}): no interrupted run left it, the index lost this entry`
      )
    } else {
      orphan(
        key,
        'is not in its partition index (an interrupted run wrote it and stopped before recording it; the next backup run records it)'
      )
    }
  }
  return problems
}

/**
 * A segment a worker wrote after another worker claimed its partition (docs/architecture.md,
 * "Workers"): its name carries an owner epoch below the one of the index's newest claim. The
 * claim fenced its writer off, so no index ever lists it.
 */
export function isFencedLeftover(index: PartitionIndex, key: string): boolean {
  const epoch = parseSegmentKey(key)?.epoch
  return epoch !== undefined && index.owner !== undefined && epoch < index.owner.epoch
}

/**
 * A segment wholly inside the range a prune removed from the index. Prune rewrites the index
 * before it deletes (docs/retention.md), so a prune that stops in between leaves such segments;
 * the index no longer vouches for them and no restore reads below its startOffset.
 */
function isPrunedLeftover(index: PartitionIndex, firstOffset: bigint, lastOffset: bigint): boolean {
  return (
    index.pruned !== undefined &&
    firstOffset >= BigInt(index.pruned.fromOffset) &&
    lastOffset < BigInt(index.startOffset)
  )
}

export interface OpenedSegment {
  source: StorageRangeSource
  index: SegmentIndex
}

/**
 * Opens an indexed segment and checks that it is the one its entry describes: the header
 * names the partition the entry is filed under, and the footer's offsets, timestamps and
 * counts equal the entry's (a restore plans with the entry's numbers and reads with the
 * footer's).
 */
export async function openIndexedSegment(
  storage: Storage,
  backupId: string,
  topic: string,
  partition: number,
  entry: SegmentEntry
): Promise<OpenedSegment> {
  const key = `${backupId}/${entry.key}`
  const source = await openRangeSource(storage, key, { size: entry.sizeBytes })
  const index = await readSegmentIndex(source, key)
  const { header, footer } = index
  if (header.topic !== topic || header.partition !== partition) {
    throw new BackupError(
      'KB_SEGMENT_CORRUPT',
      `segment ${key} holds ${header.topic}/${header.partition}, but is filed under ${topic}/${partition}`,
      { key, topic, partition, expected: `${topic}/${partition}`, found: `${header.topic}/${header.partition}` }
    )
  }
  const mismatch = (
    [
      ['firstOffset', entry.firstOffset, footer.firstOffset],
      ['lastOffset', entry.lastOffset, footer.lastOffset],
      ['nextOffset', entry.nextOffset, footer.nextOffset],
      ['minTimestamp', entry.minTimestamp, footer.minTimestamp],
      ['maxTimestamp', entry.maxTimestamp, footer.maxTimestamp],
      ['recordCount', entry.recordCount, footer.recordCount],
      ['batchCount', entry.batchCount, footer.batchCount],
      ['frameCount', entry.frameCount, footer.frames.length],
      ['uncompressedBytes', entry.uncompressedBytes, footer.uncompressedBytes],
      ['codec', entry.codec, footer.codec],
      // An entry that hid its key id would let a restore start before its keys are checked.
      ['keyId', entry.keyId ?? 'none', header.encryption?.keyId ?? 'none']
    ] as const
  ).find(([, expected, found]) => String(expected) !== String(found))
  if (mismatch) {
    const [field, expected, found] = mismatch
    throw new BackupError(
      'KB_SEGMENT_CORRUPT',
      `segment ${key}: ${field} is ${found}, its index entry says ${expected}`,
      { key, topic, partition, offset: entry.firstOffset, field, expected: String(expected), found: String(found) }
    )
  }
  return { source, index }
}
