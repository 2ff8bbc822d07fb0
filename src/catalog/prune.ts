/**
 * Retention: `prune` deletes the oldest segments of each partition, keeping every record whose
 * timestamp is at or after a cutoff (docs/retention.md).
 *
 * A partition loses a prefix of its segments, never one in the middle: the segments whose
 * largest timestamp is before the cutoff, up to the first that is not. So the index stays one
 * run of offsets from a new startOffset to its unchanged checkpoint (nextOffset), the next
 * backup run continues as before, and a restore of any time window starting at or after the
 * cutoff reads exactly the records it read before the prune (producers may send timestamps out
 * of order; a segment holding one record at or after the cutoff is kept whole, with everything
 * after it).
 *
 * Order of writes: the index first, then the deletes. A prune that stops in between leaves
 * segments below the index's startOffset that the index's `pruned` record covers: audit.ts
 * reports them as leftovers (a warning) and the next prune removes them.
 *
 * Prune is also the only command that deletes what a backup run leaves: segments an interrupted
 * run or prune left outside an index, and the superseded revisions of the manifest, the
 * indexes and restore states (revisions.ts). It deletes a revision only when a newer one of the
 * same document was in its listing, so what any reader reads stays in place.
 */
import { BackupError, type ErrorCode } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'
import { layoutProblems, scanStoredPartitions, unindexedSegmentProblems } from './audit.ts'
import { clusterMetadataBase } from './cluster-metadata.ts'
import { requireManifest } from './inspect.ts'
import {
  indexBase,
  type Manifest,
  manifestBase,
  type PartitionIndex,
  readPartitionIndex,
  writePartitionIndex
} from './manifest.ts'
import { PruneLock } from './prune-lock.ts'
import { revisionsIn, storedRevisions, supersededRevisions } from './revisions.ts'

export { refuseWhilePruning } from './prune-lock.ts'

function refuseWhileRunning(manifest: Manifest): void {
  const running = manifest.runs.find(run => run.status === 'running')
  if (running) {
    throw new BackupError(
      'KB_BACKUP_BUSY',
      `backup ${manifest.backupId} has a run in progress (started ${running.startedAt}, manifest.runs); prune when it has ended. ` +
        'A run whose process was killed stays "running" until the next backup run marks it interrupted',
      { backupId: manifest.backupId, startedAt: running.startedAt }
    )
  }
}

const DURATION = /^(\d+)(ms|s|m|h|d|w)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `30d`, `12h`, `90m`, `2w` in milliseconds; `field` names the option or key in the error. */
export function parseDuration(text: string, field: string): number {
  const match = DURATION.exec(text)
  const ms = match ? Number(match[1]) * UNIT_MS[match[2]!]! : Number.NaN
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${field}: expected a positive duration such as 30d, 12h, 90m or 2w (units ms, s, m, h, d, w), found ${JSON.stringify(text)}`,
      { path: field, found: text }
    )
  }
  return ms
}

export interface PruneOptions {
  storage: Storage
  backupId: string
  /** Epoch ms: every record with a timestamp at or after it is kept. */
  keepFrom: number
  /** Only report what would be deleted. */
  dryRun?: boolean
  onWarning?: (message: string, context: Record<string, unknown>) => void
}

export interface PrunedSegment {
  key: string
  firstOffset: string
  lastOffset: string
  maxTimestamp: string
  records: number
  sizeBytes: number
}

export interface PartitionPrune {
  topic: string
  partition: number
  startOffset: string
  newStartOffset: string
  segments: PrunedSegment[]
  /** Segments outside the index that an interrupted run or prune left (deleted too). */
  leftovers: string[]
  /** The index's revisions (keys) that the newest one superseded (deleted too). */
  supersededIndexes: string[]
}

export interface PruneSummary {
  backupId: string
  location: string
  keptFrom: string
  dryRun: boolean
  partitions: PartitionPrune[]
  segments: number
  records: number
  sizeBytes: number
  /** Superseded revisions of the manifest, the indexes and restore states, deleted (or, dry run, to delete). */
  supersededRevisions: number
}

interface Planned {
  index: PartitionIndex
  prune: PartitionPrune
}

/**
 * Reads every index and decides, per partition, the segments to delete. Refuses (changing
 * nothing) when the catalogue disagrees with storage: a prune on a damaged backup could delete
 * the only evidence of what is wrong.
 */
async function planPrune(storage: Storage, manifest: Manifest, keepFrom: bigint): Promise<Planned[]> {
  const { backupId } = manifest
  const stored = await scanStoredPartitions(storage, backupId)
  const problems = layoutProblems(backupId, manifest, stored)
  const planned: Planned[] = []
  for (const topic of manifest.topics) {
    for (const [partition, found] of stored.get(topic.name) ?? []) {
      if (!found.hasIndex || partition >= topic.partitionCount) {
        continue
      }
      const index = (await readPartitionIndex(storage, backupId, topic.name, partition))!
      const outside = await unindexedSegmentProblems(storage, backupId, index, found)
      problems.push(...outside)
      const firstKept = index.segments.findIndex(s => BigInt(s.maxTimestamp) >= keepFrom)
      const pruned = index.segments.slice(0, firstKept === -1 ? index.segments.length : firstKept)
      const leftovers = outside.flatMap(p => (p.severity === 'warning' && p.key ? [p.key] : []))
      const base = indexBase(backupId, topic.name, partition)
      const revisions = revisionsIn(
        base,
        (found.indexKeys ?? []).map(key => ({ key, size: 0 }))
      )
      // A prune that rewrites the index makes every revision listed here superseded.
      const supersededIndexes = (pruned.length > 0 ? revisions : supersededRevisions(revisions)).map(r => r.key)
      if (pruned.length === 0 && leftovers.length === 0 && supersededIndexes.length === 0) {
        continue
      }
      planned.push({
        index,
        prune: {
          topic: topic.name,
          partition,
          startOffset: index.startOffset,
          newStartOffset: pruned.at(-1)?.nextOffset ?? index.startOffset,
          segments: pruned.map(s => ({
            key: `${backupId}/${s.key}`,
            firstOffset: s.firstOffset,
            lastOffset: s.lastOffset,
            maxTimestamp: s.maxTimestamp,
            records: s.recordCount,
            sizeBytes: s.sizeBytes
          })),
          leftovers,
          supersededIndexes
        }
      })
    }
  }
  const errors = problems.filter(p => p.severity === 'error')
  if (errors.length > 0) {
    const { code, message, severity: _, ...context } = errors[0]!
    throw new BackupError(
      code as ErrorCode,
      `${message}${errors.length > 1 ? ` (and ${errors.length - 1} more problems)` : ''}; nothing was pruned: kafka-backup validate lists every problem`,
      context
    )
  }
  return planned
}

function prunedIndex(index: PartitionIndex, prune: PartitionPrune, keepFrom: bigint): PartitionIndex {
  const newStart = BigInt(prune.newStartOffset)
  const before = index.pruned
  return {
    ...index,
    startOffset: prune.newStartOffset,
    segments: index.segments.slice(prune.segments.length),
    // A gap that ends at or below the new start says nothing about what the backup still holds.
    gaps: index.gaps.filter(gap => BigInt(gap.toOffset) > newStart),
    pruned: {
      fromOffset: before?.fromOffset ?? index.startOffset,
      segments: (before?.segments ?? 0) + prune.segments.length,
      records: (before?.records ?? 0) + prune.segments.reduce((sum, s) => sum + s.records, 0),
      sizeBytes: (before?.sizeBytes ?? 0) + prune.segments.reduce((sum, s) => sum + s.sizeBytes, 0),
      // Each prune deleted only records before its own cutoff; the latest cutoff bounds them all.
      keptFrom: (before && BigInt(before.keptFrom) > keepFrom ? before.keptFrom : keepFrom).toString(),
      prunedAt: new Date().toISOString()
    }
  }
}

/** The manifest's, the cluster metadata's and the restore states' revisions that a newer one superseded. */
async function supersededDocumentKeys(storage: Storage, backupId: string): Promise<string[]> {
  const keys: string[] = []
  for (const base of [manifestBase(backupId), clusterMetadataBase(backupId)]) {
    keys.push(...supersededRevisions(await storedRevisions(storage, base)).map(r => r.key))
  }
  const restores = new Map<string, string[]>()
  for (const { key } of await storage.list(`${backupId}/restores/`)) {
    const match = /^(.+\/restore)(?:\.json|\/\d{12}\.json)$/.exec(key)
    if (match) {
      restores.set(match[1]!, [...(restores.get(match[1]!) ?? []), key])
    }
  }
  for (const [base, found] of restores) {
    const revisions = revisionsIn(
      base,
      found.map(key => ({ key, size: 0 }))
    )
    keys.push(...supersededRevisions(revisions).map(r => r.key))
  }
  return keys
}

export async function pruneBackup(options: PruneOptions): Promise<PruneSummary> {
  const { storage, backupId } = options
  const keepFrom = BigInt(options.keepFrom)
  const dryRun = options.dryRun ?? false
  let lock: PruneLock | undefined
  try {
    let manifest = await requireManifest(storage, backupId)
    if (!dryRun) {
      // Each side announces itself before it checks the other: the lock, then the manifest again.
      refuseWhileRunning(manifest)
      lock = await PruneLock.acquire(storage, backupId, (message, key) => options.onWarning?.(message, { key }))
      manifest = await requireManifest(storage, backupId)
      refuseWhileRunning(manifest)
    }
    const planned = await planPrune(storage, manifest, keepFrom)
    const supersededDocuments = await supersededDocumentKeys(storage, backupId)
    if (!dryRun) {
      for (const { index, prune } of planned) {
        lock!.check()
        if (prune.segments.length > 0) {
          await writePartitionIndex(storage, backupId, prunedIndex(index, prune, keepFrom))
        }
        for (const key of [...prune.segments.map(s => s.key), ...prune.leftovers, ...prune.supersededIndexes]) {
          lock!.check()
          await storage.delete(key)
        }
        for (const key of prune.leftovers) {
          options.onWarning?.(`removed segment ${key}, which an interrupted run or prune left outside its index`, {
            topic: prune.topic,
            partition: prune.partition,
            key
          })
        }
      }
    }
    if (!dryRun) {
      for (const key of supersededDocuments) {
        lock!.check()
        await storage.delete(key)
      }
    }
    const partitions = planned.map(p => p.prune)
    const segments = partitions.flatMap(p => p.segments)
    return {
      backupId,
      location: `${storage.location}/${backupId}`,
      keptFrom: new Date(options.keepFrom).toISOString(),
      dryRun,
      partitions,
      segments: segments.length,
      records: segments.reduce((sum, s) => sum + s.records, 0),
      sizeBytes: segments.reduce((sum, s) => sum + s.sizeBytes, 0),
      supersededRevisions:
        supersededDocuments.length + partitions.reduce((sum, p) => sum + p.supersededIndexes.length, 0)
    }
  } finally {
    await lock?.release()
  }
}
