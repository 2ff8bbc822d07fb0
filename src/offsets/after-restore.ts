/**
 * Consumer-group offsets after a restore, as a step of its own: from a completed restore's offset
 * map, a plan per group and partition (the group's offset captured at backup time, translated to
 * the restored partition); a snapshot of the groups' current offsets on the target, saved before
 * anything is committed; apply (each group only while it has no active members, checked right
 * before its commit); and rollback to a snapshot.
 *
 * Snapshots live beside the restore's state: `{backup_id}/restores/{restore_id}/offset-snapshots/
 * {snapshot_id}.json`, in the backup storage or `restore.state_storage`.
 */
import { z } from 'zod'
import { requireManifest } from '../catalog/inspect.ts'
import { BackupError } from '../errors.ts'
import { commitGroupOffsets, deleteGroupOffsets, fetchGroupOffsets } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { assertGroupInactive, selectCapturedGroups, translateGroupOffsets } from '../restore/groups.ts'
import { OffsetMap } from '../restore/offset-map.ts'
import { listRestoreStates, type RestoreState, readRestoreState } from '../restore/state.ts'
import type { Storage } from '../storage/storage.ts'
import { topicMatcher } from '../topics.ts'

/** One group's offset on one restored partition: captured at backup time, and where it goes. */
export interface OffsetPlanRow {
  groupId: string
  sourceTopic: string
  sourcePartition: number
  /** The offset the group had committed on the source when the backup captured it. */
  sourceOffset: string
  targetTopic: string
  targetPartition: number
  /** The offset apply commits: the first restored record at or after sourceOffset. */
  targetOffset: string
  /** The group's committed offset on the target now; null when it has none (or not read). */
  currentOffset: string | null
}

export interface OffsetPlan {
  backupId: string
  restoreId: string
  rows: OffsetPlanRow[]
}

export interface PlanOffsetsOptions {
  backupId: string
  /** Where the backup is (its manifest holds the captured group offsets). */
  storage: Storage
  /** Where the restore state is: the backup storage, or `restore.state_storage`. */
  stateStorage: Storage
  /** The restore to plan from. Unset: the backup's only completed restore. */
  restoreId?: string
  /** Group ids or `*` patterns; each must match a captured group. Default: every captured group. */
  groups?: string[]
  /** The target cluster, to read current offsets and check it is the one the restore wrote to. */
  cluster?: KafkaCluster
}

/** The plan of group offsets for a completed restore. */
export async function planGroupOffsets(options: PlanOffsetsOptions): Promise<OffsetPlan> {
  const manifest = await requireManifest(options.storage, options.backupId)
  const restore = await findCompletedRestore(options.stateStorage, options.backupId, options.restoreId)
  const restored = restore.partitions.map(state => ({ state, offsetMap: OffsetMap.fromJSON(state.offsetMap) }))
  const sources = new Set(restore.partitions.map(p => `${p.sourceTopic}/${p.sourcePartition}`))
  // Without --groups, every captured group (none is fine); named ones must each match one.
  const groups =
    options.groups === undefined
      ? manifest.consumerGroups.filter(group => group.offsets.some(o => sources.has(`${o.topic}/${o.partition}`)))
      : selectCapturedGroups(manifest, sources, options.groups, '--groups')
  const translated = translateGroupOffsets(groups, restored)
  const current = options.cluster
    ? await currentOffsets(options.cluster, restore, planTargets(translated))
    : new Map<string, bigint>()
  const byTarget = new Map(restore.partitions.map(p => [`${p.targetTopic}/${p.targetPartition}`, p] as const))
  const rows: OffsetPlanRow[] = translated.flatMap(group =>
    group.offsets.map(offset => {
      const source = byTarget.get(`${offset.topic}/${offset.partition}`)!
      const now = current.get(groupPartitionKey(group.groupId, offset.topic, offset.partition))
      return {
        groupId: group.groupId,
        sourceTopic: source.sourceTopic,
        sourcePartition: offset.sourcePartition ?? source.sourcePartition,
        sourceOffset: offset.sourceOffset,
        targetTopic: offset.topic,
        targetPartition: offset.partition,
        targetOffset: offset.targetOffset,
        currentOffset: now === undefined ? null : now.toString()
      }
    })
  )
  return { backupId: options.backupId, restoreId: restore.restoreId, rows }
}

/** The restore `restoreId`, or the backup's only completed one; refused unless it is complete. */
export async function findCompletedRestore(
  storage: Storage,
  backupId: string,
  restoreId?: string
): Promise<RestoreState> {
  if (restoreId !== undefined) {
    const state = await readRestoreState(storage, backupId, restoreId)
    if (!state) {
      throw new BackupError(
        'KB_BACKUP_NOT_FOUND',
        `backup ${backupId} has no restore ${restoreId} at ${storage.location}`,
        {
          backupId,
          restoreId
        }
      )
    }
    if (state.status !== 'complete') {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `restore ${restoreId} of backup ${backupId} is ${state.status}, not complete; run the restore again until it completes, then plan its offsets`,
        { path: '--restore-id', backupId, restoreId, found: state.status }
      )
    }
    return state
  }
  const complete = (await listRestoreStates(storage, backupId)).filter(state => state.status === 'complete')
  if (complete.length === 1) return complete[0]!
  throw new BackupError(
    'KB_CONFIG_INVALID',
    complete.length === 0
      ? `backup ${backupId} has no completed restore at ${storage.location}; restore it first`
      : `backup ${backupId} has ${complete.length} completed restores (${complete.map(s => s.restoreId).join(', ')}); choose one with --restore-id`,
    { path: '--restore-id', backupId }
  )
}

function groupPartitionKey(groupId: string, topic: string, partition: number): string {
  return `${groupId}\u0000${topic}\u0000${partition}`
}

type Targets = Map<string, Map<string, Set<number>>>

function planTargets(
  groups: Array<{ groupId: string; offsets: Array<{ topic: string; partition: number }> }>
): Targets {
  const targets: Targets = new Map()
  for (const group of groups) {
    const topics = targets.get(group.groupId) ?? new Map<string, Set<number>>()
    for (const { topic, partition } of group.offsets) {
      topics.set(topic, (topics.get(topic) ?? new Set()).add(partition))
    }
    targets.set(group.groupId, topics)
  }
  return targets
}

/**
 * The groups' committed offsets on the target partitions in `targets` (keyed by group, topic and
 * partition; a partition without a commit is absent). Refused when the cluster is not the one
 * the restore wrote to, whose offsets the plan describes.
 */
async function currentOffsets(cluster: KafkaCluster, restore: RestoreState, targets: Targets) {
  const metadata = await cluster.metadata([])
  if (restore.target.clusterId !== null && metadata.id !== restore.target.clusterId) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `restore ${restore.restoreId} wrote to cluster ${restore.target.clusterId}, but target.bootstrap_servers reaches cluster ${metadata.id}; offsets translate only on the cluster the restore wrote to`,
      { path: 'target.bootstrap_servers', expected: restore.target.clusterId, found: metadata.id }
    )
  }
  const result = new Map<string, bigint>()
  if (targets.size === 0) return result
  await cluster.call('reading consumer group offsets', () =>
    Promise.all(
      [...targets].map(async ([groupId, topics]) => {
        const committed = await fetchGroupOffsets(
          cluster,
          groupId,
          [...topics].map(([name, partitions]) => ({ name, partitions: [...partitions] }))
        )
        for (const { topic, partition, offset } of committed) {
          result.set(groupPartitionKey(groupId, topic, partition), offset)
        }
      })
    )
  )
  return result
}

// ---- snapshots -------------------------------------------------------------------------------

export const OFFSET_SNAPSHOT_FORMAT = 'kafka-backup-offset-snapshot'

const snapshotSchema = z.object({
  format: z.literal(OFFSET_SNAPSHOT_FORMAT),
  formatVersion: z.literal(1),
  snapshotId: z.string().min(1),
  backupId: z.string().min(1),
  restoreId: z.string().min(1),
  takenAt: z.string(),
  groups: z.array(
    z.object({
      groupId: z.string().min(1),
      /** offset null: the group had no committed offset there (rollback deletes the one apply made). */
      offsets: z.array(
        z.object({
          topic: z.string().min(1),
          partition: z.int().min(0),
          offset: z.string().regex(/^\d+$/).nullable()
        })
      )
    })
  )
})

export type OffsetSnapshot = z.infer<typeof snapshotSchema>

const snapshotsPrefix = (backupId: string, restoreId: string) => `${backupId}/restores/${restoreId}/offset-snapshots/`

/** The groups' offsets now, on every target partition the plan would commit, before apply changes them. */
function snapshotOf(plan: OffsetPlan, takenAt: Date): OffsetSnapshot {
  const groups = new Map<string, OffsetSnapshot['groups'][number]>()
  for (const row of plan.rows) {
    const group = groups.get(row.groupId) ?? { groupId: row.groupId, offsets: [] }
    group.offsets.push({ topic: row.targetTopic, partition: row.targetPartition, offset: row.currentOffset })
    groups.set(row.groupId, group)
  }
  return {
    format: OFFSET_SNAPSHOT_FORMAT,
    formatVersion: 1,
    // Sortable and safe in object keys: the ISO time with ':' and '.' replaced.
    snapshotId: takenAt.toISOString().replace(/[:.]/g, '-'),
    backupId: plan.backupId,
    restoreId: plan.restoreId,
    takenAt: takenAt.toISOString(),
    groups: [...groups.values()]
  }
}

/** The snapshot `snapshotId` of a restore, or its newest one. */
export async function readOffsetSnapshot(
  storage: Storage,
  backupId: string,
  restoreId: string,
  snapshotId?: string
): Promise<OffsetSnapshot> {
  const prefix = snapshotsPrefix(backupId, restoreId)
  let key: string | undefined
  if (snapshotId !== undefined) {
    key = `${prefix}${snapshotId}.json`
  } else {
    const keys = (await storage.list(prefix)).map(o => o.key).filter(k => k.endsWith('.json'))
    key = keys.sort().at(-1)
  }
  const bytes = key === undefined ? undefined : await storage.get(key).catch(error => notFound(error))
  if (key === undefined || bytes === undefined) {
    throw new BackupError(
      'KB_BACKUP_NOT_FOUND',
      `restore ${restoreId} of backup ${backupId} has no offset snapshot${snapshotId === undefined ? '' : ` ${snapshotId}`} at ${storage.location} (offsets apply takes one)`,
      { backupId, restoreId, snapshotId }
    )
  }
  let parsed: ReturnType<typeof snapshotSchema.safeParse>
  try {
    parsed = snapshotSchema.safeParse(JSON.parse(bytes.toString('utf8')))
  } catch (cause) {
    throw new BackupError('KB_BACKUP_CORRUPT', `offset snapshot ${key} is not valid JSON`, { key, cause })
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `offset snapshot ${key} is damaged at ${issue.path.join('.') || '(top level)'}: ${issue.message}`,
      { key }
    )
  }
  return parsed.data
}

function notFound(error: unknown): undefined {
  if (error instanceof BackupError && error.code === 'KB_STORAGE_NOT_FOUND') return undefined
  throw error
}

// ---- apply and rollback ----------------------------------------------------------------------

export interface ApplyResult {
  snapshot: OffsetSnapshot
  /** Groups committed, in plan order. */
  committed: string[]
}

/**
 * Saves a snapshot of the groups' current offsets, then commits the plan group by group. Every
 * group must have no active members: all are checked before the snapshot (so nothing is written
 * when one is active), and each again right before its commit. A plan made without a cluster has
 * no current offsets: apply plans again with one.
 */
export async function applyGroupOffsets(options: PlanOffsetsOptions & { cluster: KafkaCluster }): Promise<ApplyResult> {
  const { cluster: _, ...withoutCluster } = options
  const groups = [...new Set((await planGroupOffsets(withoutCluster)).rows.map(row => row.groupId))]
  for (const groupId of groups) await assertGroupInactive(options.cluster, groupId)
  // Read the current offsets only once the groups are known to be idle, so the snapshot holds
  // what apply replaces.
  const plan = await planGroupOffsets(options)
  const snapshot = snapshotOf(plan, new Date())
  // A new object per snapshot (never written over): two applies in the same millisecond
  // cannot both record theirs under one id.
  await options.stateStorage.create(
    `${snapshotsPrefix(plan.backupId, plan.restoreId)}${snapshot.snapshotId}.json`,
    Buffer.from(`${JSON.stringify(snapshot, null, 2)}\n`)
  )
  const committed: string[] = []
  for (const groupId of groups) {
    const rows = plan.rows.filter(row => row.groupId === groupId)
    await assertGroupInactive(options.cluster, groupId)
    await commitGroupOffsets(
      options.cluster,
      groupId,
      rows.map(row => ({ topic: row.targetTopic, partition: row.targetPartition, offset: BigInt(row.targetOffset) }))
    )
    committed.push(groupId)
  }
  return { snapshot, committed }
}

/**
 * Puts the groups of `snapshot` back: offsets it recorded are committed again, and offsets the
 * groups did not have then are deleted (OffsetDelete), each group only while it has no active
 * members (checked for all first, then right before each group's change). `groupPatterns`
 * limits it to some of the snapshot's groups.
 */
export async function rollbackGroupOffsets(
  cluster: KafkaCluster,
  snapshot: OffsetSnapshot,
  groupPatterns?: string[]
): Promise<string[]> {
  const wanted = groupPatterns === undefined ? () => true : topicMatcher({ include: groupPatterns })
  const groups = snapshot.groups.filter(group => wanted(group.groupId))
  if (groupPatterns !== undefined && groups.length === 0) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `--groups ${groupPatterns.join(',')} matches none of the groups in snapshot ${snapshot.snapshotId} (${snapshot.groups.map(g => g.groupId).join(', ')})`,
      { path: '--groups', found: groupPatterns.join(',') }
    )
  }
  for (const group of groups) await assertGroupInactive(cluster, group.groupId)
  const rolledBack: string[] = []
  for (const group of groups) {
    await assertGroupInactive(cluster, group.groupId)
    const commits = group.offsets.filter(o => o.offset !== null)
    if (commits.length > 0) {
      await commitGroupOffsets(
        cluster,
        group.groupId,
        commits.map(o => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.offset!) }))
      )
    }
    const deletions = new Map<string, number[]>()
    for (const o of group.offsets) {
      if (o.offset === null) deletions.set(o.topic, [...(deletions.get(o.topic) ?? []), o.partition])
    }
    if (deletions.size > 0) {
      await deleteGroupOffsets(
        cluster,
        group.groupId,
        [...deletions].flatMap(([topic, partitions]) => partitions.map(partition => ({ topic, partition })))
      )
    }
    rolledBack.push(group.groupId)
  }
  return rolledBack
}
