/**
 * What a restore will do, decided before anything is written: which backed-up partitions go
 * to which target topic and partition, which segments overlap the time window, and how much
 * data that is. `dry_run` prints exactly this. A plan is only made from a catalogue that
 * agrees with storage for everything it selects (docs/catalog.md); otherwise the restore is
 * refused before it touches the target.
 */
import {
  layoutProblems,
  type StoredPartition,
  scanStoredPartitions,
  unindexedSegmentProblems
} from '../catalog/audit.ts'
import {
  indexBase,
  type Manifest,
  type PartitionIndex,
  readManifest,
  readPartitionIndexAmong,
  type SegmentEntry,
  type TopicEntry
} from '../catalog/manifest.ts'
import { BackupError, type ErrorCode } from '../errors.ts'
import { mapLimited } from '../slots.ts'
import type { Storage } from '../storage/storage.ts'
import { topicMatcher } from '../topics.ts'
import { mayOverlap, type TimeWindow } from './window.ts'

/** Partition indexes read at once while planning (2,000 at once grew V8's heap to 170 MiB, docs/benchmarks.md). */
const INDEX_READS_AT_ONCE = 64

export interface PlanOptions {
  backupId: string
  topics: { include: string[]; exclude: string[] }
  /** Only these source partitions of a topic (`*`: of every topic); a topic not named keeps all. */
  sourcePartitions: Record<string, number[]>
  topicMapping: Record<string, string>
  /** Per source topic (`*`: every topic not named): source partition -> target partition. */
  partitionMapping: Record<string, Record<string, number>>
  window: TimeWindow
  /** Re-partition topics whose target partition count differs from the backup (docs/architecture.md). */
  repartition?: boolean
  /** Partition count of target topics the restore creates, by source topic. */
  targetPartitions?: Record<string, number>
}

export interface PartitionPlan {
  sourceTopic: string
  sourcePartition: number
  targetTopic: string
  targetPartition: number
  index: PartitionIndex
  segments: SegmentEntry[]
  /** Records and raw bytes of the segments overlapping the window (an upper bound with a window). */
  records: number
  bytes: number
}

export interface TopicPlan {
  sourceTopic: string
  targetTopic: string
  /**
   * Records are re-partitioned by key into `partitionCount` target partitions; `partitions` then
   * holds one entry per source and target partition (docs/architecture.md).
   */
  repartitioned: boolean
  /** The backed-up partition count. */
  manifestPartitionCount: number
  /** Partitions the target topic needs: the source count, or more when mapping says so. */
  partitionCount: number
  configs: Record<string, string>
  partitions: PartitionPlan[]
}

export interface RestorePlan {
  manifest: Manifest
  topics: TopicPlan[]
  records: number
  bytes: number
}

function planTopic(
  topic: TopicEntry,
  options: PlanOptions,
  indexes: Map<number, PartitionIndex>,
  existingCount: number | undefined
): TopicPlan {
  const targetTopic = options.topicMapping[topic.name] ?? topic.name
  const requested = options.targetPartitions?.[topic.name]
  const targetCount = existingCount ?? requested ?? topic.partitionCount
  const repartitioned = options.repartition === true && targetCount !== topic.partitionCount
  const mapped = options.partitionMapping[topic.name] ?? options.partitionMapping['*']
  if (repartitioned && mapped && Object.keys(mapped).length > 0) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `restore.partition_mapping maps partitions of ${topic.name}, which is re-partitioned by key into the ${targetCount} partitions of ${targetTopic} (restore.repartition); remove one of them`,
      { path: 'restore.partition_mapping', topic: topic.name }
    )
  }
  const mapping = options.partitionMapping[topic.name] ?? options.partitionMapping['*'] ?? {}
  const only = options.sourcePartitions[topic.name] ?? options.sourcePartitions['*']
  for (const partition of only ?? []) {
    if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitionCount) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `restore.source_partitions.${topic.name} names partition ${partition}, but the backup has partitions 0..${topic.partitionCount - 1}`,
        {
          path: `restore.source_partitions.${topic.name}`,
          expected: `0..${topic.partitionCount - 1}`,
          found: partition
        }
      )
    }
  }
  const partitions: PartitionPlan[] = []
  for (let sourcePartition = 0; sourcePartition < topic.partitionCount; sourcePartition++) {
    if (only && !only.includes(sourcePartition)) {
      continue
    }
    const index = indexes.get(sourcePartition)
    if (!index) {
      continue
    }
    const segments = index.segments.filter(s => mayOverlap(options.window, BigInt(s.maxTimestamp)))
    const records = segments.reduce((sum, s) => sum + s.recordCount, 0)
    const bytes = segments.reduce((sum, s) => sum + s.uncompressedBytes, 0)
    const targets = repartitioned
      ? Array.from({ length: targetCount }, (_, t) => t)
      : [mapping[String(sourcePartition)] ?? sourcePartition]
    for (const targetPartition of targets) {
      // Re-partitioned: a source partition's records spread over the targets; each entry counts
      // its share (rounded up), so that the plan's totals stay those of the backup.
      partitions.push({
        sourceTopic: topic.name,
        sourcePartition,
        targetTopic,
        targetPartition,
        index,
        segments,
        records: Math.ceil(records / targets.length),
        bytes: Math.ceil(bytes / targets.length)
      })
    }
  }
  const highest = Math.max(-1, ...partitions.map(p => p.targetPartition))
  const needed = Math.max(topic.partitionCount, highest + 1)
  if (!repartitioned && requested !== undefined && existingCount === undefined && requested < needed) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `restore.repartition.partitions.${topic.name} asks for ${requested} partitions, but restoring ${topic.name} partition for partition needs ${needed}; set restore.repartition.enabled: true to re-partition by key`,
      { path: `restore.repartition.partitions.${topic.name}`, expected: `>= ${needed}`, found: requested }
    )
  }
  return {
    sourceTopic: topic.name,
    targetTopic,
    repartitioned,
    manifestPartitionCount: topic.partitionCount,
    partitionCount: repartitioned ? targetCount : Math.max(needed, requested ?? 0),
    configs: topic.configs,
    partitions
  }
}

/**
 * Mappings and partition lists name source topics and partitions; one that names something the
 * backup does not hold would otherwise be silently ignored (a typo restoring into the wrong place).
 */
function assertNamesBackedUpTopics(manifest: Manifest, options: PlanOptions): void {
  const backedUp = new Map(manifest.topics.map(t => [t.name, t]))
  const refuse = (path: string, message: string, found: unknown): never => {
    throw new BackupError('KB_CONFIG_INVALID', `${path} ${message}`, { path, found })
  }
  const keys: Array<[string, string[]]> = [
    ['restore.topic_mapping', Object.keys(options.topicMapping)],
    ['restore.partition_mapping', Object.keys(options.partitionMapping).filter(name => name !== '*')],
    ['restore.source_partitions', Object.keys(options.sourcePartitions).filter(name => name !== '*')],
    ['restore.repartition.partitions', Object.keys(options.targetPartitions ?? {})]
  ]
  for (const [path, names] of keys) {
    for (const name of names) {
      if (!backedUp.has(name)) {
        refuse(
          `${path}.${name}`,
          `names topic ${name}, which is not in backup ${options.backupId} (${[...backedUp.keys()].join(', ')}); keys are source topic names`,
          name
        )
      }
    }
  }
  // A flat mapping (key `*`) names partitions of every topic: each must exist in one of them.
  const widest = Math.max(0, ...manifest.topics.map(t => t.partitionCount))
  for (const [name, mapping] of Object.entries(options.partitionMapping)) {
    const partitionCount = name === '*' ? widest : backedUp.get(name)!.partitionCount
    for (const source of Object.keys(mapping)) {
      if (Number(source) >= partitionCount) {
        refuse(
          `restore.partition_mapping.${name}.${source}`,
          `maps source partition ${source}, but ${name === '*' ? 'no topic of the backup has it; the widest' : `the backup of ${name}`} has partitions 0..${partitionCount - 1}`,
          Number(source)
        )
      }
    }
  }
}

/**
 * `targetCounts` gives the partition counts of the target topics that exist (by target name),
 * which decide whether a topic is re-partitioned; it is asked only with `repartition`.
 */
export async function buildPlan(
  storage: Storage,
  options: PlanOptions,
  targetCounts?: (targetTopics: string[]) => Promise<ReadonlyMap<string, number>>
): Promise<RestorePlan> {
  const manifest = await readManifest(storage, options.backupId)
  if (!manifest) {
    throw new BackupError(
      'KB_BACKUP_NOT_FOUND',
      `no backup ${options.backupId} at ${storage.location} (no manifest under ${options.backupId}/)`,
      { backupId: options.backupId, location: storage.location }
    )
  }
  const matches = topicMatcher(options.topics)
  const selected = manifest.topics.filter(t => matches(t.name))
  if (selected.length === 0) {
    throw new BackupError(
      'KB_TOPIC_NOT_FOUND',
      `restore.topics matches none of the ${manifest.topics.length} topics in backup ${options.backupId} (${manifest.topics.map(t => t.name).join(', ')})`,
      { include: options.topics.include, exclude: options.topics.exclude }
    )
  }
  assertNamesBackedUpTopics(manifest, options)
  const targetOf = (topic: string) => options.topicMapping[topic] ?? topic
  const existingCounts =
    options.repartition && targetCounts ? await targetCounts(selected.map(t => targetOf(t.name))) : new Map()
  // What storage holds must be what the catalogue says, for everything this restore reads:
  // a lost index or entry would otherwise leave records out of a restore that reports success.
  const stored = await scanStoredPartitions(storage, options.backupId)
  const wanted = (topic: string, partition?: number) => {
    const only = options.sourcePartitions[topic] ?? options.sourcePartitions['*']
    return matches(topic) && (partition === undefined || !only || only.includes(partition))
  }
  const problems = layoutProblems(options.backupId, manifest, stored, wanted)
  const topics: TopicPlan[] = []
  for (const topic of selected) {
    const partitions = stored.get(topic.name) ?? new Map<number, StoredPartition>()
    const indexes = new Map<number, PartitionIndex>()
    const planned = [...partitions].filter(
      ([partition, found]) => found.hasIndex && partition < topic.partitionCount && wanted(topic.name, partition)
    )
    // Each index at the revision the scan listed, so that it is checked against the segments the
    // scan found; a bounded number at once (BackupEngine reads its indexes the same way).
    await mapLimited(planned, INDEX_READS_AT_ONCE, async ([partition, found]) => {
      const index = await readPartitionIndexAmong(
        storage,
        options.backupId,
        topic.name,
        partition,
        found.indexKeys ?? []
      )
      if (!index) {
        problems.push({
          severity: 'error',
          code: 'KB_STORAGE_NOT_FOUND',
          message: `${indexBase(options.backupId, topic.name, partition)} disappeared while the restore was planned`,
          topic: topic.name,
          partition
        })
        return
      }
      problems.push(...(await unindexedSegmentProblems(storage, options.backupId, index, found)))
      indexes.set(partition, index)
    })
    topics.push(planTopic(topic, options, indexes, existingCounts.get(targetOf(topic.name))))
  }
  const errors = problems.filter(p => p.severity === 'error')
  if (errors.length > 0) {
    const { code, message, severity: _, ...context } = errors[0]!
    throw new BackupError(
      code as ErrorCode,
      `${message}${errors.length > 1 ? ` (and ${errors.length - 1} more problems)` : ''}; nothing was restored: kafka-backup validate lists every problem`,
      context
    )
  }
  const targets = new Map<string, PartitionPlan>()
  for (const partition of topics.filter(t => !t.repartitioned).flatMap(t => t.partitions)) {
    const key = `${partition.targetTopic}/${partition.targetPartition}`
    const other = targets.get(key)
    if (other) {
      throw new BackupError(
        'KB_CONFIG_INVALID',
        `${other.sourceTopic}/${other.sourcePartition} and ${partition.sourceTopic}/${partition.sourcePartition} would both restore into ${key}; ` +
          'one target partition takes one source partition, so that order and offsets stay exact',
        { path: 'restore.partition_mapping', found: key }
      )
    }
    targets.set(key, partition)
  }
  const all = topics.flatMap(t => t.partitions)
  return {
    manifest,
    topics,
    records: all.reduce((sum, p) => sum + p.records, 0),
    bytes: all.reduce((sum, p) => sum + p.bytes, 0)
  }
}
