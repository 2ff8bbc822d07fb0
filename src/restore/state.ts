/**
 * The restore state document, `{backup_id}/restores/{restore_id}/restore/{revision}.json` (a
 * chain of revisions, each a new object: src/catalog/revisions.ts; older versions wrote
 * `restore.json`, which is still read): per target
 * partition, how far the restore got (source position, target end after the last acknowledged
 * batch, offset map), the target topic ids it wrote to, and the group offsets it committed.
 * It lives in the backup's storage, or in `restore.state_storage` when that is read-only.
 *
 * Documents are schema-checked on read: a damaged one is refused (KB_BACKUP_CORRUPT naming the
 * file and the field), never half-trusted, because a wrong position would duplicate or skip
 * records.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { newestRevision, writeNextRevision } from '../catalog/revisions.ts'
import { BackupError, isBackupError } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'
import type { SerializedOffsetRun } from './offset-map.ts'
import type { RestorePlan } from './plan.ts'
import type { TimeWindow } from './window.ts'

export const RESTORE_STATE_FORMAT = 'kafka-backup-restore'
/**
 * 2 added `targetTopicIds`. A version-1 document names no topic ids, so its partitions are
 * checked against the target's end offsets only.
 */
export const RESTORE_STATE_VERSION = 2

const offset = z.string().regex(/^-?\d+$/, { message: 'expected an offset as a decimal string' })
const count = z.int().min(0)

const partitionStateSchema = z.object({
  sourceTopic: z.string().min(1),
  sourcePartition: count,
  targetTopic: z.string().min(1),
  targetPartition: count,
  /** Every source record below this is restored (or outside the window). */
  sourceNextOffset: offset,
  targetStartOffset: offset,
  /** The target partition's end after the last acknowledged batch. */
  targetNextOffset: offset,
  records: count,
  bytes: count,
  /** Records left out because restore.erase names their key (absent before erasure existed). */
  erasedRecords: count.default(0),
  done: z.boolean(),
  offsetMap: z.array(
    z.union([
      z.tuple([offset, offset, z.int().min(1)]),
      z.tuple([offset, offset, z.int().min(1), z.int().min(1)])
    ]) satisfies z.ZodType<SerializedOffsetRun>
  ),
  /** Set on the partitions of a re-partitioned topic: one state per source and target partition. */
  repartitioned: z.boolean().optional()
})

const committedGroupSchema = z.object({
  groupId: z.string(),
  offsets: z.array(
    z.object({
      topic: z.string(),
      partition: count,
      /**
       * The source partition `sourceOffset` is of (absent in states written before
       * re-partitioning; then the one source partition of the target partition).
       */
      sourcePartition: count.optional(),
      sourceOffset: offset,
      targetOffset: offset
    })
  )
})

const restoreStateSchema = z.object({
  format: z.literal(RESTORE_STATE_FORMAT),
  formatVersion: z.union([z.literal(1), z.literal(2)]),
  toolVersion: z.string(),
  restoreId: z.string().min(1),
  backupId: z.string().min(1),
  status: z.enum(['running', 'complete', 'failed', 'stopped']),
  startedAt: z.string(),
  updatedAt: z.string(),
  /** The revision this document is; absent in a restore.json of older versions. */
  revision: z.int().nonnegative().optional(),
  finishedAt: z.string().optional(),
  error: z.string().optional(),
  target: z.object({ clusterId: z.string().nullable(), bootstrapServers: z.array(z.string()) }),
  /** Target topic -> the topic id it had when this restore wrote to it. */
  targetTopicIds: z.record(z.string(), z.string()).optional(),
  window: z.object({ start: offset.nullable(), end: offset.nullable() }),
  partitions: z.array(partitionStateSchema),
  consumerGroups: z.array(committedGroupSchema)
})

export type PartitionState = z.infer<typeof partitionStateSchema>
export type CommittedGroup = z.infer<typeof committedGroupSchema>
export type RestoreState = z.infer<typeof restoreStateSchema>

/** Where a restore state's revisions live (src/catalog/revisions.ts). */
export const restoreStateBase = (backupId: string, restoreId: string) => `${backupId}/restores/${restoreId}/restore`

/**
 * A restore is identified by what it restores where, so that rerunning a config resumes it.
 * `eraseFingerprint` (erase.ts) makes a restore that erases other keys another restore; it is
 * left out of the identity when nothing is erased, so restores made before erasure existed keep
 * their id.
 */
export function restoreIdOf(
  plan: RestorePlan,
  clusterId: string | null,
  window: TimeWindow,
  eraseFingerprint?: string
): string {
  const identity = JSON.stringify({
    clusterId,
    window: [window.start?.toString() ?? null, window.end?.toString() ?? null],
    partitions: plan.topics.flatMap(t =>
      t.partitions.map(p => [p.sourceTopic, p.sourcePartition, p.targetTopic, p.targetPartition])
    ),
    ...(eraseFingerprint === undefined ? {} : { erase: eraseFingerprint })
  })
  return `restore-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}`
}

/** The document at `key`, checked against `schema`; `what` names it in messages. */
async function readDocument<T>(storage: Storage, key: string, schema: z.ZodType<T>, what: string): Promise<T> {
  const where = `${storage.location}/${key}`
  let document: unknown
  try {
    document = JSON.parse((await storage.get(key)).toString('utf8'))
  } catch (error) {
    throw new BackupError('KB_BACKUP_CORRUPT', `${what} ${where} is not valid JSON`, { cause: error, key })
  }
  // A restore state is read once or twice per run, a worker's partition state once per claim:
  // compiling zod's parser for them (new Function) would cost more CPU before the first Produce
  // than checking them without (src/catalog/document.ts, parseOptions).
  const parsed = schema.safeParse(document, { jitless: true })
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = issue.path.join('.') || '(top level)'
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `${what} ${where} is damaged at ${field}: ${issue.message}; to start this restore over, delete the topics it restored into and this file`,
      { key, field }
    )
  }
  return parsed.data
}

/** The newest revision of the document at `base`, or undefined when there is none. */
async function readNewest<T extends { revision?: number | undefined }>(
  storage: Storage,
  base: string,
  schema: z.ZodType<T>,
  what: string
): Promise<T | undefined> {
  const newest = await newestRevision(storage, base)
  if (newest === undefined) {
    return undefined
  }
  const document = await readDocument(storage, newest.key, schema, what)
  if (document.revision !== undefined && document.revision !== newest.revision) {
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `${what} ${storage.location}/${newest.key} says it is revision ${document.revision}, but its key names revision ${newest.revision}`,
      { key: newest.key, field: 'revision' }
    )
  }
  return { ...document, revision: newest.revision }
}

const readStateAt = (storage: Storage, base: string) => readNewest(storage, base, restoreStateSchema, 'restore state')

export function readRestoreState(storage: Storage, backupId: string, restoreId: string) {
  return readStateAt(storage, restoreStateBase(backupId, restoreId))
}

/** Every restore of a backup kept in `storage`, by restore id. */
export async function listRestoreStates(storage: Storage, backupId: string): Promise<RestoreState[]> {
  const bases = new Set<string>()
  for (const { key } of await storage.list(`${backupId}/restores/`)) {
    const match = /^(.+\/restore)(?:\.json|\/\d{12}\.json)$/.exec(key)
    if (match) {
      bases.add(match[1]!)
    }
  }
  const states: RestoreState[] = []
  for (const base of [...bases].sort()) {
    const state = await readStateAt(storage, base)
    if (state) {
      states.push(state)
    }
  }
  return states
}

export async function writeRestoreState(storage: Storage, state: RestoreState): Promise<void> {
  state.updatedAt = new Date().toISOString()
  await writeNextRevision(storage, restoreStateBase(state.backupId, state.restoreId), state, 'restore state')
}

// ---- sharded restore (docs/architecture.md, "Sharded restore") -------------------------------

export const PARTITION_STATE_FORMAT = 'kafka-backup-restore-partition'

/**
 * The state of one source partition of a restore shared by workers: its own revision chain,
 * so that workers never write one document. The worker that owns the partition claims it by
 * writing the next revision before it produces anything; a worker that lost it finds its next
 * revision taken and stops (the fence, src/catalog/revisions.ts).
 */
const partitionDocumentSchema = z.object({
  format: z.literal(PARTITION_STATE_FORMAT),
  formatVersion: z.literal(1),
  toolVersion: z.string(),
  restoreId: z.string().min(1),
  backupId: z.string().min(1),
  /** The worker that wrote this revision: its group member id and the group generation. */
  owner: z.object({ memberId: z.string(), generation: z.int() }),
  /** The id of the target topic the progress was made on. */
  targetTopicId: z.string(),
  updatedAt: z.string(),
  revision: z.int().nonnegative().optional(),
  partition: partitionStateSchema
})

export type PartitionDocument = z.infer<typeof partitionDocumentSchema>

const restoreBase = (backupId: string, restoreId: string) => `${backupId}/restores/${restoreId}`

/** `{backup}/restores/{restore}/partitions/{topic}/{partition}/state/{revision}.json` */
export const partitionStateBase = (backupId: string, restoreId: string, topic: string, partition: number) =>
  `${restoreBase(backupId, restoreId)}/partitions/${topic}/${partition}/state`

const DONE_OFFSET_DIGITS = 20

/**
 * `{backup}/restores/{restore}/done/{topic}/{partition}/{source end offset, 20 digits}.json`:
 * a copy of the last revision of a restored partition, written once it is done. One listing of
 * `done/` tells how far every partition is, and the offset maps of all partitions are read from
 * here whichever worker restored them. The source end in the name keeps a rerun after the
 * backup grew from taking the older record for the newer end.
 */
export const doneRecordKey = (backupId: string, restoreId: string, topic: string, partition: number, end: string) =>
  `${restoreBase(backupId, restoreId)}/done/${topic}/${partition}/${end.padStart(DONE_OFFSET_DIGITS, '0')}.json`

export function readPartitionDocument(
  storage: Storage,
  backupId: string,
  restoreId: string,
  topic: string,
  partition: number
): Promise<PartitionDocument | undefined> {
  return readNewest(
    storage,
    partitionStateBase(backupId, restoreId, topic, partition),
    partitionDocumentSchema,
    'restore partition state'
  )
}

/** Writes the next revision of a partition's state; KB_BACKUP_BUSY when another worker wrote it first. */
export async function writePartitionDocument(storage: Storage, document: PartitionDocument): Promise<void> {
  document.updatedAt = new Date().toISOString()
  const { sourceTopic, sourcePartition } = document.partition
  await writeNextRevision(
    storage,
    partitionStateBase(document.backupId, document.restoreId, sourceTopic, sourcePartition),
    document,
    `restore state of ${sourceTopic}/${sourcePartition}`
  )
}

/** Records that a partition is done; a record already there (a retried create) is fine. */
export async function writeDoneRecord(storage: Storage, document: PartitionDocument): Promise<void> {
  const { sourceTopic, sourcePartition, sourceNextOffset } = document.partition
  const key = doneRecordKey(document.backupId, document.restoreId, sourceTopic, sourcePartition, sourceNextOffset)
  try {
    await storage.create(key, Buffer.from(`${JSON.stringify(document, null, 2)}\n`))
  } catch (error) {
    if (!isBackupError(error, 'KB_STORAGE_EXISTS')) {
      throw error
    }
  }
}

/** Per source partition (`topic/partition`): the highest source end offset a done record names. */
export async function listDoneRecords(
  storage: Storage,
  backupId: string,
  restoreId: string
): Promise<Map<string, { key: string; end: bigint }>> {
  const prefix = `${restoreBase(backupId, restoreId)}/done/`
  const done = new Map<string, { key: string; end: bigint }>()
  for (const { key } of await storage.list(prefix)) {
    const match = /^(.+)\/(\d+)\/(\d{20})\.json$/.exec(key.slice(prefix.length))
    if (!match) {
      continue
    }
    const partition = `${match[1]}/${Number(match[2])}`
    const end = BigInt(match[3]!)
    if ((done.get(partition)?.end ?? -1n) < end) {
      done.set(partition, { key, end })
    }
  }
  return done
}

export function readDoneRecord(storage: Storage, key: string): Promise<PartitionDocument> {
  return readDocument(storage, key, partitionDocumentSchema, 'restore done record')
}
