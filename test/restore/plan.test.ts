/** The restore plan from a backup's manifest and indexes, without a broker. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  FORMAT,
  FORMAT_VERSION,
  type PartitionIndex,
  type SegmentEntry,
  segmentKey,
  writeManifest,
  writePartitionIndex
} from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { buildPlan, type PlanOptions } from '../../src/restore/plan.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'

const now = new Date().toISOString()

function segment(
  topic: string,
  partition: number,
  firstOffset: number,
  lastOffset: number,
  minTimestamp: number,
  maxTimestamp: number
): SegmentEntry {
  return {
    key: segmentKey('b', topic, partition, BigInt(firstOffset)).slice('b/'.length),
    firstOffset: String(firstOffset),
    lastOffset: String(lastOffset),
    nextOffset: String(lastOffset + 1),
    minTimestamp: String(minTimestamp),
    maxTimestamp: String(maxTimestamp),
    recordCount: lastOffset - firstOffset + 1,
    batchCount: 1,
    frameCount: 1,
    sizeBytes: 100,
    uncompressedBytes: 1000,
    codec: 'zstd',
    createdAt: now
  }
}

/** A backup of `orders` (3 partitions, two segments each: times 1000-1999 and 2000-2999) and `audit` (1). */
async function backup(): Promise<MemoryStorage> {
  const storage = new MemoryStorage()
  await writeManifest(storage, {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    toolVersion: 'test',
    backupId: 'b',
    createdAt: now,
    updatedAt: now,
    source: { clusterId: 'c', bootstrapServers: [] },
    compression: { codec: 'zstd', level: 3 },
    topics: [
      { name: 'orders', topicId: 'o', partitionCount: 3, configs: { 'cleanup.policy': 'compact' } },
      { name: 'audit', topicId: 'a', partitionCount: 1, configs: {} }
    ],
    consumerGroups: [],
    runs: []
  })
  for (const [topic, partitions] of [
    ['orders', 3],
    ['audit', 1]
  ] as const) {
    for (let partition = 0; partition < partitions; partition++) {
      const index: PartitionIndex = {
        format: FORMAT,
        formatVersion: FORMAT_VERSION,
        topic,
        partition,
        startOffset: '0',
        nextOffset: '20',
        segments: [segment(topic, partition, 0, 9, 1000, 1999), segment(topic, partition, 10, 19, 2000, 2999)],
        gaps: [],
        updatedAt: now
      }
      await writePartitionIndex(storage, 'b', index)
      // The plan checks that every indexed segment is in storage; it reads none of them.
      for (const { key } of index.segments) {
        await storage.replace(`b/${key}`, Buffer.alloc(100))
      }
    }
  }
  return storage
}

function options(overrides: Partial<PlanOptions> = {}): PlanOptions {
  return {
    backupId: 'b',
    topics: { include: ['*'], exclude: [] },
    sourcePartitions: {},
    topicMapping: {},
    partitionMapping: {},
    window: {},
    ...overrides
  }
}

test('maps topics and partitions, and sizes the target to the highest mapped partition', async () => {
  const plan = await buildPlan(
    await backup(),
    options({
      topics: { include: ['orders'], exclude: [] },
      topicMapping: { orders: 'orders-dr' },
      partitionMapping: { orders: { '0': 4 } },
      sourcePartitions: { orders: [0, 2] }
    })
  )
  assert.equal(plan.topics.length, 1)
  const [orders] = plan.topics
  assert.equal(orders?.targetTopic, 'orders-dr')
  assert.equal(orders?.partitionCount, 5)
  assert.deepEqual(orders?.configs, { 'cleanup.policy': 'compact' })
  assert.deepEqual(
    orders?.partitions.map(p => [p.sourcePartition, p.targetPartition]),
    [
      [0, 4],
      [2, 2]
    ]
  )
  assert.equal(plan.records, 40)
})

test('a flat partition_mapping (key *) applies to every topic that has no mapping of its own', async () => {
  const plan = await buildPlan(
    await backup(),
    options({ partitionMapping: { '*': { '0': 1, '1': 0 }, audit: { '0': 0 } } })
  )
  const pairs = (name: string) =>
    plan.topics.find(t => t.sourceTopic === name)?.partitions.map(p => [p.sourcePartition, p.targetPartition])
  assert.deepEqual(pairs('orders'), [
    [0, 1],
    [1, 0],
    [2, 2]
  ])
  assert.deepEqual(pairs('audit'), [[0, 0]])
})

test('a time window keeps only the segments that can hold records at or after its start', async () => {
  const plan = await buildPlan(await backup(), options({ window: { start: 2500n } }))
  assert.ok(
    plan.topics.every(t => t.partitions.every(p => p.segments.length === 1 && p.segments[0]?.firstOffset === '10'))
  )
  assert.equal(plan.records, 4 * 10)
})

test('mappings and partition lists naming what the backup does not hold are refused, naming the key', async () => {
  const storage = await backup()
  const cases: Array<[Partial<PlanOptions>, string]> = [
    [{ topicMapping: { ordres: 'x' } }, 'restore.topic_mapping.ordres'],
    [{ partitionMapping: { ordres: { '0': 1 } } }, 'restore.partition_mapping.ordres'],
    [{ partitionMapping: { orders: { '3': 0 } } }, 'restore.partition_mapping.orders.3'],
    [{ partitionMapping: { '*': { '7': 0 } } }, 'restore.partition_mapping.*.7'],
    [{ sourcePartitions: { ordres: [0] } }, 'restore.source_partitions.ordres'],
    [{ sourcePartitions: { orders: [3] } }, 'restore.source_partitions.orders']
  ]
  for (const [overrides, path] of cases) {
    await assert.rejects(buildPlan(storage, options(overrides)), error => {
      assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
      assert.equal(error.path, path)
      assert.ok(error.message.includes(path), error.message)
      return true
    })
  }
})

test('two source partitions mapped into one target partition are refused', async () => {
  await assert.rejects(
    buildPlan(await backup(), options({ topicMapping: { audit: 'orders' }, partitionMapping: {} })),
    error => isBackupError(error, 'KB_CONFIG_INVALID') && /would both restore into orders\/0/.test(error.message)
  )
})

test('a backup that does not exist, or a topic selection that matches nothing, is refused', async () => {
  await assert.rejects(buildPlan(new MemoryStorage(), options()), error => isBackupError(error, 'KB_BACKUP_NOT_FOUND'))
  await assert.rejects(buildPlan(await backup(), options({ topics: { include: ['nope'], exclude: [] } })), error =>
    isBackupError(error, 'KB_TOPIC_NOT_FOUND')
  )
})

test('re-partitioning: a count that differs plans every source and target pair; equal counts, or disabled, keep the plain plan', async () => {
  const storage = await backup()
  const plan = await buildPlan(
    storage,
    options({ repartition: true, targetPartitions: { orders: 2 } }),
    async () => new Map([['audit', 1]])
  )
  const orders = plan.topics.find(t => t.sourceTopic === 'orders')!
  assert.equal(orders.repartitioned, true)
  assert.equal(orders.partitionCount, 2)
  assert.deepEqual(
    orders.partitions.map(p => [p.sourcePartition, p.targetPartition]),
    [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
      [2, 0],
      [2, 1]
    ]
  )
  assert.equal(plan.records, 80, 'each pair counts its share: the totals stay those of the backup')
  assert.equal(plan.topics.find(t => t.sourceTopic === 'audit')?.repartitioned, false)

  // An existing target's count decides over restore.repartition.partitions.
  const existing = await buildPlan(storage, options({ repartition: true }), async () => new Map([['orders', 3]]))
  assert.equal(existing.topics.find(t => t.sourceTopic === 'orders')?.repartitioned, false)
})

test('re-partitioning refuses a partition_mapping for the same topic, and a smaller created count without it', async () => {
  const storage = await backup()
  await assert.rejects(
    buildPlan(
      storage,
      options({ repartition: true, targetPartitions: { orders: 5 }, partitionMapping: { orders: { '0': 1 } } })
    ),
    error =>
      isBackupError(error, 'KB_CONFIG_INVALID') && /re-partitioned by key into the 5 partitions/.test(error.message)
  )
  await assert.rejects(
    buildPlan(storage, options({ targetPartitions: { orders: 2 } })),
    error =>
      isBackupError(error, 'KB_CONFIG_INVALID') &&
      error.path === 'restore.repartition.partitions.orders' &&
      /set restore\.repartition\.enabled: true/.test(error.message)
  )
  await assert.rejects(
    buildPlan(storage, options({ targetPartitions: { ordres: 2 } })),
    error => isBackupError(error, 'KB_CONFIG_INVALID') && error.path === 'restore.repartition.partitions.ordres'
  )
})
