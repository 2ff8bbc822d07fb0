/**
 * The source changing under a backup (docs/source-changes.md): a topic deleted and recreated
 * under the same name, a log that ends below the checkpoint, a checkpoint gone behind the
 * stored segments, partitions added. Each either continues exactly or ends with its own code,
 * and never changes what the backup already holds.
 */
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import type { Producer } from '@platformatic/kafka'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import type { FilesystemStorage } from '../../src/storage/filesystem.ts'
import {
  backupOptions,
  fingerprint,
  HookedStorage,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  tempStorage
} from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { runCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

/** Adds partitions and waits for their leaders. Returns a producer that knows them: the shared
 * one caches the old count and would send their records to a partition modulo it. */
async function addPartitions(topic: string, count: number): Promise<Producer> {
  await cluster.admin.createPartitions({ topics: [{ name: topic, count }] })
  for (let attempt = 0; ; attempt++) {
    const partitions = (await cluster.metadata([topic])).topics.get(topic)?.partitions ?? []
    if (partitions.length === count && partitions.every(p => p.leader >= 0)) {
      return newProducer()
    }
    assert.ok(attempt < 100, 'the new partitions got leaders')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function recreateTopic(topic: string, partitions: number): Promise<void> {
  await cluster.admin.deleteTopics({ topics: [topic] })
  while ((await cluster.admin.listTopics()).includes(topic)) {
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await createTopic(cluster, topic, partitions)
}

function indexFile(storage: FilesystemStorage, topic: string, partition: number): string {
  return newestRevisionFile(join(storage.location, 'test-backup', 'topics', topic, String(partition), 'index'))!
}

// One after the other: @platformatic/kafka hands the result of one in-flight Metadata call to
// every concurrent caller, so a test waiting for a deleted topic would fail its neighbours'.
describe('the source changing under a backup', () => {
  test('a topic deleted and recreated between runs is refused with KB_TOPIC_RECREATED and the backup is left as it was; a new backup_id takes the new topic and the old one restores exactly', async () => {
    const topic = uniqueTopic('backup-recreated')
    await createTopic(cluster, topic, 1)
    for (let from = 0; from < 3000; from += 500) {
      await produceNumbered(producer, topic, 0, from, 500, { label: 'old-' })
    }
    const oldRecords = await readTopicRecords(cluster, topic)
    const storage = tempStorage()
    assert.equal((await runBackup(backupOptions(cluster, storage, [topic]))).records, 3000)
    const oldId = (await readManifest(storage, 'test-backup'))?.topics[0]?.topicId
    const stored = fingerprint(storage.location)

    // Fewer records than the checkpoint, in more partitions: nothing of it may be taken as new.
    await recreateTopic(topic, 2)
    await produceNumbered(producer, topic, 0, 0, 500, { label: 'new-' })
    await produceNumbered(producer, topic, 1, 0, 10, { label: 'new-' })
    await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), error => {
      assert.ok(isBackupError(error, 'KB_TOPIC_RECREATED'), String(error))
      assert.equal(error.topic, topic)
      assert.equal(error.expected, oldId)
      assert.match(error.message, new RegExp(`topic ${topic} .*recreated.*new backup_id`))
      return true
    })
    const cli = await runCli([
      'backup',
      '--config',
      writeConfig(
        `mode: backup\nbackup_id: test-backup\nsource:\n  bootstrap_servers: ${bootstrapServers()}\n  topics:\n    include: [${topic}]\n` +
          `storage:\n  backend: filesystem\n  path: ${storage.location}\n`
      )
    ])
    assert.equal(cli.code, 1, cli.stderr)
    assert.match(cli.stderr, new RegExp(`^kafka-backup: KB_TOPIC_RECREATED: topic ${topic} `, 'm'))
    assert.deepEqual(fingerprint(storage.location), stored, 'the refused runs changed nothing')
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), oldRecords)

    // The documented way on: the new topic under a new backup_id, exactly.
    const fresh = await runBackup(backupOptions(cluster, storage, [topic], { backupId: 'test-backup-new' }))
    assert.equal(fresh.records, 510)
    assert.deepEqual(
      await readBackedUpRecords(storage, 'test-backup-new', topic),
      await readTopicRecords(cluster, topic)
    )

    // The old topic restores under another name with exactly its 3000 records.
    const target = `${topic}-old`
    const restored = await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
    assert.equal(restored.records, 3000)
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), contentOf(oldRecords))
  })

  test('a topic recreated while a run fetches it ends the run with KB_TOPIC_RECREATED; no record of the new topic enters the backup', async () => {
    const topic = uniqueTopic('backup-recreated-live')
    await createTopic(cluster, topic, 1)
    const padding = 'x'.repeat(100)
    for (let from = 0; from < 200; from += 10) {
      await produceNumbered(producer, topic, 0, from, 10, { label: `old-${padding}-` })
    }
    const oldRecords = await readTopicRecords(cluster, topic)
    const storage = new HookedStorage()
    // The first segment opens after the first fetch; holding its upload stalls the fetcher
    // (a byte budget of two fetches) while the topic is replaced by one with more records.
    let recreated = false
    storage.onWrite = async key => {
      if (!recreated && key.endsWith('.seg')) {
        recreated = true
        await recreateTopic(topic, 1)
        // Batches on the same boundaries as the old topic's, so nothing but the topic id tells them apart.
        for (let from = 0; from < 400; from += 10) {
          await produceNumbered(producer, topic, 0, from, 10, { label: 'new-' })
        }
      }
    }
    await assert.rejects(
      runBackup(
        backupOptions(cluster, storage, [topic], {
          fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: 2048, partitionMaxBytes: 1024 },
          compression: 'none',
          frameMaxBytes: 1024,
          maxBytesInFlight: 2048
        })
      ),
      error => {
        assert.ok(isBackupError(error, 'KB_TOPIC_RECREATED'), String(error))
        assert.equal(error.topic, topic)
        assert.equal(error.partition, 0)
        return true
      }
    )
    assert.ok(recreated)
    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.ok(
      backedUp.every(r => r.value?.startsWith('old-')),
      'no record of the new topic'
    )
    assert.deepEqual(backedUp, oldRecords.slice(0, backedUp.length), 'a clean prefix of the old topic')
  })

  test('a source log that ends below the checkpoint (offsets gone backwards) is refused with KB_SOURCE_TRUNCATED, not reported complete', async () => {
    const topic = uniqueTopic('backup-truncated')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 100)
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    // What an unclean leader election does to a one-broker view of the log: the checkpoint
    // (100) lies 50 offsets past the source's log end. One broker cannot elect uncleanly, so the
    // checkpoint is moved instead of the log end.
    const file = indexFile(storage, topic, 0)
    const index = JSON.parse(readFileSync(file, 'utf8'))
    index.nextOffset = '150'
    writeFileSync(file, JSON.stringify(index))
    const stored = fingerprint(storage.location)
    await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), error => {
      assert.ok(isBackupError(error, 'KB_SOURCE_TRUNCATED'), String(error))
      assert.equal(error.topic, topic)
      assert.equal(error.partition, 0)
      assert.equal(error.offset, '150')
      assert.equal(error.found, '100')
      return true
    })
    assert.deepEqual(fingerprint(storage.location), stored)
  })

  test('a checkpoint behind the last stored segment is refused with KB_BACKUP_CORRUPT; no segment is written over or duplicated', async () => {
    const topic = uniqueTopic('backup-rewound')
    await createTopic(cluster, topic, 1)
    for (let from = 0; from < 100; from += 10) {
      await produceNumbered(producer, topic, 0, from, 10)
    }
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const file = indexFile(storage, topic, 0)
    const index = JSON.parse(readFileSync(file, 'utf8'))
    index.nextOffset = '50'
    writeFileSync(file, JSON.stringify(index))
    await produceNumbered(producer, topic, 0, 100, 10)
    const stored = fingerprint(storage.location)
    await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT'), String(error))
      assert.equal(error.topic, topic)
      assert.equal(error.partition, 0)
      assert.equal(error.offset, '50')
      return true
    })
    assert.deepEqual(fingerprint(storage.location), stored)
  })

  test('partitions added to a topic between runs are backed up by the next run from their first offset', async () => {
    const topic = uniqueTopic('backup-more-partitions')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 20)
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const grown = await addPartitions(topic, 3)
    try {
      await produceNumbered(grown, topic, 1, 0, 7)
      await produceNumbered(grown, topic, 2, 0, 3)
      await produceNumbered(grown, topic, 0, 20, 5)
    } finally {
      await grown.close()
    }
    const second = await runBackup(backupOptions(cluster, storage, [topic]))
    assert.equal(second.partitions, 3)
    assert.equal(second.records, 15)
    assert.deepEqual(
      (await readTopicRecords(cluster, topic)).map(r => r.partition),
      [...Array(25).fill(0), ...Array(7).fill(1), ...Array(3).fill(2)]
    )
    assert.equal((await readManifest(storage, 'test-backup'))?.topics[0]?.partitionCount, 3)
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), await readTopicRecords(cluster, topic))
  })

  test('partitions added to a topic while a continuous run follows it are backed up by that run, and the manifest counts them', async () => {
    const topic = uniqueTopic('backup-grows-live')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 20)
    const storage = tempStorage()
    const stop = new AbortController()
    const running = runBackup(
      backupOptions(cluster, storage, [topic], {
        continuous: true,
        checkpointIntervalMs: 200,
        metadataRefreshIntervalMs: 300,
        signal: stop.signal
      })
    )
    const checkpoints = async () =>
      Promise.all(
        [0, 1, 2].map(
          async partition => (await readPartitionIndex(storage, 'test-backup', topic, partition))?.nextOffset
        )
      )
    const waitFor = async (expected: Array<string | undefined>, what: string) => {
      const deadline = Date.now() + 60_000
      while (JSON.stringify(await checkpoints()) !== JSON.stringify(expected)) {
        assert.ok(Date.now() < deadline, `${what}: checkpoints ${JSON.stringify(await checkpoints())}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
    try {
      await waitFor(['20', undefined, undefined], 'the run backed up the first partition')
      const grown = await addPartitions(topic, 3)
      try {
        await produceNumbered(grown, topic, 1, 0, 7)
        await produceNumbered(grown, topic, 2, 0, 3)
        await produceNumbered(grown, topic, 0, 20, 5)
      } finally {
        await grown.close()
      }
      await waitFor(['25', '7', '3'], 'the same run backed up the added partitions')
      assert.equal((await readManifest(storage, 'test-backup'))?.topics[0]?.partitionCount, 3)
    } finally {
      stop.abort()
    }
    const summary = await running
    assert.equal(summary.status, 'stopped')
    assert.equal(summary.partitions, 3)
    assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), await readTopicRecords(cluster, topic))
  })

  test('a backup pointed at another cluster is refused with KB_CONFIG_INVALID naming both cluster ids, before anything is written', async () => {
    const topic = uniqueTopic('backup-other-cluster')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 10)
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    // One test broker is one cluster: the manifest is made to name another one instead.
    const file = newestRevisionFile(join(storage.location, 'test-backup', 'manifest'))!
    const manifest = JSON.parse(readFileSync(file, 'utf8'))
    const clusterId = manifest.source.clusterId
    assert.ok(clusterId)
    manifest.source.clusterId = 'AnotherClusterId000000'
    writeFileSync(file, JSON.stringify(manifest))
    await produceNumbered(producer, topic, 0, 10, 10)
    const stored = fingerprint(storage.location)
    await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), error => {
      assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
      assert.equal(error.path, 'source.bootstrap_servers')
      assert.equal(error.expected, 'AnotherClusterId000000')
      assert.equal(error.found, clusterId)
      return true
    })
    assert.deepEqual(fingerprint(storage.location), stored)
  })
})
