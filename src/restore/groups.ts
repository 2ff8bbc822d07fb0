/**
 * Consumer-group offsets of a restore: the groups captured in the backup whose offsets are
 * translated through the offset maps and committed on the target. Groups must have no active
 * members there, checked before anything is written and again right before each commit.
 */
import type { ConsumerGroupEntry } from '../catalog/manifest.ts'
import { BackupError } from '../errors.ts'
import { commitGroupOffsets, groupState } from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { topicMatcher } from '../topics.ts'
import type { RestorePlan } from './plan.ts'
import type { PartitionProgress } from './progress.ts'
import type { CommittedGroup } from './state.ts'

/**
 * The captured groups `patterns` selects that hold offsets of partitions this plan restores.
 * A name or pattern that matches no captured group is refused: a misspelt group would otherwise
 * keep no offsets on the target, and its consumers would start wherever auto.offset.reset says.
 */
export function groupsToReset(plan: RestorePlan, patterns: string[]): ConsumerGroupEntry[] {
  const captured = plan.manifest.consumerGroups.map(g => g.groupId)
  for (const pattern of patterns) {
    const matches = topicMatcher({ include: [pattern] })
    if (!captured.some(matches)) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `restore.consumer_groups names ${pattern}, which matches none of the ${captured.length} consumer groups captured in backup ${plan.manifest.backupId}${captured.length > 0 ? ` (${captured.join(', ')})` : ''}`,
        { path: 'restore.consumer_groups', found: pattern }
      )
    }
  }
  const wanted = topicMatcher({ include: patterns })
  const planned = new Set(plan.topics.flatMap(t => t.partitions.map(p => `${p.sourceTopic}/${p.sourcePartition}`)))
  return plan.manifest.consumerGroups.filter(
    group => wanted(group.groupId) && group.offsets.some(o => planned.has(`${o.topic}/${o.partition}`))
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

/** Translates and commits the offsets of `groups`; returns what was committed. */
export async function commitTranslatedOffsets(
  cluster: KafkaCluster,
  groups: ConsumerGroupEntry[],
  progress: PartitionProgress[]
): Promise<CommittedGroup[]> {
  const bySource = new Map(progress.map(p => [`${p.state.sourceTopic}/${p.state.sourcePartition}`, p]))
  const committed: CommittedGroup[] = []
  for (const group of groups) {
    const offsets: CommittedGroup['offsets'] = []
    for (const entry of group.offsets) {
      const partition = bySource.get(`${entry.topic}/${entry.partition}`)
      if (!partition) {
        continue
      }
      const targetOffset = partition.offsetMap.translate(BigInt(entry.offset), BigInt(partition.state.targetNextOffset))
      offsets.push({
        topic: partition.state.targetTopic,
        partition: partition.state.targetPartition,
        sourceOffset: entry.offset,
        targetOffset: targetOffset.toString()
      })
    }
    if (offsets.length === 0) {
      continue
    }
    await assertGroupInactive(cluster, group.groupId)
    await commitGroupOffsets(
      cluster,
      group.groupId,
      offsets.map(o => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.targetOffset) }))
    )
    committed.push({ groupId: group.groupId, offsets })
  }
  return committed
}
