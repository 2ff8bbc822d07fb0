/**
 * Consumer-group offsets of a restore: the groups captured in the backup whose offsets are
 * translated through the offset maps and committed on the target. Groups must have no active
 * members there, checked before anything is written and again right before each commit.
 */
import type { ConsumerGroupEntry, Manifest } from '../catalog/manifest.ts'
import { BackupError } from '../errors.ts'
import { commitGroupOffsets, groupState } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { topicMatcher } from '../topics.ts'
import type { OffsetMap } from './offset-map.ts'
import type { RestorePlan } from './plan.ts'
import type { PartitionProgress } from './progress.ts'
import type { CommittedGroup, PartitionState } from './state.ts'

/**
 * The captured groups `patterns` selects that hold offsets of partitions this plan restores.
 * A name or pattern that matches no captured group is refused: a misspelt group would otherwise
 * keep no offsets on the target, and its consumers would start wherever auto.offset.reset says.
 */
export function groupsToReset(plan: RestorePlan, patterns: string[]): ConsumerGroupEntry[] {
  const planned = new Set(plan.topics.flatMap(t => t.partitions.map(p => `${p.sourceTopic}/${p.sourcePartition}`)))
  return selectCapturedGroups(plan.manifest, planned, patterns, 'restore.consumer_groups')
}

/**
 * The groups of `manifest` that `patterns` selects and that hold offsets of a source partition
 * in `restored` (`topic/partition`); a name or pattern (other than a bare `*`) matching no
 * captured group is refused, naming `path` (the key or flag that gave it).
 */
export function selectCapturedGroups(
  manifest: Manifest,
  restored: ReadonlySet<string>,
  patterns: string[],
  path: string
): ConsumerGroupEntry[] {
  const captured = manifest.consumerGroups.map(g => g.groupId)
  // A bare `*` asks for whatever was captured, none included: it cannot be a misspelt name.
  for (const pattern of patterns.filter(p => p !== '*')) {
    const matches = topicMatcher({ include: [pattern] })
    if (!captured.some(matches)) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `${path} names ${pattern}, which matches none of the ${captured.length} consumer groups captured in backup ${manifest.backupId}${captured.length > 0 ? ` (${captured.join(', ')})` : ''}`,
        { path, found: pattern }
      )
    }
  }
  const wanted = topicMatcher({ include: patterns })
  return manifest.consumerGroups.filter(
    group => wanted(group.groupId) && group.offsets.some(o => restored.has(`${o.topic}/${o.partition}`))
  )
}

export async function assertGroupInactive(cluster: KafkaCluster, groupId: string): Promise<void> {
  const state = await groupState(cluster, groupId)
  if (!['Empty', 'Dead', 'EMPTY', 'DEAD'].includes(state)) {
    throw new BackupError(
      'KB_GROUP_ACTIVE',
      `consumer group ${groupId} is ${state} on the target; stop its consumers before resetting its offsets`,
      { groupId, found: state }
    )
  }
}

/** A restored partition as far as offset translation needs it (PartitionProgress is one). */
export interface TranslatablePartition {
  state: PartitionState
  offsetMap: OffsetMap
}

/**
 * The target offsets of `groups`' captured offsets on the partitions in `restored`: each
 * committed source offset C goes to the target offset of the first restored record at or after
 * C (OffsetMap.translate), so a consumer may re-read a record but never skips one.
 *
 * A re-partitioned target partition is fed by several source partitions: it gets the smallest
 * such target offset over them, taking a source partition the group has no offset for as not
 * read at all; when no record it had not read is there, the partition's end. A group with no
 * offset on any of them gets none there.
 */
export function translateGroupOffsets(
  groups: ConsumerGroupEntry[],
  restored: TranslatablePartition[]
): CommittedGroup[] {
  const byTarget = new Map<string, TranslatablePartition[]>()
  for (const partition of restored) {
    const key = `${partition.state.targetTopic}/${partition.state.targetPartition}`
    byTarget.set(key, [...(byTarget.get(key) ?? []), partition])
  }
  const translated: CommittedGroup[] = []
  for (const group of groups) {
    const committed = new Map(group.offsets.map(o => [`${o.topic}/${o.partition}`, BigInt(o.offset)]))
    const offsets: CommittedGroup['offsets'] = []
    for (const feeding of byTarget.values()) {
      const sourceOffsets = feeding.map(p => committed.get(`${p.state.sourceTopic}/${p.state.sourcePartition}`))
      if (sourceOffsets.every(offset => offset === undefined)) {
        continue
      }
      const { targetTopic, targetPartition } = feeding[0]!.state
      const targetEnd = feeding.map(p => BigInt(p.state.targetNextOffset)).reduce((a, b) => (a > b ? a : b))
      let targetOffset = targetEnd
      // Reported with the source partition that decided the offset (the first with one, when none did).
      let decidedBy = sourceOffsets.findIndex(offset => offset !== undefined)
      for (const [i, partition] of feeding.entries()) {
        const first = partition.offsetMap.firstAtOrAfter(sourceOffsets[i] ?? -1n)
        if (first !== undefined && first < targetOffset) {
          targetOffset = first
          decidedBy = i
        }
      }
      offsets.push({
        topic: targetTopic,
        partition: targetPartition,
        sourcePartition: feeding[decidedBy]!.state.sourcePartition,
        sourceOffset: (sourceOffsets[decidedBy] ?? -1n).toString(),
        targetOffset: targetOffset.toString()
      })
    }
    if (offsets.length > 0) {
      translated.push({ groupId: group.groupId, offsets })
    }
  }
  return translated
}

/** Translates and commits the offsets of `groups`; returns what was committed. */
export async function commitTranslatedOffsets(
  cluster: KafkaCluster,
  groups: ConsumerGroupEntry[],
  progress: PartitionProgress[]
): Promise<CommittedGroup[]> {
  const committed: CommittedGroup[] = []
  for (const group of translateGroupOffsets(groups, progress)) {
    await assertGroupInactive(cluster, group.groupId)
    await commitGroupOffsets(
      cluster,
      group.groupId,
      group.offsets.map(o => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.targetOffset) }))
    )
    committed.push(group)
  }
  return committed
}
