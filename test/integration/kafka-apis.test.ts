/**
 * Each Kafka API of our protocol layer (src/kafka/wire, src/kafka/api) against the real broker,
 * checked against what another client (@platformatic/kafka, via the test cluster's `admin`)
 * sets up and reads back.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import {
  captureGroupOffsets,
  commitGroupOffsets,
  createTopic,
  deleteGroupOffsets,
  describeTopicConfigs,
  fetchGroupOffsets,
  findTopics,
  groupState,
  listOffsets,
  listTopics,
  matchingTopics,
  topicConfigValues,
  waitForLeaders
} from '../../src/kafka/admin.ts'
import { KafkaCluster } from '../../src/kafka/cluster.ts'
import { initProducerId } from '../../src/kafka/raw-produce.ts'
import { uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()

test('CreateTopics and DescribeConfigs: a topic is created with its overrides, which read back apart from broker defaults', async () => {
  const topic = uniqueTopic('apis-create')
  await createTopic(cluster, {
    name: topic,
    partitions: 3,
    replicationFactor: 1,
    configs: { 'cleanup.policy': 'compact', 'retention.ms': '123456789' }
  })
  await waitForLeaders(cluster, [topic])
  const [described] = await cluster.admin.metadata({ topics: [topic] }).then(m => [m.topics.get(topic)])
  assert.equal(described?.partitionsCount, 3, 'the other client sees three partitions')
  assert.deepEqual((await describeTopicConfigs(cluster, [topic])).get(topic), {
    'cleanup.policy': 'compact',
    'retention.ms': '123456789'
  })
  const values = (await topicConfigValues(cluster, [topic], ['retention.ms', 'max.message.bytes'])).get(topic)
  assert.equal(values?.['retention.ms'], '123456789')
  assert.match(values?.['max.message.bytes'] ?? '', /^\d+$/, 'a broker default is a value too')
  await assert.rejects(
    createTopic(cluster, { name: topic, partitions: 1, replicationFactor: 1, configs: {} }),
    error => isBackupError(error, 'KB_KAFKA') && /TOPIC_ALREADY_EXISTS/.test(error.message)
  )
})

test('Metadata: listed and found topics carry the ids and partition counts the other client sees; unknown topics are left out', async () => {
  const topic = uniqueTopic('apis-metadata')
  await cluster.admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 })
  await waitForLeaders(cluster, [topic])
  const theirs = (await cluster.admin.metadata({ topics: [topic] })).topics.get(topic)
  const listed = (await listTopics(cluster)).find(t => t.name === topic)
  assert.deepEqual(listed, { name: topic, topicId: theirs?.id, partitionCount: 2, isInternal: false })
  const found = await findTopics(cluster, [topic, uniqueTopic('apis-missing')])
  assert.deepEqual([...found.keys()], [topic])
  // A backup of some topics describes those alone, not every partition of the cluster.
  await cluster.admin.createTopics({ topics: [uniqueTopic('apis-other')], partitions: 1, replicas: 1 })
  const asked: string[][] = []
  const metadata = cluster.metadata.bind(cluster)
  cluster.metadata = topics => {
    asked.push(topics)
    return metadata(topics)
  }
  const matched = await matchingTopics(cluster, name => name === topic).finally(() => {
    cluster.metadata = metadata
  })
  assert.deepEqual(matched.topics, [listed])
  assert.ok(matched.listed > 1, `${matched.listed} topics listed`)
  assert.deepEqual(asked, [[topic]])
})

test('ListOffsets: log start, high watermark and last stable offset, per partition leader', async () => {
  const topic = uniqueTopic('apis-offsets')
  await cluster.admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 })
  await waitForLeaders(cluster, [topic])
  await produceNumbered(producer, topic, 0, 0, 10)
  await produceNumbered(producer, topic, 1, 0, 4)
  await cluster.admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 3n }] }] })
  const partitions = [0, 1].map(partition => ({ topic, partition }))
  assert.deepEqual(
    await listOffsets(cluster, partitions, 'earliest'),
    new Map([
      [`${topic}/0`, 3n],
      [`${topic}/1`, 0n]
    ])
  )
  for (const spec of ['latest', 'lastStable'] as const) {
    assert.deepEqual(
      await listOffsets(cluster, partitions, spec),
      new Map([
        [`${topic}/0`, 10n],
        [`${topic}/1`, 4n]
      ]),
      spec
    )
  }
})

test('FindCoordinator, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and OffsetDelete agree with the other client', async () => {
  const topic = uniqueTopic('apis-groups')
  const groupId = `${topic}-group`
  await cluster.admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 })
  await waitForLeaders(cluster, [topic])
  assert.equal(await groupState(cluster, groupId), 'Dead', 'an unknown group')
  await commitGroupOffsets(cluster, groupId, [
    { topic, partition: 0, offset: 5n },
    { topic, partition: 1, offset: 7n }
  ])
  const [theirs] = await cluster.admin.listConsumerGroupOffsets({ groups: [groupId] })
  assert.deepEqual(
    theirs?.topics.flatMap(t => t.partitions.map(p => [t.name, p.partitionIndex, p.committedOffset])).sort(),
    [
      [topic, 0, 5n],
      [topic, 1, 7n]
    ]
  )
  assert.equal(await groupState(cluster, groupId), 'Empty')
  const captured = (await captureGroupOffsets(cluster, new Set([topic]))).find(g => g.groupId === groupId)
  assert.equal(captured?.state, 'Empty')
  assert.deepEqual(
    captured?.offsets.map(o => [o.partition, o.offset]),
    [
      [0, 5n],
      [1, 7n]
    ]
  )
  await deleteGroupOffsets(cluster, groupId, [{ topic, partition: 1 }])
  assert.deepEqual(
    (await fetchGroupOffsets(cluster, groupId, [{ name: topic, partitions: [0, 1] }])).map(o => [
      o.partition,
      o.offset
    ]),
    [[0, 5n]]
  )
})

test('InitProducerId hands out an idempotent producer id on any broker', async () => {
  const metadata = await cluster.metadata([])
  const [nodeId] = metadata.brokers.keys()
  const first = await initProducerId(await cluster.connection(metadata, nodeId!))
  const second = await initProducerId(await cluster.connection(metadata, nodeId!))
  assert.ok(first.producerId >= 0n)
  assert.notEqual(first.producerId, second.producerId)
})

test('a request for an API version the broker does not have fails naming the API, before anything is sent', async () => {
  await assert.rejects(
    cluster.request(
      'any',
      3,
      99,
      () => {},
      () => undefined
    ),
    /does not support API 3 version 99 \(up to version \d+\)/
  )
})

test('no broker at the bootstrap address: KB_KAFKA_UNREACHABLE naming it, after a few quick attempts', async () => {
  const nowhere = new KafkaCluster({ bootstrapServers: ['127.0.0.1:1'], connectTimeoutMs: 1000 })
  try {
    await assert.rejects(nowhere.metadata([]), error => {
      assert.ok(isBackupError(error, 'KB_KAFKA_UNREACHABLE'), String(error))
      assert.match(error.message, /no answer from Kafka at 127\.0\.0\.1:1/)
      return true
    })
  } finally {
    await nowhere.close()
  }
})
