/**
 * A source log truncated and written again between two runs (docs/source-changes.md, "A log
 * truncated and written again"): the next run checks the leader epoch of the last stored batch
 * with the leader and refuses to join the two histories. One broker cannot elect a leader
 * uncleanly, so the other history comes from a topic recreated under the same name, with the
 * backup made to carry the new topic id: what an unclean election leaves (same topic, other
 * records at the same offsets). This file starts a broker of its own: a restart is what moves a
 * partition to a new leader epoch on one broker.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import {
  backupOptions,
  fingerprint,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  tempStorage
} from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { runCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, OwnBroker, uniqueTopic } from '../helpers/kafka.ts'
import { produceNumbered } from '../helpers/setup.ts'
import { readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const own = new OwnBroker('divergence')

async function produce(topic: string, from: number, count: number, label: string): Promise<void> {
  const producer = newProducer({ bootstrapBrokers: [own.bootstrapServers] })
  try {
    for (let at = from; at < from + count; at += 50) {
      await produceNumbered(producer, topic, 0, at, 50, { label })
    }
  } finally {
    await producer.close()
  }
}

async function leaderEpoch(topic: string): Promise<number> {
  let epoch = -1
  await until(async () => {
    const partition = (await own.cluster.metadata([topic]).catch(() => undefined))?.topics.get(topic)?.partitions[0]
    epoch = partition && partition.leader >= 0 ? partition.leaderEpoch : -1
    return epoch >= 0
  }, `a leader of ${topic}/0`)
  return epoch
}

test('a log truncated and written again past the checkpoint is refused with KB_SOURCE_DIVERGED naming the partition, offset and epoch; the backup is left as it was', async () => {
  const topic = uniqueTopic('diverged')
  await createTopic(own.cluster, topic, 1)
  await produce(topic, 0, 100, 'first-')
  const storage = tempStorage()
  const options = () => backupOptions(own.cluster, storage, [topic], { bootstrapServers: [own.bootstrapServers] })
  assert.equal((await runBackup(options())).records, 100)

  // A new leader epoch with the same history: the next run continues, the boundary (the epoch
  // ending exactly at the checkpoint) is no divergence.
  const firstEpoch = await leaderEpoch(topic)
  await own.restart()
  const secondEpoch = await leaderEpoch(topic)
  assert.ok(
    secondEpoch > firstEpoch,
    `the restart moved ${topic}/0 to a new leader epoch (${firstEpoch} -> ${secondEpoch})`
  )
  await produce(topic, 100, 100, 'first-')
  assert.equal((await runBackup(options())).records, 100)
  const index = await readPartitionIndex(storage, 'test-backup', topic, 0)
  assert.deepEqual(
    index?.segments.map(s => s.lastLeaderEpoch),
    [firstEpoch, secondEpoch]
  )
  const history = await readTopicRecords(own.cluster, topic)

  // The other history: offsets 0-299 again, other records, all in epochs below the stored one.
  await own.cluster.admin.deleteTopics({ topics: [topic] })
  await until(async () => !(await own.cluster.admin.listTopics()).includes(topic), `${topic} to be deleted`)
  await createTopic(own.cluster, topic, 1)
  await produce(topic, 0, 300, 'second-')
  const manifestFile = newestRevisionFile(join(storage.location, 'test-backup', 'manifest'))!
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'))
  manifest.topics[0].topicId = (await own.cluster.metadata([topic])).topics.get(topic)!.id
  writeFileSync(manifestFile, JSON.stringify(manifest))
  const stored = fingerprint(storage.location)

  const refused = (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_SOURCE_DIVERGED'), String(error))
    assert.equal(error.topic, topic)
    assert.equal(error.partition, 0)
    assert.equal(error.offset, '199')
    assert.equal(error.leaderEpoch, secondEpoch)
    assert.match(
      error.message,
      new RegExp(`^${topic}/0 .*last batch ends at offset 199 in leader epoch ${secondEpoch}.*new backup_id`)
    )
    return true
  }
  await assert.rejects(runBackup(options()), refused)
  const cli = await runCli([
    'backup',
    '--config',
    writeConfig(
      `mode: backup\nbackup_id: test-backup\nsource:\n  bootstrap_servers: ${own.bootstrapServers}\n  topics:\n    include: [${topic}]\n` +
        `storage:\n  backend: filesystem\n  path: ${storage.location}\n`
    )
  ])
  assert.equal(cli.code, 1, cli.stderr)
  assert.match(cli.stderr, new RegExp(`^kafka-backup: KB_SOURCE_DIVERGED: ${topic}/0 `, 'm'))
  assert.deepEqual(fingerprint(storage.location), stored, 'the refused runs changed nothing')

  // An index written before entries recorded the epoch: the epoch is read from the segment.
  const indexFile = newestRevisionFile(join(storage.location, 'test-backup', 'topics', topic, '0', 'index'))!
  const older = JSON.parse(readFileSync(indexFile, 'utf8'))
  for (const segment of older.segments) {
    delete segment.lastLeaderEpoch
  }
  writeFileSync(indexFile, JSON.stringify(older))
  const storedOlder = fingerprint(storage.location)
  await assert.rejects(runBackup(options()), refused)
  assert.deepEqual(fingerprint(storage.location), storedOlder)
  assert.deepEqual(await readBackedUpRecords(storage, 'test-backup', topic), history)
  assert.equal((await readManifest(storage, 'test-backup'))?.runs.length, 2, 'no run was recorded')
})

test('a log put back to an older copy and written again while a continuous run follows it stops the run with KB_SOURCE_DIVERGED', async () => {
  const topic = uniqueTopic('diverged-live')
  await createTopic(own.cluster, topic, 1)
  await produce(topic, 0, 100, 'first-')
  const firstEpoch = await leaderEpoch(topic)
  // The older copy: the partition's folder while it held offsets 0-99 in the first epoch.
  const partitionDir = join(own.dataDir, `${topic}-0`)
  // Outside the log directory: the broker refuses to start beside a folder it cannot name.
  const olderCopy = join(mkdtempSync(join(tmpdir(), 'kb-older-')), `${topic}-0`)
  await own.stop()
  cpSync(partitionDir, olderCopy, { recursive: true })
  await own.restart()
  const secondEpoch = await leaderEpoch(topic)
  assert.ok(secondEpoch > firstEpoch, `the restart moved ${topic}/0 to a new leader epoch`)
  await produce(topic, 100, 100, 'first-')

  const storage = tempStorage()
  const stop = new AbortController()
  const running = runBackup(
    backupOptions(own.cluster, storage, [topic], {
      bootstrapServers: [own.bootstrapServers],
      continuous: true,
      checkpointIntervalMs: 200,
      signal: stop.signal
    })
  )
  running.catch(() => {})
  try {
    await until(
      async () => (await readPartitionIndex(storage, 'test-backup', topic, 0))?.nextOffset === '200',
      'the continuous run to back up offsets 0-199'
    )
    // The broker comes back from the older disk: offsets 100-199 of the first history are gone,
    // and 150 other records take offsets 100-249, past where the run continues.
    await own.stop()
    rmSync(partitionDir, { recursive: true })
    cpSync(olderCopy, partitionDir, { recursive: true })
    await own.restart()
    await produce(topic, 100, 150, 'second-')
    await assert.rejects(running, (error: unknown) => {
      assert.ok(isBackupError(error, 'KB_SOURCE_DIVERGED'), String(error))
      assert.equal(error.topic, topic)
      assert.equal(error.partition, 0)
      assert.equal(error.offset, '199')
      assert.equal(error.leaderEpoch, secondEpoch)
      return true
    })
  } finally {
    stop.abort()
  }
  const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
  assert.equal(backedUp.length, 200)
  assert.ok(
    backedUp.every(r => r.value?.startsWith('first-')),
    'no record of the other history was backed up'
  )
})
