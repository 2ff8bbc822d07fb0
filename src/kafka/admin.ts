/**
 * The admin calls the engines need, on top of @platformatic/kafka's Admin client: topic
 * listing, offsets (log start, high watermark, last stable offset), topic configs and
 * consumer-group offsets.
 */
import {
  ConfigResourceTypes,
  ConfigSources,
  FetchIsolationLevels,
  ListOffsetTimestamps,
  listOffsetsV9
} from '@platformatic/kafka'
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
  const names = await cluster.call('listing topics', () => cluster.admin.listTopics({ includeInternals: true }))
  return [...(await describeListedTopics(cluster, names)).values()].sort((a, b) => a.name.localeCompare(b.name))
}

/**
 * The topics among `names` that exist, by name. Asks metadata for those only, so topics that
 * others create or delete meanwhile (which a listing can name before metadata knows them) do
 * not fail the call.
 */
export async function findTopics(cluster: KafkaCluster, names: string[]): Promise<Map<string, TopicInfo>> {
  const listed = new Set(
    await cluster.call('listing topics', () => cluster.admin.listTopics({ includeInternals: true }))
  )
  return describeListedTopics(
    cluster,
    [...new Set(names)].filter(name => listed.has(name))
  )
}

/**
 * Metadata of topics a listing just named. A topic deleted between the listing and the Metadata
 * request fails the whole request ("Unknown topic X."): it is dropped and the rest asked again,
 * so topics that others delete meanwhile do not fail a backup or a restore.
 */
async function describeListedTopics(cluster: KafkaCluster, names: string[]): Promise<Map<string, TopicInfo>> {
  let wanted = names
  for (;;) {
    const found = new Map<string, TopicInfo>()
    if (wanted.length === 0) {
      return found
    }
    let metadata: Awaited<ReturnType<KafkaCluster['metadata']>>
    try {
      metadata = await cluster.metadata(wanted, true)
    } catch (error) {
      const deleted = unknownTopicOf(error)
      if (deleted === undefined || !wanted.includes(deleted)) {
        throw error
      }
      wanted = wanted.filter(name => name !== deleted)
      continue
    }
    for (const name of wanted) {
      const topic = metadata.topics.get(name)
      if (topic) {
        found.set(name, {
          name,
          topicId: topic.id,
          partitionCount: topic.partitionsCount,
          isInternal: isInternalTopic(name)
        })
      }
    }
    return found
  }
}

/** The topic named by @platformatic/kafka's "Unknown topic X." error, anywhere in the cause chain. */
function unknownTopicOf(error: unknown): string | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const match = /^Unknown topic (.+)\.$/.exec(cause.message)
    if (match) {
      return match[1]
    }
  }
  return undefined
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
  const isolationLevel =
    spec === 'lastStable' ? FetchIsolationLevels.READ_COMMITTED : FetchIsolationLevels.READ_UNCOMMITTED
  const topics = [...byTopic].map(([name, ids]) => ({
    name,
    partitions: ids.map(partitionIndex => ({ partitionIndex, timestamp }))
  }))
  const regular = topics.filter(t => !isInternalTopic(t.name))
  const internal = topics.filter(t => isInternalTopic(t.name))
  const listed = [
    ...(regular.length === 0
      ? []
      : await cluster.call(
          'listing offsets',
          () => cluster.admin.listOffsets({ topics: regular, isolationLevel }),
          `Describe on topic ${regular.map(t => t.name).join(', ')}`
        )),
    ...(internal.length === 0 ? [] : await listOffsetsDirect(cluster, internal, isolationLevel))
  ]
  const offsets = new Map<string, bigint>()
  for (const topic of listed) {
    for (const p of topic.partitions) {
      offsets.set(partitionKey(topic.name, p.partitionIndex), p.offset)
    }
  }
  return offsets
}

/**
 * ListOffsets sent to each leader ourselves: the Admin client's own looks partitions up in its
 * metadata cache, which leaves out internal topics (see KafkaCluster.metadata).
 */
async function listOffsetsDirect(
  cluster: KafkaCluster,
  topics: Array<{ name: string; partitions: Array<{ partitionIndex: number; timestamp: bigint }> }>,
  isolationLevel: number
): Promise<Array<{ name: string; partitions: Array<{ partitionIndex: number; offset: bigint }> }>> {
  const metadata = await cluster.metadata(
    topics.map(t => t.name),
    true
  )
  const byLeader = new Map<
    number,
    Array<{
      name: string
      partitions: Array<{ partitionIndex: number; currentLeaderEpoch: number; timestamp: bigint }>
    }>
  >()
  for (const topic of topics) {
    for (const { partitionIndex, timestamp } of topic.partitions) {
      const partition = metadata.topics.get(topic.name)?.partitions[partitionIndex]
      if (!partition || partition.leader < 0) {
        throw new BackupError('KB_KAFKA', `${topic.name}/${partitionIndex} has no leader`, {
          topic: topic.name,
          partition: partitionIndex
        })
      }
      const requests = byLeader.get(partition.leader) ?? []
      byLeader.set(partition.leader, requests)
      let request = requests.find(r => r.name === topic.name)
      if (!request) {
        request = { name: topic.name, partitions: [] }
        requests.push(request)
      }
      request.partitions.push({ partitionIndex, currentLeaderEpoch: partition.leaderEpoch, timestamp })
    }
  }
  const responses = await Promise.all(
    [...byLeader].map(async ([leader, requests]) =>
      cluster.call('listing offsets', async () =>
        listOffsetsV9.api.async(await cluster.connection(metadata, leader), -1, isolationLevel, requests)
      )
    )
  )
  return responses.flatMap(response =>
    response.topics.map(topic => ({
      name: topic.name,
      partitions: topic.partitions.map(p => {
        if (p.errorCode !== 0) {
          throw new BackupError(
            'KB_KAFKA',
            `listing offsets of ${topic.name}/${p.partitionIndex} failed with error ${p.errorCode}`,
            {
              topic: topic.name,
              partition: p.partitionIndex
            }
          )
        }
        return { partitionIndex: p.partitionIndex, offset: p.offset }
      })
    }))
  )
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}/${partition}`
}

async function describeTopics(cluster: KafkaCluster, topics: string[], names?: string[]) {
  if (topics.length === 0) {
    return []
  }
  return cluster.call(
    'describing topic configs',
    () =>
      cluster.admin.describeConfigs({
        resources: topics.map(resourceName => ({
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName,
          configurationKeys: names
        }))
      }),
    `DescribeConfigs on topic ${topics.join(', ')}`
  )
}

/** The topic-level overrides (not broker or default values), which a restore re-applies. */
export async function describeTopicConfigs(
  cluster: KafkaCluster,
  topics: string[]
): Promise<Map<string, Record<string, string>>> {
  const result = new Map<string, Record<string, string>>()
  for (const resource of await describeTopics(cluster, topics)) {
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

/** Effective values (override or broker default) of some configs of each topic. */
export async function topicConfigValues(
  cluster: KafkaCluster,
  topics: string[],
  names: string[]
): Promise<Map<string, Record<string, string>>> {
  const result = new Map<string, Record<string, string>>()
  for (const resource of await describeTopics(cluster, topics, names)) {
    const values: Record<string, string> = {}
    for (const config of resource.configs) {
      if (config.value != null) {
        values[config.name] = config.value
      }
    }
    result.set(resource.resourceName, values)
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
  const groups = await cluster.call(
    'listing consumer groups',
    () => cluster.admin.listGroups({ types: ['classic', 'consumer'] }),
    'Describe on the consumer groups'
  )
  const consumerGroups = [...groups.values()].filter(g => g.protocolType === 'consumer' || g.protocolType === '')
  if (consumerGroups.length === 0) {
    return []
  }
  const listed = await cluster.call(
    'reading consumer group offsets',
    () => cluster.admin.listConsumerGroupOffsets({ groups: consumerGroups.map(g => g.id), requireStable: true }),
    `Describe on group ${consumerGroups.map(g => g.id).join(', ')}`
  )
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

/** Creates a topic; its partitions have no leader for a moment after (see waitForLeaders). */
export async function createTopic(
  cluster: KafkaCluster,
  topic: { name: string; partitions: number; replicationFactor: number; configs: Record<string, string> }
): Promise<void> {
  try {
    await cluster.admin.createTopics({
      topics: [topic.name],
      partitions: topic.partitions,
      replicas: topic.replicationFactor,
      configs: Object.entries(topic.configs).map(([name, value]) => ({ name, value }))
    })
  } catch (error) {
    throw new BackupError('KB_KAFKA', `could not create topic ${topic.name}: ${(error as Error).message}`, {
      cause: error,
      topic: topic.name
    })
  }
}

/** Waits until every partition of `topics` has a leader (a created topic has none at first). */
export async function waitForLeaders(cluster: KafkaCluster, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const metadata = await cluster.metadata(topics, true).catch(() => undefined)
    if (metadata && topics.every(t => metadata.topics.get(t)?.partitions.every(p => p.leader >= 0))) {
      return
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new BackupError('KB_KAFKA', `topics ${topics.join(', ')} have no leaders after ${timeoutMs / 1000} s`, {
    topics
  })
}

/** A consumer group's state on the cluster (`Empty`, `Stable`, ...; `Dead` when unknown). */
export async function groupState(cluster: KafkaCluster, groupId: string): Promise<string> {
  const described = await cluster.call(`describing consumer group ${groupId}`, () =>
    cluster.admin.describeGroups({ groups: [groupId] })
  )
  return String(described.get(groupId)?.state ?? 'Dead')
}

/** Commits offsets for a group (which must have no active members). */
export async function commitGroupOffsets(
  cluster: KafkaCluster,
  groupId: string,
  offsets: Array<{ topic: string; partition: number; offset: bigint }>
): Promise<void> {
  const byTopic = new Map<string, Array<{ partition: number; offset: bigint }>>()
  for (const { topic, partition, offset } of offsets) {
    byTopic.set(topic, [...(byTopic.get(topic) ?? []), { partition, offset }])
  }
  await cluster.call(`committing offsets of consumer group ${groupId}`, () =>
    cluster.admin.alterConsumerGroupOffsets({
      groupId,
      topics: [...byTopic].map(([name, partitionOffsets]) => ({ name, partitionOffsets }))
    })
  )
}
