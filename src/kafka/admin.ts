/**
 * The admin calls the engines need, on top of @platformatic/kafka's Admin client: topic
 * listing, offsets (log start, high watermark, last stable offset), topic configs and
 * consumer-group offsets.
 */
import { ConfigResourceTypes, ConfigSources, FetchIsolationLevels, ListOffsetTimestamps } from '@platformatic/kafka'
import { BackupError } from '../errors.ts'
import type { KafkaCluster } from './cluster.ts'

export interface TopicPartition {
  topic: string
  partition: number
}

export interface TopicInfo {
  name: string
  topicId: string
  partitionCount: number
  isInternal: boolean
}

/** Kafka's own internal topics; `__`-prefixed topics of other tools count as internal too. */
export function isInternalTopic(name: string): boolean {
  return name.startsWith('__') || name.startsWith('_confluent') || name === '_schemas'
}

export async function listTopics(cluster: KafkaCluster): Promise<TopicInfo[]> {
  const names = await cluster.admin.listTopics({ includeInternals: true })
  if (names.length === 0) {
    return []
  }
  const metadata = await cluster.metadata(names, true)
  return names
    .map(name => {
      const topic = metadata.topics.get(name)
      return topic
        ? { name, topicId: topic.id, partitionCount: topic.partitionsCount, isInternal: isInternalTopic(name) }
        : undefined
    })
    .filter(topic => topic !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name))
}

export type OffsetSpec = 'earliest' | 'latest' | 'lastStable'

/** Offsets per `topic/partition` key: log start, high watermark, or last stable offset. */
export async function listOffsets(
  cluster: KafkaCluster,
  partitions: TopicPartition[],
  spec: OffsetSpec
): Promise<Map<string, bigint>> {
  const byTopic = new Map<string, number[]>()
  for (const { topic, partition } of partitions) {
    byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition])
  }
  if (byTopic.size === 0) {
    return new Map()
  }
  const timestamp = spec === 'earliest' ? ListOffsetTimestamps.EARLIEST : ListOffsetTimestamps.LATEST
  const listed = await cluster.admin.listOffsets({
    topics: [...byTopic].map(([name, ids]) => ({
      name,
      partitions: ids.map(partitionIndex => ({ partitionIndex, timestamp }))
    })),
    isolationLevel: spec === 'lastStable' ? FetchIsolationLevels.READ_COMMITTED : FetchIsolationLevels.READ_UNCOMMITTED
  })
  const offsets = new Map<string, bigint>()
  for (const topic of listed) {
    for (const p of topic.partitions) {
      offsets.set(partitionKey(topic.name, p.partitionIndex), p.offset)
    }
  }
  return offsets
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}/${partition}`
}

/** The topic-level overrides (not broker or default values), which a restore re-applies. */
export async function describeTopicConfigs(
  cluster: KafkaCluster,
  topics: string[]
): Promise<Map<string, Record<string, string>>> {
  const result = new Map<string, Record<string, string>>()
  if (topics.length === 0) {
    return result
  }
  const described = await cluster.admin.describeConfigs({
    resources: topics.map(resourceName => ({ resourceType: ConfigResourceTypes.TOPIC, resourceName }))
  })
  for (const resource of described) {
    const overrides: Record<string, string> = {}
    for (const config of resource.configs) {
      if (config.configSource === ConfigSources.DYNAMIC_TOPIC_CONFIG && config.value != null && !config.isSensitive) {
        overrides[config.name] = config.value
      }
    }
    result.set(resource.resourceName, overrides)
  }
  return result
}

/** Each topic's effective max.message.bytes (override or broker default): the largest batch it takes. */
export async function topicMaxMessageBytes(cluster: KafkaCluster, topics: string[]): Promise<Map<string, number>> {
  const result = new Map<string, number>()
  if (topics.length === 0) {
    return result
  }
  const described = await cluster.admin.describeConfigs({
    resources: topics.map(resourceName => ({
      resourceType: ConfigResourceTypes.TOPIC,
      resourceName,
      configurationKeys: ['max.message.bytes']
    }))
  })
  for (const resource of described) {
    const value = Number(resource.configs.find(c => c.name === 'max.message.bytes')?.value)
    if (Number.isFinite(value) && value > 0) {
      result.set(resource.resourceName, value)
    }
  }
  return result
}

export interface GroupOffset {
  topic: string
  partition: number
  offset: bigint
  leaderEpoch: number
  metadata: string | null
}

export interface GroupOffsets {
  groupId: string
  state: string
  offsets: GroupOffset[]
}

/** Every consumer group's committed offsets on the given topics (groups without any are left out). */
export async function captureGroupOffsets(cluster: KafkaCluster, topics: Set<string>): Promise<GroupOffsets[]> {
  const groups = await cluster.admin.listGroups({ types: ['classic', 'consumer'] })
  const consumerGroups = [...groups.values()].filter(g => g.protocolType === 'consumer' || g.protocolType === '')
  if (consumerGroups.length === 0) {
    return []
  }
  let listed: Awaited<ReturnType<KafkaCluster['admin']['listConsumerGroupOffsets']>>
  try {
    listed = await cluster.admin.listConsumerGroupOffsets({
      groups: consumerGroups.map(g => g.id),
      requireStable: true
    })
  } catch (error) {
    throw new BackupError('KB_KAFKA', `could not read consumer group offsets: ${(error as Error).message}`, {
      cause: error
    })
  }
  const result: GroupOffsets[] = []
  for (const group of listed) {
    const offsets: GroupOffset[] = []
    for (const topic of group.topics) {
      if (!topics.has(topic.name)) {
        continue
      }
      for (const p of topic.partitions) {
        if (p.committedOffset >= 0n) {
          offsets.push({
            topic: topic.name,
            partition: p.partitionIndex,
            offset: p.committedOffset,
            leaderEpoch: p.committedLeaderEpoch,
            metadata: p.metadata ?? null
          })
        }
      }
    }
    if (offsets.length > 0) {
      const state = groups.get(group.groupId)?.state ?? 'Unknown'
      result.push({ groupId: group.groupId, state, offsets })
    }
  }
  return result.sort((a, b) => a.groupId.localeCompare(b.groupId))
}
