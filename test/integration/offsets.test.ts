/**
 * Consumer-group offset translation against the real broker: a group that committed on the
 * source, after a backup and a restore with resetConsumerOffsets, resumes on the target at
 * exactly the records it had not read (docs/architecture.md, "Offset translation").
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Consumer } from '@platformatic/kafka'
import { isBackupError } from '../../src/errors.ts'
import { backupOptions, runBackup, type StoredRecord, tempStorage } from '../helpers/backup.ts'
import { BASE_TIMESTAMP, createCompactedTopic, produceCompacted } from '../helpers/cases.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

async function commit(groupId: string, topic: string, offset: bigint) {
  await cluster.admin.alterConsumerGroupOffsets({
    groupId,
    topics: [{ name: topic, partitionOffsets: [{ partition: 0, offset }] }]
  })
}

async function committedOffset(groupId: string, topic: string): Promise<bigint | undefined> {
  const [group] = await cluster.admin.listConsumerGroupOffsets({ groups: [groupId] })
  return group?.topics.find(t => t.name === topic)?.partitions.find(p => p.partitionIndex === 0)?.committedOffset
}

/** For each group: what it had not read on the source equals what it reads on the target. */
async function assertResumesExactly(source: StoredRecord[], target: string, groups: Array<[string, bigint]>) {
  const restored = await readTopicRecords(cluster, target)
  for (const [groupId, sourceCommitted] of groups) {
    const targetCommitted = await committedOffset(groupId, target)
    assert.notEqual(targetCommitted, undefined, `${groupId} has a committed offset on ${target}`)
    assert.deepEqual(
      contentOf(restored.filter(r => r.offset >= targetCommitted!)),
      contentOf(source.filter(r => r.offset >= sourceCommitted)),
      `${groupId} committed ${sourceCommitted} on the source, ${targetCommitted} on the target`
    )
  }
}

test('a group that committed mid-stream resumes on the restored topic at exactly the records it had not read', async () => {
  const topic = uniqueTopic('offsets-plain')
  await createTopic(cluster, topic, 1)
  for (let from = 0; from < 100; from += 10) {
    await produceNumbered(producer, topic, 0, from, 10)
  }
  const mid = `${topic}-mid`
  const batchEdge = `${topic}-batch-edge`
  const done = `${topic}-done`
  await commit(mid, topic, 45n)
  await commit(batchEdge, topic, 60n)
  await commit(done, topic, 100n)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))

  const target = `${topic}-restored`
  // A window that leaves out the first 20 records, so that target offsets differ from the source's.
  const summary = await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      window: { start: BASE_TIMESTAMP + 20n },
      resetConsumerOffsets: true,
      consumerGroups: [`${topic}-*`]
    })
  )
  assert.deepEqual(
    summary.consumerGroups
      .map(g => [g.groupId, g.offsets[0]?.sourceOffset, g.offsets[0]?.targetOffset])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    [
      [batchEdge, '60', '40'],
      [done, '100', '80'],
      [mid, '45', '25']
    ]
  )
  const source = await readTopicRecords(cluster, topic)
  await assertResumesExactly(source, target, [
    [mid, 45n],
    [batchEdge, 60n],
    [done, 100n]
  ])
})

test('groups that committed inside a compaction hole, a gap between batches, or at the end resume at exactly their unread records', async () => {
  const topic = uniqueTopic('offsets-compacted')
  await createCompactedTopic(cluster, topic)
  // Surviving offsets 0 2 4 6 9 | 13 14 15 16 17 | 18 (see produceCompacted).
  const source = await produceCompacted(producer, cluster, topic)
  const groups: Array<[string, bigint]> = [
    [`${topic}-in-hole`, 3n],
    [`${topic}-last-of-batch`, 9n],
    [`${topic}-in-gap`, 11n],
    [`${topic}-at-end`, 19n]
  ]
  for (const [groupId, offset] of groups) {
    await commit(groupId, topic, offset)
  }
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const target = `${topic}-restored`
  const summary = await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      resetConsumerOffsets: true,
      consumerGroups: [`${topic}-*`]
    })
  )
  assert.equal(summary.consumerGroups.length, 4)
  await assertResumesExactly(source, target, groups)
  assert.equal(await committedOffset(`${topic}-in-gap`, target), 5n)
  assert.equal(await committedOffset(`${topic}-at-end`, target), 11n)
})

test('a group committed inside a retention gap resumes at the first record after it', async () => {
  const topic = uniqueTopic('offsets-gap')
  await createTopic(cluster, topic, 1)
  await produceNumbered(producer, topic, 0, 0, 100)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  for (let from = 100; from < 200; from += 25) {
    await produceNumbered(producer, topic, 0, from, 25)
  }
  await cluster.admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 160n }] }] })
  const groupId = `${topic}-group`
  await commit(groupId, topic, 120n)
  await runBackup(backupOptions(cluster, storage, [topic]))

  const target = `${topic}-restored`
  await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      resetConsumerOffsets: true,
      consumerGroups: [groupId]
    })
  )
  // Offsets 0-99 and 160-199 were restored to 0-139; source 160 is target 100.
  assert.equal(await committedOffset(groupId, target), 100n)
  const restored = await readTopicRecords(cluster, target)
  assert.deepEqual(contentOf(restored.filter(r => r.offset >= 100n)), contentOf(await readTopicRecords(cluster, topic)))
})

test('a group with active members on the target is refused with KB_GROUP_ACTIVE before anything is written, also by a dry run', async () => {
  const topic = uniqueTopic('offsets-active')
  await createTopic(cluster, topic, 1)
  await produceNumbered(producer, topic, 0, 0, 10)
  const groupId = `${topic}-group`
  await commit(groupId, topic, 5n)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))

  const consumer = new Consumer({ clientId: 'kafka-backup-test', groupId, bootstrapBrokers: [bootstrapServers()] })
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'committed' })
    await until(async () => {
      const state = (await cluster.admin.describeGroups({ groups: [groupId] })).get(groupId)?.state
      return state === 'Stable' || state === 'STABLE'
    }, `the consumer to join ${groupId}`)
    const target = `${topic}-restored`
    // The dry run refuses too: it runs every check of the real run.
    for (const dryRun of [true, false]) {
      await assert.rejects(
        runRestore(
          restoreOptions(cluster, storage, {
            topicMapping: { [topic]: target },
            resetConsumerOffsets: true,
            consumerGroups: [groupId],
            dryRun
          })
        ),
        error => {
          assert.ok(isBackupError(error, 'KB_GROUP_ACTIVE'), `dryRun=${dryRun}: ${error}`)
          assert.ok(error.message.includes(groupId))
          return true
        }
      )
    }
    assert.equal((await cluster.admin.listTopics()).includes(target), false, 'the restore refused before writing')
    await stream.close()
  } finally {
    await consumer.close(true)
  }
})
