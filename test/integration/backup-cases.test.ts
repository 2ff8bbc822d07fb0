/**
 * The data cases of the backup issue against the real broker, at library level: each test
 * backs up its own topics and compares the backup with the topic as a READ_COMMITTED reader
 * sees it (Kafka's Java console consumer where our own fetch path could hide a bug: data
 * kinds, transactions, compaction; our raw fetch elsewhere).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { BackupOptions } from '../../src/backup/engine.ts'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { readPartitionBatches } from '../../src/restore/source.ts'
import { backupOptions, HookedStorage, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import {
  COMPACTED_SURVIVING_OFFSETS,
  createCompactedTopic,
  LARGE_TOPIC_CONFIGS,
  produceCompacted,
  produceDataKinds,
  produceLarge,
  produceTransactional
} from '../helpers/cases.ts'
import { consoleConsumeCommitted } from '../helpers/console-consumer.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { endOffsets, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

// One after the other: @platformatic/kafka hands the result (or error) of one in-flight
// Metadata call to every concurrent caller, whatever topics they asked for, so a test waiting
// for a new or deleted topic would fail its neighbours' calls on the shared client.
describe('backup data cases', () => {
  test('include/exclude wildcards select exactly the named topics; internal topics only with includeInternalTopics', async () => {
    const prefix = uniqueTopic('select')
    const [eu, us, tmp, logs, other] = ['orders.eu', 'orders.us', 'orders.tmp', 'logs', 'other'].map(
      n => `${prefix}.${n}`
    )
    for (const topic of [eu!, us!, tmp!, logs!, other!]) {
      await createTopic(cluster, topic, 2)
      await produceNumbered(producer, topic, 0, 0, 3)
      await produceNumbered(producer, topic, 1, 0, 2)
    }
    // __consumer_offsets exists once some group committed.
    await cluster.admin.alterConsumerGroupOffsets({
      groupId: `${prefix}-group`,
      topics: [{ name: logs!, partitionOffsets: [{ partition: 0, offset: 1n }] }]
    })

    const storage = tempStorage()
    const summary = await runBackup(
      backupOptions(cluster, storage, [], {
        topics: { include: [`${prefix}.orders.*`, `${prefix}.logs`], exclude: ['*.tmp'] }
      })
    )
    assert.equal(summary.topics, 3)
    assert.equal(summary.partitions, 6)
    assert.equal(summary.records, 15)
    const manifest = await readManifest(storage, 'test-backup')
    assert.deepEqual(
      manifest?.topics.map(t => t.name),
      [logs, eu, us].sort()
    )
    for (const topic of [eu!, us!, logs!]) {
      assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), await readTopicRecords(cluster, topic))
    }

    await assert.rejects(
      runBackup(backupOptions(cluster, tempStorage(), ['__*'])),
      error => isBackupError(error, 'KB_TOPIC_NOT_FOUND'),
      'internal topics are not selected, even by a pattern that names them'
    )
    const withoutInternal = tempStorage()
    await runBackup(backupOptions(cluster, withoutInternal, [logs!, '__consumer_offsets']))
    assert.deepEqual(
      (await readManifest(withoutInternal, 'test-backup'))?.topics.map(t => t.name),
      [logs]
    )

    const withInternal = tempStorage()
    const internalSummary = await runBackup(
      backupOptions(cluster, withInternal, ['__consumer_offsets'], { includeInternalTopics: true })
    )
    assert.equal(internalSummary.status, 'complete')
    const internalManifest = await readManifest(withInternal, 'test-backup')
    assert.deepEqual(
      internalManifest?.topics.map(t => t.name),
      ['__consumer_offsets']
    )
    const metadata = await cluster.metadata(['__consumer_offsets'])
    assert.equal(
      internalManifest?.topics[0]?.partitionCount,
      metadata.topics.get('__consumer_offsets')?.partitionsCount
    )
  })

  test("null and empty keys, tombstones, empty values, headers with null values and explicit timestamps, every producer codec: the backup equals Kafka's console consumer", async () => {
    const topic = uniqueTopic('backup-kinds')
    await createTopic(cluster, topic, 5)
    const produced = await produceDataKinds(producer, topic)
    // The JVM starts while the backup runs.
    const independent = consoleConsumeCommitted(topic, produced)
    const storage = tempStorage()
    const summary = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(summary.records, produced)

    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.deepEqual(backedUp, await independent)
    // The comparison covers what it claims to.
    assert.ok(backedUp.some(r => r.key === null) && backedUp.some(r => r.key === ''))
    assert.ok(backedUp.some(r => r.value === null) && backedUp.some(r => r.value === ''))
    assert.ok(backedUp.some(r => r.headers.some(([key, value]) => key === 'nullable' && value === null)))
    assert.ok(backedUp.some(r => r.headers.filter(([key]) => key === 'trace').length === 2))
    assert.ok(
      backedUp.some(
        (r, i) => i > 0 && r.partition === backedUp[i - 1]!.partition && r.timestamp < backedUp[i - 1]!.timestamp
      )
    )
  })

  test('records of 1 MB to 2.5 MB are backed up whole when each exceeds the fetch partition limit (KIP-74)', async () => {
    const topic = uniqueTopic('backup-large')
    await createTopic(cluster, topic, 1, LARGE_TOPIC_CONFIGS)
    const produced = await produceLarge(producer, topic)
    const storage = tempStorage()
    const summary = await runBackup(
      backupOptions(cluster, storage, [topic], {
        fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: 512 * 1024, partitionMaxBytes: 256 * 1024 }
      })
    )
    assert.equal(summary.records, produced)
    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.deepEqual(
      backedUp.map(r => r.value?.length),
      [100, 1024 * 1024, 200, 1536 * 1024, 2560 * 1024, 50]
    )
    assert.deepEqual(backedUp, await readTopicRecords(cluster, topic))
  })

  test('aborted transactions and control markers are left out, and the index still reaches the end of the log', async () => {
    const topic = uniqueTopic('backup-txn')
    await createTopic(cluster, topic, 2)
    const committed = await produceTransactional(topic, producer)
    const consumed = consoleConsumeCommitted(topic, committed)
    const ends = await endOffsets(cluster, topic, 2)
    const backups = []

    // Large fetches see whole transactions; tiny ones cut them across responses.
    for (const partitionMaxBytes of [1024 * 1024, 100]) {
      const storage = tempStorage()
      const summary = await runBackup(
        backupOptions(cluster, storage, [topic], {
          fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: partitionMaxBytes * 2, partitionMaxBytes }
        })
      )
      assert.equal(summary.records, committed, `partitionMaxBytes ${partitionMaxBytes}`)
      const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
      backups.push(backedUp)
      assert.ok(backedUp.every(r => !r.value?.startsWith('aborted')))
      for (let partition = 0; partition < 2; partition++) {
        const index = await readPartitionIndex(storage, 'test-backup', topic, partition)
        assert.equal(index?.nextOffset, ends[partition]?.toString(), 'the checkpoint covers the final commit marker')
        for await (const batch of readPartitionBatches(storage, 'test-backup', index!)) {
          assert.equal(batch.isControl, false)
        }
      }
    }
    const independent = await consumed
    assert.equal(independent.length, committed)
    for (const backedUp of backups) {
      assert.deepEqual(backedUp, independent)
    }
  })

  test('a compacted topic after the log cleaner ran is backed up as exactly the surviving records at their original offsets', async () => {
    const topic = uniqueTopic('backup-compacted')
    await createCompactedTopic(cluster, topic)
    await produceCompacted(producer, cluster, topic)
    const independent = consoleConsumeCommitted(topic, COMPACTED_SURVIVING_OFFSETS.length)
    const storage = tempStorage()
    const summary = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(summary.records, COMPACTED_SURVIVING_OFFSETS.length)

    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.deepEqual(
      backedUp.map(r => r.offset),
      COMPACTED_SURVIVING_OFFSETS
    )
    assert.deepEqual(backedUp, await independent)
    const index = await readPartitionIndex(storage, 'test-backup', topic, 0)
    const batches = []
    for await (const batch of readPartitionBatches(storage, 'test-backup', index!)) {
      batches.push(batch)
    }
    // The batch the cleaner thinned keeps its offset range: holes inside it, not a new batch.
    assert.equal(batches[0]?.baseOffset, 0n)
    assert.equal(batches[0]?.lastOffset, 9n)
    assert.equal(batches[0]?.recordCount, 5)
    assert.equal(index?.nextOffset, '19')
  })

  test('an empty partition beside non-empty ones is backed up as empty, and a later run picks up its first records', async () => {
    const topic = uniqueTopic('backup-empty-partition')
    await createTopic(cluster, topic, 3)
    await produceNumbered(producer, topic, 0, 0, 10)
    await produceNumbered(producer, topic, 2, 0, 5)
    const storage = tempStorage()
    const summary = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(summary.status, 'complete')
    assert.equal(summary.partitions, 3)
    assert.equal(summary.records, 15)
    const manifest = await readManifest(storage, 'test-backup')
    assert.equal(manifest?.topics[0]?.partitionCount, 3)
    const empty = await readPartitionIndex(storage, 'test-backup', topic, 1)
    assert.equal(empty?.nextOffset, '0', 'the empty partition has an index that says it was covered')
    assert.deepEqual(empty?.segments, [])
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), await readTopicRecords(cluster, topic))

    await produceNumbered(producer, topic, 1, 0, 4)
    const second = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(second.records, 4)
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), await readTopicRecords(cluster, topic))
  })

  test('when retention moved the log start between runs, the second run records the gap in the index and continues at the new log start', async () => {
    const topic = uniqueTopic('backup-retention-gap')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 100)
    const storage = tempStorage()
    const first = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(first.records, 100)
    assert.deepEqual(first.gaps, [])

    // Four batches at 100-124, 125-149, 150-174, 175-199; the new log start 160 lies inside one.
    for (let from = 100; from < 200; from += 25) {
      await produceNumbered(producer, topic, 0, from, 25)
    }
    await cluster.admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 160n }] }] })
    const second = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.deepEqual(
      second.gaps.map(g => ({
        topic: g.topic,
        partition: g.partition,
        fromOffset: g.fromOffset,
        toOffset: g.toOffset
      })),
      [{ topic, partition: 0, fromOffset: '100', toOffset: '160' }]
    )

    const index = await readPartitionIndex(storage, 'test-backup', topic, 0)
    assert.deepEqual(
      index?.gaps.map(g => ({ fromOffset: g.fromOffset, toOffset: g.toOffset, reason: g.reason })),
      [{ fromOffset: '100', toOffset: '160', reason: 'log-start-moved' }]
    )
    assert.equal(index?.nextOffset, '200')
    // Batches are kept whole: the one holding the new log start comes with its records 150-159,
    // which the gap marks as deleted (a restore leaves them out, see restore-cases).
    assert.equal(second.records, 50)
    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.deepEqual(
      backedUp.map(r => r.offset),
      [...Array.from({ length: 100 }, (_, i) => BigInt(i)), ...Array.from({ length: 50 }, (_, i) => BigInt(150 + i))]
    )
    assert.deepEqual(
      backedUp.filter(r => r.offset >= 160n),
      await readTopicRecords(cluster, topic)
    )
  })

  async function deleteTopicAndWait(topic: string): Promise<void> {
    await cluster.admin.deleteTopics({ topics: [topic] })
    await until(async () => !(await cluster.admin.listTopics()).includes(topic), `topic ${topic} to be deleted`)
  }

  /**
   * What happens to a topic deleted while a backup runs (the engine's documented choice): its
   * partitions stop where they are with a warning through onWarning, the run still completes,
   * the summary lists the topic in deletedTopics and the manifest marks it deletedDuringBackup.
   * What was fetched before the deletion stays in the backup, a clean prefix of each partition.
   */
  async function assertDeletedDuringBackup(
    storage: HookedStorage,
    doomed: string,
    survivor: string,
    options: Partial<BackupOptions> = {}
  ) {
    const expectedDoomed = await readTopicRecords(cluster, doomed)
    const expectedSurvivor = await readTopicRecords(cluster, survivor)
    const warnings: Array<{ message: string; context: Record<string, unknown> }> = []
    const summary = await runBackup(
      backupOptions(cluster, storage, [doomed, survivor], {
        ...options,
        onWarning: (message, context) => warnings.push({ message, context })
      })
    )
    assert.equal(summary.status, 'complete')
    assert.deepEqual(summary.deletedTopics, [doomed])
    assert.ok(
      warnings.some(w => w.context.topic === doomed && w.message.includes('deleted')),
      JSON.stringify(warnings)
    )
    const manifest = await readManifest(storage, 'test-backup')
    assert.equal(manifest?.topics.find(t => t.name === doomed)?.deletedDuringBackup, true)
    assert.equal(manifest?.topics.find(t => t.name === survivor)?.deletedDuringBackup, undefined)
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', survivor), expectedSurvivor)
    const backedUp = await readBackedUpRecords(storage, 'test-backup', doomed)
    for (const partition of new Set(expectedDoomed.map(r => r.partition))) {
      const inPartition = backedUp.filter(r => r.partition === partition)
      assert.deepEqual(inPartition, expectedDoomed.filter(r => r.partition === partition).slice(0, inPartition.length))
    }
    return backedUp
  }

  test('a topic deleted between listing and fetching is skipped with a warning and marked deletedDuringBackup; other topics complete', async () => {
    const doomed = uniqueTopic('backup-deleted-early')
    const survivor = uniqueTopic('backup-survivor-early')
    await createTopic(cluster, doomed, 2)
    await createTopic(cluster, survivor, 1)
    await produceNumbered(producer, doomed, 0, 0, 20)
    await produceNumbered(producer, doomed, 1, 0, 20)
    await produceNumbered(producer, survivor, 0, 0, 20)
    const storage = new HookedStorage()
    // The manifest is first written after the topics were listed and sized, before any fetch.
    let deleted = false
    storage.onWrite = async key => {
      if (!deleted && key.includes('/manifest/')) {
        deleted = true
        await deleteTopicAndWait(doomed)
      }
    }
    const backedUp = await assertDeletedDuringBackup(storage, doomed, survivor)
    assert.deepEqual(backedUp, [])
  })

  test('a topic deleted in the middle of fetching keeps what was fetched, stops with a warning and is marked deletedDuringBackup', async () => {
    const doomed = uniqueTopic('backup-deleted-late')
    const survivor = uniqueTopic('backup-survivor-late')
    await createTopic(cluster, doomed, 2)
    await createTopic(cluster, survivor, 1)
    const padding = 'x'.repeat(100)
    for (let from = 0; from < 200; from += 10) {
      await produceNumbered(producer, doomed, 0, from, 10, { label: `doomed-${padding}-` })
      await produceNumbered(producer, doomed, 1, from, 10, { label: `doomed-${padding}-` })
      await produceNumbered(producer, survivor, 0, from, 10, { label: `survivor-${padding}-` })
    }
    const storage = new HookedStorage()
    // The first segment of the doomed topic opens after its first fetch; holding its upload until
    // the topic is gone stalls the fetcher mid-topic (uncompressed frames smaller than a batch,
    // a byte budget of two fetches).
    let deleted = false
    storage.onWrite = async key => {
      if (!deleted && key.includes(`/${doomed}/`) && key.endsWith('.seg')) {
        deleted = true
        await deleteTopicAndWait(doomed)
      }
    }
    const backedUp = await assertDeletedDuringBackup(storage, doomed, survivor, {
      fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: 2048, partitionMaxBytes: 1024 },
      compression: 'none',
      frameMaxBytes: 1024,
      maxBytesInFlight: 2048
    })
    assert.ok(backedUp.length > 0, 'data fetched before the deletion is kept')
    assert.ok(backedUp.length < 400, 'the deletion landed before the backup finished')
  })

  test('the manifest holds partition counts, topic config overrides and consumer-group offsets committed at backup time', async () => {
    const topic = uniqueTopic('backup-manifest')
    const unrelated = uniqueTopic('backup-manifest-unrelated')
    await createTopic(cluster, topic, 3, {
      'retention.ms': '86400000',
      'cleanup.policy': 'compact,delete',
      'max.message.bytes': '2000000'
    })
    await createTopic(cluster, unrelated, 1)
    for (let partition = 0; partition < 3; partition++) {
      await produceNumbered(producer, topic, partition, 0, 10)
    }
    await produceNumbered(producer, unrelated, 0, 0, 10)
    const group = `${topic}-group`
    const unrelatedGroup = `${topic}-unrelated-group`
    await cluster.admin.alterConsumerGroupOffsets({
      groupId: group,
      topics: [
        {
          name: topic,
          partitionOffsets: [
            { partition: 0, offset: 3n },
            { partition: 2, offset: 7n }
          ]
        },
        { name: unrelated, partitionOffsets: [{ partition: 0, offset: 5n }] }
      ]
    })
    await cluster.admin.alterConsumerGroupOffsets({
      groupId: unrelatedGroup,
      topics: [{ name: unrelated, partitionOffsets: [{ partition: 0, offset: 4n }] }]
    })

    const storage = tempStorage()
    const startedAt = Date.now()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const manifest = await readManifest(storage, 'test-backup')
    assert.deepEqual(
      manifest?.topics.map(t => ({ name: t.name, partitionCount: t.partitionCount, configs: t.configs })),
      [
        {
          name: topic,
          partitionCount: 3,
          configs: { 'retention.ms': '86400000', 'cleanup.policy': 'compact,delete', 'max.message.bytes': '2000000' }
        }
      ]
    )
    const captured = manifest?.consumerGroups.filter(g => g.groupId === group || g.groupId === unrelatedGroup)
    assert.equal(captured?.length, 1, 'a group without offsets on the backed-up topics is left out')
    assert.deepEqual(
      captured?.[0]?.offsets
        .map(o => ({ topic: o.topic, partition: o.partition, offset: o.offset }))
        .sort((a, b) => a.partition - b.partition),
      [
        { topic, partition: 0, offset: '3' },
        { topic, partition: 2, offset: '7' }
      ]
    )
    assert.ok(Date.parse(captured![0]!.capturedAt) >= startedAt - 1000)
  })
})
