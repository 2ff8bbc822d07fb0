/**
 * The restore target, before anything is written and once topics are created: every refusal
 * that depends on it, which saved progress still describes it, and the topics the restore
 * creates.
 */
import { BackupError } from '../errors.ts'
import {
  createTopic,
  findTopics,
  listOffsets,
  partitionKey,
  type TopicInfo,
  topicConfigValues,
  waitForLeaders
} from '../kafka/admin.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { ProtocolError } from '../kafka/wire/errors.ts'
import type { Storage } from '../storage/storage.ts'
import type { RestoreOptions } from './engine.ts'
import type { PartitionPlan, RestorePlan, TopicPlan } from './plan.ts'
import { type PartitionState, type RestoreState, readRestoreState, restoreStateBase } from './state.ts'

/**
 * A LogAppendTime topic stamps every record with the time the broker appends it, so restored
 * records would lose their backed-up timestamps. Created topics therefore always use
 * CreateTime, and the restored batches carry the backed-up times (outgoing.ts).
 */
const TIMESTAMP_TYPE = 'message.timestamp.type'
/** The broker refuses records older than this (INVALID_TIMESTAMP): old backups fail mid-restore. */
const BEFORE_MAX_MS = 'message.timestamp.before.max.ms'

/** A topic the restore creates, with the configs it gets. */
export interface TopicToCreate {
  name: string
  partitions: number
  configs: Record<string, string>
}

/** What the checks found on the target, before anything is written. */
export interface TargetCheck {
  /** Existing target topics by name. */
  existing: Map<string, TopicInfo>
  /** Per planned partition (same order): its state, saved and still valid, or fresh. */
  partitions: PartitionState[]
  previous: RestoreState | undefined
  toCreate: TopicToCreate[]
  /** What the restore does differently from a plain copy, and why. */
  notes: string[]
}

/** The oldest record timestamp a topic's restore writes (a bound: whole segments, window start). */
function oldestTimestamp(topic: TopicPlan, window: RestoreOptions['window']): number {
  const oldest = topic.partitions
    .flatMap(p => p.segments.map(s => Number(s.minTimestamp)))
    .filter(t => t >= 0)
    .reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY)
  return window.start === undefined ? oldest : Math.max(oldest, Number(window.start))
}

/**
 * The configs a created target topic gets: the backed-up ones, except what would change or
 * refuse the restored records.
 */
function createdTopicConfigs(topic: TopicPlan, window: RestoreOptions['window'], notes: string[]) {
  const configs: Record<string, string> = { ...topic.configs, [TIMESTAMP_TYPE]: 'CreateTime' }
  if (topic.configs[TIMESTAMP_TYPE] === 'LogAppendTime') {
    notes.push(
      `${topic.targetTopic} is created with ${TIMESTAMP_TYPE}=CreateTime, not the backed-up LogAppendTime, so that restored records keep their backed-up timestamps`
    )
  }
  const beforeMaxMs = topic.configs[BEFORE_MAX_MS]
  const oldest = oldestTimestamp(topic, window)
  if (beforeMaxMs !== undefined && oldest < Date.now() - Number(beforeMaxMs)) {
    delete configs[BEFORE_MAX_MS]
    notes.push(
      `${topic.targetTopic} is created without the backed-up ${BEFORE_MAX_MS}=${beforeMaxMs}: the broker would refuse restored records, which date back to ${new Date(oldest).toISOString()}`
    )
  }
  return configs
}

/**
 * Every refusal that depends on the target, without changing it: missing topics, too few
 * partitions, LogAppendTime topics, timestamp limits the restored records exceed, records
 * already there, and saved progress that no longer matches the target.
 */
export async function checkTarget(
  options: RestoreOptions,
  stateStorage: Storage,
  plan: RestorePlan,
  restoreId: string
): Promise<TargetCheck> {
  const topics = await checkTargetTopics(options, plan)
  const { partitions, previous } = await reconcileState(options, stateStorage, plan, restoreId, topics.existing)
  return { ...topics, partitions, previous }
}

/** The target topics' part of checkTarget: every refusal but those of saved progress. */
export async function checkTargetTopics(
  options: RestoreOptions,
  plan: RestorePlan
): Promise<Pick<TargetCheck, 'existing' | 'toCreate' | 'notes'>> {
  const { cluster, createTopics, allowLogAppendTimeTarget, window } = options
  const existing = await findTopics(
    cluster,
    plan.topics.map(t => t.targetTopic)
  )
  const notes: string[] = []
  const toCreate: TopicToCreate[] = []
  for (const topic of plan.topics) {
    const found = existing.get(topic.targetTopic)
    if (found && found.partitionCount < topic.partitionCount) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `target topic ${topic.targetTopic} has ${found.partitionCount} partitions; restoring ${topic.sourceTopic} needs ${topic.partitionCount}`,
        { topic: topic.targetTopic, expected: topic.partitionCount, found: found.partitionCount }
      )
    }
    if (!found && !createTopics) {
      throw new BackupError(
        'KB_TOPIC_NOT_FOUND',
        `target topic ${topic.targetTopic} does not exist; create it or set restore.create_topics: true`,
        { topic: topic.targetTopic }
      )
    }
    if (!found) {
      toCreate.push({
        name: topic.targetTopic,
        partitions: topic.partitionCount,
        configs: createdTopicConfigs(topic, window, notes)
      })
    }
  }
  const existingTargets = plan.topics.filter(t => existing.has(t.targetTopic))
  const values = await topicConfigValues(
    cluster,
    existingTargets.map(t => t.targetTopic),
    [TIMESTAMP_TYPE, BEFORE_MAX_MS]
  )
  for (const topic of existingTargets) {
    const name = topic.targetTopic
    const beforeMaxMs = values.get(name)?.[BEFORE_MAX_MS]
    const oldest = oldestTimestamp(topic, window)
    if (beforeMaxMs !== undefined && oldest < Date.now() - Number(beforeMaxMs)) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `target topic ${name} has ${BEFORE_MAX_MS}=${beforeMaxMs}: the broker would refuse restored records, which date back to ${new Date(oldest).toISOString()}; raise it on ${name} or restore into a new topic`,
        { topic: name, found: beforeMaxMs }
      )
    }
    if (values.get(name)?.[TIMESTAMP_TYPE] !== 'LogAppendTime') {
      continue
    }
    if (!allowLogAppendTimeTarget) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `target topic ${name} has ${TIMESTAMP_TYPE}=LogAppendTime: the broker would replace every restored timestamp with the time of the restore; ` +
          `restore into a new topic (created with CreateTime), set ${TIMESTAMP_TYPE}=CreateTime on ${name}, or set restore.allow_log_append_time_target: true to accept restore-time timestamps`,
        { path: 'restore.allow_log_append_time_target', topic: name, found: 'LogAppendTime' }
      )
    }
    notes.push(
      `${name} has ${TIMESTAMP_TYPE}=LogAppendTime: restored records get the time of the restore as their timestamp (restore.allow_log_append_time_target)`
    )
  }
  return { existing, toCreate, notes }
}

/** Keyed by source and target: a re-partitioned topic has one state per pair of them. */
export const pairKey = (p: {
  sourceTopic: string
  sourcePartition: number
  targetTopic: string
  targetPartition: number
}) => `${p.sourceTopic}/${p.sourcePartition}>${p.targetTopic}/${p.targetPartition}`

/** The target's log start and end offsets of `planned` partitions in existing topics. */
export async function targetOffsets(
  cluster: RestoreOptions['cluster'],
  planned: PartitionPlan[],
  existing: ReadonlyMap<string, TopicInfo>
): Promise<{ logStart: Map<string, bigint>; highWatermark: Map<string, bigint> }> {
  // Once each: the pairs of a re-partitioned topic share their target partitions.
  const targets = [
    ...new Map(
      planned
        .filter(p => existing.has(p.targetTopic))
        .map(p => [
          partitionKey(p.targetTopic, p.targetPartition),
          { topic: p.targetTopic, partition: p.targetPartition }
        ])
    ).values()
  ]
  const [logStart, highWatermark] = await Promise.all([
    listOffsets(cluster, targets, 'earliest'),
    listOffsets(cluster, targets, 'latest')
  ])
  return { logStart, highWatermark }
}

/** What one partition's reconciliation needs to know besides its plan and saved state. */
export interface PartitionTarget {
  /** The saved state was made on the target topic that exists now (same topic id). */
  sameTopic: boolean
  logStart: bigint
  highWatermark: bigint
  /** Where the saved state is, for messages. */
  stateFile: string
  allowNonEmptyTarget: boolean
  repartitioned: boolean
}

/**
 * The saved state of planned partition `p` if it still describes the target, else a fresh one
 * (`saved` is then discarded: the caller warns). Saved progress is for one target topic (its
 * id): a topic deleted and recreated since (or never created before a kill) starts over. The
 * target must still hold what the restore wrote.
 */
export function reconcilePartition(
  p: PartitionPlan,
  state: PartitionState | undefined,
  target: PartitionTarget
): PartitionState {
  const { sameTopic, logStart: start, highWatermark: end, stateFile } = target
  const key = partitionKey(p.targetTopic, p.targetPartition)
  if (state && sameTopic) {
    refusePrunedPastState(p, state, stateFile)
    if (start > BigInt(state.targetStartOffset) && state.records > 0) {
      throw new BackupError(
        'KB_TARGET_CHANGED',
        `target partition ${key} starts at offset ${start}, but restore state ${stateFile} records restored records from ${state.targetStartOffset}: records this restore wrote were deleted (retention or DeleteRecords); ` +
          `delete topic ${p.targetTopic} and run the restore again (a recreated topic is restored from the start)`,
        {
          topic: p.targetTopic,
          partition: p.targetPartition,
          offset: state.targetStartOffset,
          found: start.toString()
        }
      )
    }
    if (end < BigInt(state.targetNextOffset)) {
      throw new BackupError(
        'KB_TARGET_CHANGED',
        `target partition ${key} ends at ${end}, but restore state ${stateFile} records restored records up to ${state.targetNextOffset}: records this restore wrote are gone; ` +
          `delete topic ${p.targetTopic} and run the restore again (a recreated topic is restored from the start)`,
        {
          topic: p.targetTopic,
          partition: p.targetPartition,
          offset: state.targetNextOffset,
          found: end.toString()
        }
      )
    }
    if (state.done && BigInt(p.index.nextOffset) > BigInt(state.sourceNextOffset) && state.repartitioned) {
      // The pairs of a re-partitioned topic fill each target partition one source after the
      // other: new records of one source cannot be appended after those of the next.
      throw new BackupError(
        'KB_TARGET_CHANGED',
        `the backup of ${p.sourceTopic}/${p.sourcePartition} grew to offset ${p.index.nextOffset} since restore state ${stateFile} completed its re-partitioned restore into ${p.targetTopic}; restore into a new topic (restore.topic_mapping)`,
        { topic: p.targetTopic, partition: p.targetPartition, offset: state.sourceNextOffset }
      )
    }
    if (state.done && BigInt(p.index.nextOffset) > BigInt(state.sourceNextOffset)) {
      // The backup grew since this restore completed: the new records continue the partition,
      // unless something else wrote to it in between.
      if (end > BigInt(state.targetNextOffset)) {
        throw new BackupError(
          'KB_TARGET_CHANGED',
          `the backup of ${p.sourceTopic}/${p.sourcePartition} grew to offset ${p.index.nextOffset} since restore state ${stateFile} completed at ${state.sourceNextOffset}, ` +
            `but target partition ${key} received ${end - BigInt(state.targetNextOffset)} other records since; restore into a new topic (restore.topic_mapping)`,
          {
            topic: p.targetTopic,
            partition: p.targetPartition,
            offset: state.targetNextOffset,
            found: end.toString()
          }
        )
      }
      state.done = false
    }
    return state
  }
  if (end > start && !target.allowNonEmptyTarget) {
    throw new BackupError(
      'KB_TARGET_NOT_EMPTY',
      `target partition ${key} already holds ${end - start} records; restore into an empty topic, or set restore.allow_non_empty_target: true to append after them`,
      { topic: p.targetTopic, partition: p.targetPartition, found: (end - start).toString() }
    )
  }
  return freshState(p, end, target.repartitioned)
}

/**
 * The saved state of each planned partition if it still describes the target, else a fresh
 * one (reconcilePartition). A partition of a version-2 state that names no id for its topic
 * starts over (nothing was produced to it).
 */
async function reconcileState(
  options: RestoreOptions,
  stateStorage: Storage,
  plan: RestorePlan,
  restoreId: string,
  existing: Map<string, TopicInfo>
): Promise<{ partitions: PartitionState[]; previous: RestoreState | undefined }> {
  const { cluster, backupId, allowNonEmptyTarget, onWarning } = options
  const previous = await readRestoreState(stateStorage, backupId, restoreId)
  const stateFile = `${stateStorage.location}/${restoreStateBase(backupId, restoreId)}`
  const saved = new Map((previous?.partitions ?? []).map(p => [pairKey(p), p]))
  const planned = plan.topics.flatMap(t => t.partitions)
  const repartitioned = new Set(plan.topics.filter(t => t.repartitioned).map(t => t.targetTopic))
  const { logStart, highWatermark } = await targetOffsets(cluster, planned, existing)
  const discarded = new Set<string>()
  const partitions: PartitionState[] = []
  for (const p of planned) {
    const target = partitionKey(p.targetTopic, p.targetPartition)
    const state = saved.get(pairKey(p))
    const topicId = existing.get(p.targetTopic)?.topicId
    const sameTopic =
      topicId !== undefined && (previous?.formatVersion === 1 || previous?.targetTopicIds?.[p.targetTopic] === topicId)
    const reconciled = reconcilePartition(p, state, {
      sameTopic,
      logStart: logStart.get(target) ?? 0n,
      highWatermark: highWatermark.get(target) ?? 0n,
      stateFile,
      allowNonEmptyTarget,
      repartitioned: repartitioned.has(p.targetTopic)
    })
    if (state && reconciled !== state && (state.records > 0 || state.done) && !discarded.has(p.targetTopic)) {
      discarded.add(p.targetTopic)
      onWarning?.(discardedMessage(stateFile, p.targetTopic, topicId), { topic: p.targetTopic })
    }
    partitions.push(reconciled)
  }
  return { partitions, previous }
}

/** The warning when saved progress is for a target topic that is gone or was recreated. */
export function discardedMessage(stateFile: string, topic: string, topicId: string | undefined): string {
  return `restore state ${stateFile} records progress on target topic ${topic} ${topicId === undefined ? 'which no longer exists' : 'under another topic id (deleted and recreated since)'}: restoring it again from the start`
}

/**
 * Creates the target topics and waits until each partition has a leader. With `concurrent`
 * (restore workers all create the topics they need at once), a topic another worker created
 * first is fine when it is what this one would create: same partition count and the same
 * values of the configs it would set; otherwise the restore is refused. Returns the topics
 * this call created.
 */
export async function createTargetTopics(
  cluster: KafkaCluster,
  topics: TopicToCreate[],
  replicationFactor: number,
  concurrent = false
): Promise<string[]> {
  const created: string[] = []
  for (const topic of topics) {
    try {
      await createTopic(cluster, { ...topic, replicationFactor })
      created.push(topic.name)
    } catch (error) {
      const cause = (error as Error).cause
      if (!concurrent || !(cause instanceof ProtocolError) || cause.errorName !== 'TOPIC_ALREADY_EXISTS') {
        throw error
      }
      await assertCreatedAlike(cluster, topic)
    }
  }
  if (topics.length > 0) {
    await waitForLeaders(
      cluster,
      topics.map(t => t.name)
    )
  }
  return created
}

/** `topic`, created meanwhile by someone else, is what this restore would have created. */
async function assertCreatedAlike(cluster: KafkaCluster, topic: TopicToCreate): Promise<void> {
  const found = (await findTopics(cluster, [topic.name])).get(topic.name)
  const configs = (await topicConfigValues(cluster, [topic.name], Object.keys(topic.configs))).get(topic.name) ?? {}
  const differs = Object.entries(topic.configs).find(([key, value]) => configs[key] !== value)
  if (found?.partitionCount === topic.partitions && !differs) {
    return
  }
  const what = differs
    ? `${differs[0]}=${configs[differs[0]]}, not ${differs[1]}`
    : `${found?.partitionCount ?? 'no'} partitions, not ${topic.partitions}`
  throw new BackupError(
    'KB_TARGET_CHANGED',
    `target topic ${topic.name} was created by someone else while this restore was creating it, with ${what}; delete it and run the restore again, or restore into a new topic (restore.topic_mapping)`,
    { topic: topic.name }
  )
}

/**
 * Sizes merged batches to each target topic's max.message.bytes, and warns when its time
 * retention would delete restored records right away (old data restored into a topic with
 * the default 7 days is gone as soon as its segment rolls).
 */
export async function coalesceLimits(options: RestoreOptions, plan: RestorePlan): Promise<Map<string, number>> {
  const { cluster, coalesceMaxBytes } = options
  const limits = new Map<string, number>()
  const values = await topicConfigValues(
    cluster,
    plan.topics.map(t => t.targetTopic),
    ['max.message.bytes', 'retention.ms', 'cleanup.policy']
  )
  for (const topic of plan.topics) {
    const configs = values.get(topic.targetTopic) ?? {}
    const maxMessageBytes = Number(configs['max.message.bytes'])
    if (maxMessageBytes > 0) {
      // Leave room for the batch header and the request framing around it.
      limits.set(topic.targetTopic, Math.min(coalesceMaxBytes, maxMessageBytes - 1024))
    }
    const retentionMs = Number(configs['retention.ms'])
    const oldest = oldestTimestamp(topic, options.window)
    if (configs['cleanup.policy']?.includes('delete') && retentionMs > 0 && oldest < Date.now() - retentionMs) {
      options.onWarning?.(
        `target topic ${topic.targetTopic} has retention.ms=${retentionMs}, but restored records date back to ${new Date(oldest).toISOString()}: ` +
          `the broker deletes them as soon as their segment rolls; set retention.ms=-1 (or longer) on ${topic.targetTopic}`,
        { topic: topic.targetTopic, retentionMs }
      )
    }
  }
  return limits
}

/**
 * A restore stopped before the backup was pruned past where it stood would continue at the new
 * start and silently leave out the records in between (docs/retention.md).
 */
function refusePrunedPastState(p: PartitionPlan, state: PartitionState, stateFile: string): void {
  const resumeAt = BigInt(state.sourceNextOffset)
  if (state.done || resumeAt < 0n || resumeAt >= BigInt(p.index.startOffset)) {
    return
  }
  throw new BackupError(
    'KB_BACKUP_PRUNED',
    `restore state ${stateFile} stopped at source offset ${resumeAt} of ${p.sourceTopic}/${p.sourcePartition}, but the backup was pruned up to offset ${p.index.startOffset} since: ` +
      `the records in between are no longer in the backup; delete topic ${p.targetTopic} and restore again, or restore into a new topic (restore.topic_mapping)`,
    {
      topic: p.sourceTopic,
      partition: p.sourcePartition,
      offset: resumeAt.toString(),
      expected: `>= ${p.index.startOffset}`,
      found: resumeAt.toString()
    }
  )
}

function freshState(plan: PartitionPlan, targetEnd: bigint, repartitioned: boolean): PartitionState {
  return {
    sourceTopic: plan.sourceTopic,
    sourcePartition: plan.sourcePartition,
    targetTopic: plan.targetTopic,
    targetPartition: plan.targetPartition,
    sourceNextOffset: '-1',
    targetStartOffset: targetEnd.toString(),
    targetNextOffset: targetEnd.toString(),
    records: 0,
    bytes: 0,
    erasedRecords: 0,
    done: false,
    offsetMap: [],
    ...(repartitioned ? { repartitioned } : {})
  }
}
