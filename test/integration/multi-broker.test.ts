/**
 * Backup and restore on a three-broker KRaft cluster (replication factor 3,
 * min.insync.replicas 2) while the broker leading a partition is killed, started again, and
 * leadership moves back by preferred leader election: every record exactly once, the moves in
 * the log, no failure. This file starts its own cluster (scripts/test-cluster/cluster.ts).
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  electPreferredLeaders,
  killNode,
  restartNode,
  startCluster,
  stopCluster,
  type TestCluster
} from '../../scripts/test-cluster/cluster.ts'
import { BackupEngine } from '../../src/backup/engine.ts'
import { backupOptions, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { type AdminCluster, testCluster, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { produceBatches } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

let cluster: TestCluster
let client: AdminCluster
const partitions = 3
const recordsPerPartition = 3000

before(async () => {
  cluster = await startCluster(3)
  client = testCluster(cluster.bootstrapServers)
})
after(async () => {
  await client?.close()
  if (cluster) {
    await stopCluster(cluster, { keepLogs: true })
  }
})

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`)
    }
    await sleep(100)
  }
}

async function leaderOf(topic: string, partition: number): Promise<number> {
  const metadata = await client.metadata([topic])
  return metadata.topics.get(topic)?.partitions[partition]?.leader ?? -1
}

/** A replicated topic holding `recordsPerPartition` records per partition, in 100-record batches. */
async function replicatedTopic(label: string): Promise<string> {
  const topic = uniqueTopic(label)
  await client.admin.createTopics({ topics: [topic], partitions, replicas: 3 })
  await waitFor('leaders of the new topic', async () => {
    const metadata = await client.metadata([topic]).catch(() => undefined)
    const found = metadata?.topics.get(topic)?.partitions ?? []
    return found.length === partitions && found.every(p => p.leader >= 0)
  })
  const producer = newProducer({ bootstrapBrokers: cluster.bootstrapServers })
  await produceBatches(producer, topic, { partitions, recordsPerPartition, valueBytes: 50 })
  await producer.close()
  return topic
}

/**
 * Kills the broker leading `topic`/0, starts it again and moves leadership back to it;
 * `whileAway` runs once another broker leads, before the restart.
 */
async function killAndRestartLeader(
  topic: string,
  whileAway: (killed: number) => Promise<void> = async () => {}
): Promise<number> {
  const leader = await leaderOf(topic, 0)
  await killNode(cluster.nodes.find(n => n.nodeId === leader)!)
  await restartLeader(topic, leader, whileAway)
  return leader
}

/** Waits for `topic`/0 to get another leader than the killed one, restarts it and moves leadership back. */
async function restartLeader(
  topic: string,
  leader: number,
  whileAway: (killed: number) => Promise<void> = async () => {}
): Promise<void> {
  const node = cluster.nodes.find(n => n.nodeId === leader)!
  await waitFor('a new leader of partition 0', async () => {
    const now = await leaderOf(topic, 0).catch(() => -1)
    return now >= 0 && now !== leader
  })
  await whileAway(leader)
  await restartNode(cluster, node)
  // The restarted broker must be back in the ISR before it can lead again.
  await waitFor('the restarted broker back in sync', async () => {
    const metadata = await client.metadata([topic])
    return (metadata.topics.get(topic)?.partitions ?? []).every(p => p.isr.length === 3)
  })
  await electPreferredLeaders(cluster)
}

test('a backup while a broker is killed, restarted and leadership moves back holds every record exactly once', async () => {
  const topic = await replicatedTopic('multi-backup')
  const storage = tempStorage()
  const warnings: string[] = []
  // One 100-record batch per partition per Fetch: the backup lasts through the kill and restart.
  const engine = new BackupEngine(
    backupOptions(client, storage, [topic], {
      bootstrapServers: cluster.bootstrapServers,
      fetch: { maxWaitMs: 200, minBytes: 16 * 1024 * 1024, maxBytes: 16 * 1024 * 1024, partitionMaxBytes: 1 },
      onWarning: message => warnings.push(message)
    })
  )
  const running = engine.run()
  await waitFor('the backup to be under way', () => engine.progress().some(p => p.records > 0))
  const moved = (killed: number) =>
    warnings.some(w => new RegExp(`the leader of ${topic}/0 moved from broker ${killed} to broker \\d`).test(w))
  // The fetcher may be in its back-off while the other broker leads: the restart waits for it to
  // see the move, or leadership could be back on the restarted broker before it looks again.
  const killed = await killAndRestartLeader(topic, leader =>
    waitFor('the backup to log the leader move', async () => moved(leader))
  )
  const summary = await running
  assert.equal(summary.records, partitions * recordsPerPartition)
  const records = await readBackedUpRecords(storage, 'test-backup', topic)
  for (let partition = 0; partition < partitions; partition++) {
    assert.deepEqual(
      records.filter(r => r.partition === partition).map(r => r.offset),
      Array.from({ length: recordsPerPartition }, (_, i) => BigInt(i))
    )
  }
  assert.ok(moved(killed), `the move away from broker ${killed} is logged: ${warnings.join('\n')}`)
})

test('a restore while a broker is killed, restarted and leadership moves back writes every record exactly once', async () => {
  const topic = await replicatedTopic('multi-restore')
  const storage = tempStorage()
  await runBackup(backupOptions(client, storage, [topic], { bootstrapServers: cluster.bootstrapServers }))
  const target = `${topic}-restored`
  const warnings: string[] = []
  let acknowledged = 0
  const running = runRestore(
    restoreOptions(client, storage, {
      bootstrapServers: cluster.bootstrapServers,
      topicMapping: { [topic]: target },
      defaultReplicationFactor: 3,
      // Small batches at a slow rate: many Produce requests, the kill lands between them.
      coalesceMaxBytes: 8 * 1024,
      rateLimitBytesPerSec: 24 * 1024,
      onWarning: message => warnings.push(message),
      onAcknowledged: records => {
        acknowledged += records
      }
    })
  )
  await waitFor('the restore to be under way', () => acknowledged > 0)
  const leader = await leaderOf(target, 0)
  await killNode(cluster.nodes.find(n => n.nodeId === leader)!)
  assert.ok(acknowledged < partitions * recordsPerPartition, 'the broker dies while the restore runs')
  await restartLeader(target, leader)
  const summary = await running
  assert.equal(summary.records, partitions * recordsPerPartition)
  assert.deepEqual(contentOf(await readTopicRecords(client, target)), contentOf(await readTopicRecords(client, topic)))
  assert.ok(
    warnings.some(w => /^restarting the restore|^restore: .*; retrying in/.test(w)),
    `the restore logs the leader change: ${warnings.join('\n')}`
  )
})

test('restore.rate_limit_bytes_per_sec caps the whole process, not each partition leader', async () => {
  const topic = await replicatedTopic('multi-rate')
  const storage = tempStorage()
  await runBackup(backupOptions(client, storage, [topic], { bootstrapServers: cluster.bootstrapServers }))
  const target = `${topic}-restored`
  const rate = 100_000
  const startedAt = Date.now()
  const summary = await runRestore(
    restoreOptions(client, storage, {
      bootstrapServers: cluster.bootstrapServers,
      topicMapping: { [topic]: target },
      defaultReplicationFactor: 3,
      coalesceMaxBytes: 8 * 1024,
      rateLimitBytesPerSec: rate
    })
  )
  const elapsedMs = Date.now() - startedAt
  assert.equal(summary.records, partitions * recordsPerPartition)
  const leaders = new Set(await Promise.all([0, 1, 2].map(partition => leaderOf(target, partition))))
  assert.ok(leaders.size > 1, `the target's partitions are led by several brokers: ${[...leaders]}`)
  // One bucket with one second of burst; each leader's sender may take one request on credit.
  const floorMs = ((summary.bytes - rate - leaders.size * 8 * 1024) / rate) * 1000
  assert.ok(
    elapsedMs >= floorMs,
    `${summary.bytes} bytes at ${rate} B/s took ${elapsedMs} ms, at least ${floorMs} expected`
  )
})
