/**
 * The backup layout and its JSON documents (docs/catalog.md). Offsets and timestamps are Kafka
 * int64s and are stored as decimal strings so that no JSON reader rounds them.
 *
 *   {backup_id}/manifest/{revision, 12 digits}.json            (or manifest.json, older versions)
 *   {backup_id}/topics/{topic}/{partition}/index/{revision}.json  (or index.json, older versions)
 *   {backup_id}/topics/{topic}/{partition}/{first offset, 20 digits}.seg
 *   {backup_id}/topics/{topic}/{partition}/{first offset, 20 digits}-{owner epoch}.seg   (workers)
 *
 * The manifest and the indexes are chains of revisions, each a new object (revisions.ts).
 *
 * The schemas below are what a document must be to be used: every read checks types, bounds
 * and consistency (readDocument), so the engines never meet a string where a count belongs or
 * a partition count that would make them loop for hours. A field added to a document is added
 * to its schema here; fields the schema does not name are dropped when the document is read.
 */
import { z } from 'zod'
import { isBackupError } from '../errors.ts'
import { SegmentCodecIds } from '../segment/format.ts'
import type { Storage } from '../storage/storage.ts'
import { type DocumentKind, readDocument } from './document.ts'
import { newestRevision, revisionsIn, type StoredRevision, writeNextRevision } from './revisions.ts'

export const FORMAT = 'kafka-backup'
export const FORMAT_VERSION = 1
/**
 * The most partitions a topic of a backup may have: far above any real topic (whole clusters
 * hold a few hundred thousand), low enough that anything looping over a topic's partitions
 * stays instant when a manifest says otherwise.
 */
export const MAX_PARTITIONS = 1_000_000

const INT64_MAX = 2n ** 63n - 1n

function int64String(min: bigint, what: string) {
  return z
    .string({ error: `expected ${what} as a decimal string` })
    .refine(
      value => /^-?\d{1,19}$/.test(value) && BigInt(value) >= min && BigInt(value) <= INT64_MAX,
      `expected ${what} as a decimal string (${min} to ${INT64_MAX})`
    )
}

const offset = int64String(0n, 'an offset')
const timestamp = int64String(-1n, 'a timestamp in ms, -1 when unknown')
const count = z.int().nonnegative()
const time = z.iso.datetime()
/** Kafka's own rule for topic names. */
const topicName = z
  .string()
  .regex(/^[a-zA-Z0-9._-]{1,249}$/, 'expected a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)')
  .refine(name => name !== '.' && name !== '..', 'expected a Kafka topic name, not . or ..')
const partition = z
  .int()
  .min(0)
  .max(MAX_PARTITIONS - 1)
const keyId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a key id of 1 to 64 of A-Z a-z 0-9 . _ -')
const codec = z.enum(Object.keys(SegmentCodecIds) as [keyof typeof SegmentCodecIds])

export const segmentEntrySchema = z.object({
  /** Storage key relative to the backup's folder. */
  key: z.string(),
  firstOffset: offset,
  lastOffset: offset,
  /** Where the next segment continues: the last batch's lastOffset + 1. */
  nextOffset: offset,
  minTimestamp: timestamp,
  maxTimestamp: timestamp,
  recordCount: count,
  batchCount: z.int().positive(),
  frameCount: z.int().positive(),
  sizeBytes: z.int().positive(),
  uncompressedBytes: count,
  codec,
  /** The key id of an encrypted segment (its header says the same); absent when not encrypted. */
  keyId: keyId.optional(),
  /**
   * The partitionLeaderEpoch of the segment's last batch (-1 when the broker did not stamp one),
   * checked against the source at the next run (docs/source-changes.md); absent in indexes of
   * older versions, where it is read from the segment.
   */
  lastLeaderEpoch: z.int().min(-1).optional(),
  createdAt: time
})
export type SegmentEntry = z.infer<typeof segmentEntrySchema>

/** Offsets that existed in the topic but are not in the backup, with the reason. */
export const offsetGapSchema = z.object({
  fromOffset: offset,
  /** Exclusive. */
  toOffset: offset,
  reason: z.enum(['log-start-moved']),
  detectedAt: time
})
export type OffsetGap = z.infer<typeof offsetGapSchema>

/**
 * What `prune` removed from the front of a partition (all prunes together). Everything from
 * `fromOffset` up to the index's `startOffset` was backed up and deliberately deleted, so a
 * segment left below the start by an interrupted prune is a leftover, not lost data.
 */
export const prunedRangeSchema = z.object({
  /** The partition's startOffset before its first prune. */
  fromOffset: offset,
  segments: count,
  records: count,
  sizeBytes: count,
  /** The retention cutoff of the last prune (epoch ms): every record at or after it is kept. */
  keptFrom: timestamp,
  prunedAt: time
})
export type PrunedRange = z.infer<typeof prunedRangeSchema>

export const partitionIndexSchema = z.object({
  format: z.literal(FORMAT),
  formatVersion: z.int().min(1).max(FORMAT_VERSION),
  topic: topicName,
  partition,
  /** The first offset this backup covers (the log start or `latest` at the first run). */
  startOffset: offset,
  /** Checkpoint: every offset below this is in a durable segment, a gap, or was not data. */
  nextOffset: offset,
  segments: z.array(segmentEntrySchema),
  gaps: z.array(offsetGapSchema),
  pruned: prunedRangeSchema.optional(),
  /**
   * With workers (backup.workers): the worker that claimed the partition. `epoch` is the revision
   * of the claim; the owner names its segments with it, and a segment outside the index with a
   * lower epoch is what an earlier owner wrote after it lost the partition (docs/architecture.md,
   * "Workers").
   */
  owner: z
    .object({
      epoch: z.int().positive(),
      worker: z.string(),
      memberId: z.string(),
      generation: z.int(),
      claimedAt: time
    })
    .optional(),
  updatedAt: time,
  /** The revision this document is (revisions.ts); absent in an index.json of older versions. */
  revision: z.int().nonnegative().optional()
})
export type PartitionIndex = z.infer<typeof partitionIndexSchema>

export const topicEntrySchema = z.object({
  name: topicName,
  topicId: z.string(),
  partitionCount: z.int().min(1).max(MAX_PARTITIONS),
  /** Topic-level config overrides (cleanup.policy, retention.ms, ...), re-applied by restore. */
  configs: z.record(z.string(), z.string()),
  /** Set when the topic disappeared from the source cluster during a run. */
  deletedDuringBackup: z.boolean().optional()
})
export type TopicEntry = z.infer<typeof topicEntrySchema>

export const consumerGroupEntrySchema = z.object({
  groupId: z.string(),
  state: z.string(),
  capturedAt: time,
  offsets: z.array(
    z.object({
      topic: topicName,
      partition,
      offset: int64String(-1n, 'a committed offset'),
      leaderEpoch: z.int(),
      metadata: z.string().nullable()
    })
  )
})
export type ConsumerGroupEntry = z.infer<typeof consumerGroupEntrySchema>

export const runEntrySchema = z.object({
  startedAt: time,
  finishedAt: time.optional(),
  /** `interrupted`: the process ended without finishing the run (killed); set by the next run. */
  status: z.enum(['running', 'complete', 'stopped', 'failed', 'interrupted']),
  /** The worker that ran it, when several share the backup (backup.workers); absent for a lone process. */
  worker: z.string().optional(),
  records: count,
  bytes: count,
  error: z.string().optional()
})
export type RunEntry = z.infer<typeof runEntrySchema>

export const manifestSchema = z.object({
  format: z.literal(FORMAT),
  formatVersion: z.int().min(1).max(FORMAT_VERSION),
  toolVersion: z.string(),
  backupId: z.string().min(1),
  createdAt: time,
  updatedAt: time,
  source: z.object({ clusterId: z.string().nullable(), bootstrapServers: z.array(z.string()) }),
  compression: z.object({ codec, level: z.int() }),
  /**
   * Set by the first run with backup.encryption: the key ids that wrapped its data keys, in the
   * order they became active. Later runs without encryption are refused.
   */
  encryption: z.object({ keyIds: z.array(keyId) }).optional(),
  topics: z.array(topicEntrySchema),
  consumerGroups: z.array(consumerGroupEntrySchema),
  runs: z.array(runEntrySchema),
  /** The revision this document is (revisions.ts); absent in a manifest.json of older versions. */
  revision: z.int().nonnegative().optional()
})
export type Manifest = z.infer<typeof manifestSchema>

/** Where the manifest's revisions live: `{base}/{revision}.json`, or `{base}.json` (revisions.ts). */
export const manifestBase = (backupId: string) => `${backupId}/manifest`
export const partitionDir = (backupId: string, topic: string, partition: number) =>
  `${backupId}/topics/${topic}/${partition}`
/** Where a partition index's revisions live, as manifestBase. */
export const indexBase = (backupId: string, topic: string, partition: number) =>
  `${partitionDir(backupId, topic, partition)}/index`
/** `epoch`: the owner's epoch, for segments written by a worker (see `owner` above). */
export const segmentKey = (backupId: string, topic: string, partition: number, firstOffset: bigint, epoch?: number) =>
  `${partitionDir(backupId, topic, partition)}/${firstOffset.toString().padStart(20, '0')}${epoch === undefined ? '' : `-${epoch}`}.seg`

/** A segment's file name: its first offset, and the owner epoch of a worker's segment. */
export const SEGMENT_NAME = /(\d{20})(?:-([1-9]\d{0,11}))?\.seg$/

/** The first offset and owner epoch a segment key names, or undefined for any other key. */
export function parseSegmentKey(key: string): { firstOffset: bigint; epoch: number | undefined } | undefined {
  const match = SEGMENT_NAME.exec(key)
  return match
    ? { firstOffset: BigInt(match[1]!), epoch: match[2] === undefined ? undefined : Number(match[2]) }
    : undefined
}

function manifestKind(backupId: string): DocumentKind<Manifest> {
  return {
    name: 'manifest',
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    schema: manifestSchema,
    check(manifest, fail) {
      if (manifest.backupId !== backupId) {
        fail('backupId', `is not the folder it is in (${backupId})`, manifest.backupId)
      }
      const seen = new Set<string>()
      for (const [i, topic] of manifest.topics.entries()) {
        if (seen.has(topic.name)) {
          fail(`topics[${i}].name`, 'names a topic listed before it', topic.name)
        }
        seen.add(topic.name)
      }
    }
  }
}

/**
 * An index must describe the partition whose folder holds it, and its segments must follow
 * each other: a duplicated, swapped or foreign entry would restore records twice, out of order
 * or into the wrong partition.
 */
function partitionIndexKind(backupId: string, topic: string, partition: number): DocumentKind<PartitionIndex> {
  return {
    name: 'partition index',
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    schema: partitionIndexSchema,
    context: { topic, partition },
    check(index, fail) {
      if (index.topic !== topic || index.partition !== partition) {
        fail(
          'topic, partition',
          `describe ${index.topic}/${index.partition}, but the index is filed under ${topic}/${partition}`
        )
      }
      const nextOffset = BigInt(index.nextOffset)
      if (BigInt(index.startOffset) > nextOffset) {
        fail('startOffset', `is past nextOffset ${index.nextOffset}`, index.startOffset, index.startOffset)
      }
      if (index.pruned && BigInt(index.pruned.fromOffset) > BigInt(index.startOffset)) {
        fail('pruned.fromOffset', `is past startOffset ${index.startOffset}`, index.pruned.fromOffset)
      }
      let previousNext = -1n
      for (const [i, segment] of index.segments.entries()) {
        const field = `segments[${i}]`
        const firstOffset = BigInt(segment.firstOffset)
        const lastOffset = BigInt(segment.lastOffset)
        const expectedKey = segmentKey(
          backupId,
          topic,
          partition,
          firstOffset,
          parseSegmentKey(segment.key)?.epoch
        ).slice(backupId.length + 1)
        if (segment.key !== expectedKey) {
          fail(
            `${field}.key`,
            `expected ${expectedKey} (the segment of ${topic}/${partition} starting at ${segment.firstOffset})`,
            segment.key,
            segment.firstOffset
          )
        }
        if (lastOffset < firstOffset || BigInt(segment.nextOffset) !== lastOffset + 1n) {
          fail(
            field,
            `expected firstOffset <= lastOffset and nextOffset = lastOffset + 1`,
            `${segment.firstOffset}, ${segment.lastOffset}, ${segment.nextOffset}`,
            segment.firstOffset
          )
        }
        if (firstOffset < previousNext) {
          fail(
            `${field}.firstOffset`,
            `starts before the previous segment ends (at ${previousNext}): entries must be in offset order, each once`,
            segment.firstOffset,
            segment.firstOffset
          )
        }
        previousNext = BigInt(segment.nextOffset)
      }
      if (previousNext > nextOffset) {
        fail(
          'nextOffset',
          `is behind the end of the last segment (${previousNext})`,
          index.nextOffset,
          index.nextOffset
        )
      }
      for (const [i, gap] of index.gaps.entries()) {
        if (BigInt(gap.fromOffset) >= BigInt(gap.toOffset) || BigInt(gap.toOffset) > nextOffset) {
          fail(
            `gaps[${i}]`,
            `expected fromOffset < toOffset <= nextOffset (${index.nextOffset})`,
            `${gap.fromOffset}..${gap.toOffset}`,
            gap.fromOffset
          )
        }
      }
    }
  }
}

/** The newest revision of a document, checked, with its `revision` set; undefined when there is none. */
async function readNewest<T extends { revision?: number | undefined }>(
  storage: Storage,
  base: string,
  kind: DocumentKind<T>
): Promise<T | undefined> {
  return readRevision(storage, await newestRevision(storage, base), kind)
}

/** The document at revision `newest`, checked, with its `revision` set. */
async function readRevision<T extends { revision?: number | undefined }>(
  storage: Storage,
  newest: StoredRevision | undefined,
  kind: DocumentKind<T>
): Promise<T | undefined> {
  if (newest === undefined) {
    return undefined
  }
  const document = await readDocument(storage, newest.key, {
    ...kind,
    check(document, fail) {
      // A revision copied or renamed into another's place would hide the one it replaced.
      if (document.revision !== undefined && document.revision !== newest.revision) {
        fail('revision', `is not the revision its key names (${newest.revision})`, document.revision)
      }
      kind.check?.(document, fail)
    }
  })
  if (document) {
    document.revision = newest.revision
  }
  return document
}

export function readManifest(storage: Storage, backupId: string): Promise<Manifest | undefined> {
  return readNewest(storage, manifestBase(backupId), manifestKind(backupId))
}

export function readPartitionIndex(
  storage: Storage,
  backupId: string,
  topic: string,
  partition: number
): Promise<PartitionIndex | undefined> {
  return readNewest(storage, indexBase(backupId, topic, partition), partitionIndexKind(backupId, topic, partition))
}

/**
 * The partition's index at the newest of `keys`, its revisions listed already (scanStoredPartitions
 * lists a whole backup at once): a restore plan of 2,000 partitions then reads each index with one
 * request, not a listing, a HEAD and a read. Undefined when `keys` holds none, or it is gone.
 */
export function readPartitionIndexAmong(
  storage: Storage,
  backupId: string,
  topic: string,
  partition: number,
  keys: readonly string[]
): Promise<PartitionIndex | undefined> {
  const base = indexBase(backupId, topic, partition)
  return readRevision(
    storage,
    revisionsIn(
      base,
      keys.map(key => ({ key, size: 0 }))
    ).at(-1),
    partitionIndexKind(backupId, topic, partition)
  )
}

/** Writes the manifest's next revision (KB_BACKUP_BUSY when another process wrote it first). */
export async function writeManifest(storage: Storage, manifest: Manifest): Promise<void> {
  manifest.updatedAt = new Date().toISOString()
  await writeNextRevision(storage, manifestBase(manifest.backupId), manifest, 'manifest')
}

/**
 * Applies `change` to the newest manifest (or to `create()` when there is none) and writes it as
 * the next revision, again from the newest one when another worker wrote first: the manifest of
 * a backup several workers share (backup.workers). `change` must give the same result applied
 * to any revision (set this worker's entries, never append blindly).
 */
export async function updateManifest(
  storage: Storage,
  backupId: string,
  create: () => Manifest,
  change: (manifest: Manifest) => void
): Promise<Manifest> {
  for (let attempt = 1; ; attempt++) {
    const manifest = (await readManifest(storage, backupId)) ?? create()
    change(manifest)
    try {
      await writeManifest(storage, manifest)
      return manifest
    } catch (error) {
      // Workers write the manifest a few times per run each: a handful of losses in a row
      // means something else is wrong.
      if (!isBackupError(error, 'KB_BACKUP_BUSY') || attempt >= 20) {
        throw error
      }
    }
  }
}

/** Writes the index's next revision: the partition's new checkpoint (KB_BACKUP_BUSY as above). */
export async function writePartitionIndex(storage: Storage, backupId: string, index: PartitionIndex): Promise<void> {
  index.updatedAt = new Date().toISOString()
  await writeNextRevision(storage, indexBase(backupId, index.topic, index.partition), index, 'partition index')
}
