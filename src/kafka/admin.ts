/**
 * The admin calls the engines need, on our protocol layer: topic listing, offsets (log start,
 * high watermark, last stable offset), topic configs and consumer-group offsets.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { BackupError } from '../errors.ts'
import {
  DESCRIBE_GROUPS,
  decodeDescribeGroups,
  decodeListGroups,
  decodeOffsetCommit,
  decodeOffsetDelete,
  decodeOffsetFetch,
  encodeDescribeGroups,
  encodeListGroups,
  encodeOffsetCommit,
  encodeOffsetDelete,
  encodeOffsetFetch,
  LIST_GROUPS,
  type ListedGroup,
  OFFSET_COMMIT,
  OFFSET_DELETE,
  OFFSET_FETCH
} from './api/groups.ts'
import {
  decodeListOffsets,
  encodeListOffsets,
  LIST_OFFSETS,
  type ListOffsetsTopic,
  OffsetTimestamp
} from './api/list-offsets.ts'
import {
  CREATE_TOPICS,
  DESCRIBE_CONFIGS,
  DYNAMIC_TOPIC_CONFIG,
  decodeCreateTopics,
  decodeDescribeConfigs,
  encodeCreateTopics,
  encodeDescribeConfigs
} from './api/topics.ts'
import type { KafkaCluster } from './cluster.ts'
import { isRetriable, ProtocolError } from './wire/errors.ts'

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
  return (await matchingTopics(cluster, () => true)).topics
}

/**
 * The topics whose names `accept` takes, and how many the cluster has. Only those are described:
 * a cluster's full metadata (every partition of thousands of topics) is megabytes a backup of a
 * few topics does not need.
 */
export async function matchingTopics(
  cluster: KafkaCluster,
  accept: (name: string) => boolean
): Promise<{ topics: TopicInfo[]; listed: number }> {
  const names = await cluster.topicNames()
  const described = await describeListedTopics(cluster, names.filter(accept))
  return { topics: [...described.values()].sort((a, b) => a.name.localeCompare(b.name)), listed: names.length }
}

/**
 * The topics among `names` that exist, by name. Asks metadata for those only, so topics that
 * others create or delete meanwhile (which a listing can name before metadata knows them) do
 * not fail the call.
 */
export async function findTopics(cluster: KafkaCluster, names: string[]): Promise<Map<string, TopicInfo>> {
  const listed = new Set(await cluster.topicNames())
  return describeListedTopics(
    cluster,
    [...new Set(names)].filter(name => listed.has(name))
  )
}

/**
 * Metadata of topics a listing just named. A topic deleted between the listing and the Metadata
 * request fails the whole request (UNKNOWN_TOPIC_OR_PARTITION): it is dropped and the rest
 * asked again, so topics that others delete meanwhile do not fail a backup or a restore.
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
      metadata = await cluster.metadata(wanted)
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

/** The topic of an UNKNOWN_TOPIC_OR_PARTITION metadata error, anywhere in the cause chain. */
function unknownTopicOf(error: unknown): string | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof ProtocolError && cause.errorName === 'UNKNOWN_TOPIC_OR_PARTITION') {
      return cause.topic
    }
  }
  return undefined
}

export type OffsetSpec = 'earliest' | 'latest' | 'lastStable'

/**
 * How long a ListOffsets keeps asking for partitions that have no leader yet or just moved. A
 * topic of 2,000 partitions created a moment before on a loaded broker answered
 * NOT_LEADER_OR_FOLLOWER for longer than five quick attempts (about 3 s) covered.
 */
const LIST_OFFSETS_RETRY_MS = 30_000

/**
 * Offsets per `topic/partition` key: log start, high watermark, or last stable offset. Asked
 * of each partition's leader; a leader that moved or is not elected yet is looked up again.
 */
export async function listOffsets(
  cluster: KafkaCluster,
  partitions: TopicPartition[],
  spec: OffsetSpec
): Promise<Map<string, bigint>> {
  const offsets = new Map<string, bigint>()
  let pending = partitions
  const timestamp = spec === 'earliest' ? OffsetTimestamp.EARLIEST : OffsetTimestamp.LATEST
  const isolationLevel = spec === 'lastStable' ? 1 : 0
  const acl = () => `Describe on topic ${[...new Set(pending.map(p => p.topic))].join(', ')}`
  const deadline = Date.now() + LIST_OFFSETS_RETRY_MS
  for (let attempt = 1; pending.length > 0; attempt++) {
    const metadata = await cluster.metadata([...new Set(pending.map(p => p.topic))])
    const byLeader = new Map<number, ListOffsetsTopic[]>()
    const retry: TopicPartition[] = []
    let lastError: ProtocolError | undefined
    for (const { topic, partition } of pending) {
      const found = metadata.topics.get(topic)?.partitions[partition]
      if (!found || found.leader < 0) {
        retry.push({ topic, partition })
        continue
      }
      addToLeaderRequest(byLeader, found.leader, topic, {
        partitionIndex: partition,
        currentLeaderEpoch: found.leaderEpoch,
        timestamp
      })
    }
    const responses = await Promise.all(
      [...byLeader].map(([leader, topics]) =>
        cluster.call(
          'listing offsets',
          () =>
            cluster.request(
              { broker: leader },
              LIST_OFFSETS.apiKey,
              LIST_OFFSETS.version,
              encodeListOffsets(isolationLevel, topics),
              decodeListOffsets
            ),
          acl()
        )
      )
    )
    for (const topic of responses.flat()) {
      for (const p of topic.partitions) {
        if (p.errorCode === 0) {
          offsets.set(partitionKey(topic.name, p.partitionIndex), p.offset)
          continue
        }
        const error = new ProtocolError(p.errorCode, `ListOffsets of ${topic.name}/${p.partitionIndex}`)
        if (!isRetriable(p.errorCode)) {
          throw cluster.failure('listing offsets', error, acl())
        }
        lastError = error
        retry.push({ topic: topic.name, partition: p.partitionIndex })
      }
    }
    pending = retry
    if (pending.length > 0 && Date.now() >= deadline) {
      const { topic, partition } = pending[0]!
      throw new BackupError(
        'KB_KAFKA',
        `listing offsets of ${topic}/${partition} failed: ${lastError?.message ?? 'the partition has no leader'}`,
        { topic, partition }
      )
    }
    if (pending.length > 0) {
      await sleep(Math.min(100 * 2 ** attempt, 1_000))
    }
  }
  return offsets
}

/** Files a partition's entry in the request to its leader, one entry per topic: how per-partition APIs are sent. */
export function addToLeaderRequest<P>(
  byLeader: Map<number, Array<{ name: string; partitions: P[] }>>,
  leader: number,
  topic: string,
  entry: P
): void {
  const requests = byLeader.get(leader) ?? []
  byLeader.set(leader, requests)
  let request = requests.find(r => r.name === topic)
  if (!request) {
    request = { name: topic, partitions: [] }
    requests.push(request)
  }
  request.partitions.push(entry)
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}/${partition}`
}

async function describeTopics(cluster: KafkaCluster, topics: string[], names?: string[]) {
  if (topics.length === 0) {
    return new Map()
  }
  return cluster.call(
    'describing topic configs',
    () =>
      cluster.request(
        'any',
        DESCRIBE_CONFIGS.apiKey,
        DESCRIBE_CONFIGS.version,
        encodeDescribeConfigs(topics, names),
        decodeDescribeConfigs
      ),
    `DescribeConfigs on topic ${topics.join(', ')}`
  )
}

/** The topic-level overrides (not broker or default values), which a restore re-applies. */
export async function describeTopicConfigs(
  cluster: KafkaCluster,
  topics: string[]
): Promise<Map<string, Record<string, string>>> {
  const result = new Map<string, Record<string, string>>()
  for (const [topic, configs] of await describeTopics(cluster, topics)) {
    const overrides: Record<string, string> = {}
    for (const config of configs) {
      if (config.configSource === DYNAMIC_TOPIC_CONFIG && config.value != null && !config.isSensitive) {
        overrides[config.name] = config.value
      }
    }
    result.set(topic, overrides)
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
  for (const [topic, configs] of await describeTopics(cluster, topics, names)) {
    const values: Record<string, string> = {}
    for (const config of configs) {
      if (config.value != null) {
        values[config.name] = config.value
      }
    }
    result.set(topic, values)
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

/** Every classic and consumer group of the cluster: each broker lists the groups it coordinates. */
async function listGroups(cluster: KafkaCluster): Promise<ListedGroup[]> {
  const { brokers } = await cluster.metadata([])
  const lists = await Promise.all(
    [...brokers.keys()].map(broker =>
      cluster.request(
        { broker },
        LIST_GROUPS.apiKey,
        LIST_GROUPS.version,
        encodeListGroups(['classic', 'consumer']),
        decodeListGroups
      )
    )
  )
  return lists.flat()
}

/**
 * A group's committed offsets (`topics` null: on every partition), as a stable read: the
 * broker holds back offsets of transactions still open (requireStable).
 */
export async function fetchGroupOffsets(
  cluster: KafkaCluster,
  groupId: string,
  topics: Array<{ name: string; partitions: number[] }> | null
): Promise<GroupOffset[]> {
  const offsets = await cluster.request(
    { group: groupId },
    OFFSET_FETCH.apiKey,
    OFFSET_FETCH.version,
    encodeOffsetFetch(groupId, topics, true),
    decodeOffsetFetch
  )
  return offsets.filter(o => o.offset >= 0n)
}

/** Every consumer group's committed offsets on the given topics (groups without any are left out). */
export async function captureGroupOffsets(cluster: KafkaCluster, topics: Set<string>): Promise<GroupOffsets[]> {
  const groups = await cluster.call(
    'listing consumer groups',
    () => listGroups(cluster),
    'Describe on the consumer groups'
  )
  const consumerGroups = groups.filter(g => g.protocolType === 'consumer' || g.protocolType === '')
  if (consumerGroups.length === 0) {
    return []
  }
  const listed = await cluster.call(
    'reading consumer group offsets',
    () => Promise.all(consumerGroups.map(g => fetchGroupOffsets(cluster, g.groupId, null))),
    `Describe on group ${consumerGroups.map(g => g.groupId).join(', ')}`
  )
  const result: GroupOffsets[] = []
  for (const [i, group] of consumerGroups.entries()) {
    const offsets = listed[i]!.filter(o => topics.has(o.topic))
    if (offsets.length > 0) {
      result.push({ groupId: group.groupId, state: group.state || 'Unknown', offsets })
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
    await cluster.request(
      'any',
      CREATE_TOPICS.apiKey,
      CREATE_TOPICS.version,
      encodeCreateTopics([topic], 30_000),
      decodeCreateTopics
    )
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
    const metadata = await cluster.metadata(topics).catch(() => undefined)
    if (metadata && topics.every(t => metadata.topics.get(t)?.partitions.every(p => p.leader >= 0))) {
      return
    }
    await sleep(100)
  }
  throw new BackupError('KB_KAFKA', `topics ${topics.join(', ')} have no leaders after ${timeoutMs / 1000} s`, {
    topics
  })
}

/** A consumer group's state on the cluster (`Empty`, `Stable`, ...; `Dead` when unknown). */
export async function groupState(cluster: KafkaCluster, groupId: string): Promise<string> {
  const states = await cluster.call(`describing consumer group ${groupId}`, () =>
    cluster.request(
      { group: groupId },
      DESCRIBE_GROUPS.apiKey,
      DESCRIBE_GROUPS.version,
      encodeDescribeGroups([groupId]),
      decodeDescribeGroups
    )
  )
  return states.get(groupId) ?? 'Dead'
}

/** Commits offsets for a group (which must have no active members). */
export async function commitGroupOffsets(
  cluster: KafkaCluster,
  groupId: string,
  offsets: Array<{ topic: string; partition: number; offset: bigint }>
): Promise<void> {
  await cluster.call(`committing offsets of consumer group ${groupId}`, () =>
    cluster.request(
      { group: groupId },
      OFFSET_COMMIT.apiKey,
      OFFSET_COMMIT.version,
      encodeOffsetCommit(groupId, offsets),
      decodeOffsetCommit(groupId)
    )
  )
}

/** Deletes a group's committed offsets on some partitions (the group must have no active members). */
export async function deleteGroupOffsets(
  cluster: KafkaCluster,
  groupId: string,
  partitions: TopicPartition[]
): Promise<void> {
  await cluster.call(`deleting offsets of consumer group ${groupId}`, () =>
    cluster.request(
      { group: groupId },
      OFFSET_DELETE.apiKey,
      OFFSET_DELETE.version,
      encodeOffsetDelete(groupId, partitions),
      decodeOffsetDelete(groupId)
    )
  )
}
