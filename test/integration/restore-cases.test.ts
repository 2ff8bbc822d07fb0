/**
 * The data cases of the restore issue against the real broker, at library level. One backup
 * (made in `before`) holds every data case of the backup issue; each test restores its topic
 * to a new name and compares source and target record by record (partition, key, value,
 * headers, timestamp, in order). Tests that need their own backup (PITR, resume, corruption)
 * make one.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { before, describe, test } from 'node:test'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { readPartitionIndex } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { describeTopicConfigs, listTopics } from '../../src/kafka/admin.ts'
import { restoreStateBase } from '../../src/restore/state.ts'
import type { FilesystemStorage } from '../../src/storage/filesystem.ts'
import {
  backupOptions,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  type StoredRecord,
  tempStorage
} from '../helpers/backup.ts'
import {
  BASE_TIMESTAMP,
  createCompactedTopic,
  LARGE_TOPIC_CONFIGS,
  produceCompacted,
  produceDataKinds,
  produceLarge,
  produceTransactional
} from '../helpers/cases.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore, runRestoreStoppedAt } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { contentOf, endOffsets, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()
/** One backup of every data case of the backup issue. */
let storage: FilesystemStorage
const topics = {
  kinds: uniqueTopic('restore-kinds'),
  large: uniqueTopic('restore-large'),
  transactional: uniqueTopic('restore-txn'),
  compacted: uniqueTopic('restore-compacted'),
  emptyPartition: uniqueTopic('restore-empty-partition'),
  gap: uniqueTopic('restore-retention-gap'),
  mapping: uniqueTopic('restore-mapping'),
  configs: uniqueTopic('restore-configs'),
  nonEmpty: uniqueTopic('restore-non-empty'),
  dryRun: uniqueTopic('restore-dry-run')
}

before(async () => {
  storage = tempStorage()
  // Topics first, one by one (see the note on concurrent Metadata calls below), then the data.
  await createTopic(cluster, topics.kinds, 5)
  await createTopic(cluster, topics.large, 1, LARGE_TOPIC_CONFIGS)
  await createTopic(cluster, topics.transactional, 2)
  await createCompactedTopic(cluster, topics.compacted)
  await createTopic(cluster, topics.emptyPartition, 3)
  await createTopic(cluster, topics.gap, 1)
  await createTopic(cluster, topics.mapping, 3)
  await createTopic(cluster, topics.configs, 4, { 'cleanup.policy': 'compact', 'retention.ms': '123456789' })
  await createTopic(cluster, topics.nonEmpty, 2)
  await createTopic(cluster, topics.dryRun, 2)
  await Promise.all([
    produceDataKinds(producer, topics.kinds),
    produceLarge(producer, topics.large),
    produceTransactional(topics.transactional, producer),
    produceCompacted(producer, cluster, topics.compacted),
    (async () => {
      await produceNumbered(producer, topics.emptyPartition, 0, 0, 10)
      await produceNumbered(producer, topics.emptyPartition, 2, 0, 5)
    })(),
    produceNumbered(producer, topics.gap, 0, 0, 100),
    (async () => {
      for (let partition = 0; partition < 3; partition++) {
        await produceNumbered(producer, topics.mapping, partition, 0, 10 + partition, { label: `p${partition}-` })
      }
      for (let partition = 0; partition < 4; partition++) {
        await produceNumbered(producer, topics.configs, partition, partition * 100, 5)
      }
      await produceNumbered(producer, topics.nonEmpty, 0, 0, 7)
      await produceNumbered(producer, topics.nonEmpty, 1, 0, 3)
      await produceNumbered(producer, topics.dryRun, 1, 0, 9)
    })()
  ])
  await runBackup(backupOptions(cluster, storage, Object.values(topics)))
  // Retention moves the gap topic's log start into a batch between two runs.
  for (let from = 100; from < 200; from += 25) {
    await produceNumbered(producer, topics.gap, 0, from, 25)
  }
  await cluster.admin.deleteRecords({ topics: [{ name: topics.gap, partitions: [{ partition: 0, offset: 160n }] }] })
  const second = await runBackup(backupOptions(cluster, storage, Object.values(topics)))
  assert.equal(second.gaps.length, 1)
})
async function restoreTopic(source: string, overrides: Parameters<typeof restoreOptions>[2] = {}) {
  const target = `${source}-restored`
  const summary = await runRestore(
    restoreOptions(cluster, storage, {
      topics: { include: [source], exclude: [] },
      topicMapping: { [source]: target },
      ...overrides
    })
  )
  return { target, summary }
}

/** Restored records sit at offsets 0..n-1 of each partition: no control record in between. */
async function assertContiguous(topic: string, partitions: number, restored: StoredRecord[]) {
  const ends = await endOffsets(cluster, topic, partitions)
  for (let partition = 0; partition < partitions; partition++) {
    const inPartition = restored.filter(r => r.partition === partition)
    assert.deepEqual(
      inPartition.map(r => r.offset),
      inPartition.map((_, i) => BigInt(i))
    )
    assert.equal(ends[partition], BigInt(inPartition.length), `${topic}/${partition} holds only restored records`)
  }
}

// One after the other: @platformatic/kafka hands the result (or error) of one in-flight
// Metadata call to every concurrent caller, whatever topics they asked for.
describe('restore data cases', () => {
  for (const [name, partitions] of [
    ['kinds', 5],
    ['large', 1],
    ['transactional', 2],
    ['compacted', 1],
    ['emptyPartition', 3]
  ] as const) {
    test(`restores the ${name} case of the backup to a new topic name, record by record`, async () => {
      const source = topics[name]
      const { target, summary } = await restoreTopic(source)
      assert.equal(summary.status, 'complete')
      assert.deepEqual(summary.topicsCreated, [target])
      const expected = await readTopicRecords(cluster, source)
      const restored = await readTopicRecords(cluster, target)
      assert.ok(expected.length > 0)
      assert.equal(summary.records, expected.length)
      assert.deepEqual(contentOf(restored), contentOf(expected))
      assert.ok(restored.every(r => !r.value?.startsWith('aborted')))
      await assertContiguous(target, partitions, restored)
    })
  }

  test('restores a partition whose log start retention moved between backup runs: the gap stays out, also the records of the batch it cut', async () => {
    const backedUp = await readBackedUpRecords(storage, 'test-backup', topics.gap)
    // The backup kept the batch holding the new log start (160) whole, records 150-159 included.
    assert.ok(backedUp.some(r => r.offset === 150n))
    const expected = backedUp.filter(r => r.offset < 100n || r.offset >= 160n)
    assert.deepEqual(
      expected.filter(r => r.offset >= 160n),
      await readTopicRecords(cluster, topics.gap)
    )
    const { target, summary } = await restoreTopic(topics.gap)
    assert.equal(summary.records, 140)
    const restored = await readTopicRecords(cluster, target)
    assert.deepEqual(contentOf(restored), contentOf(expected))
  })

  test('partitionMapping and sourcePartitions restore the chosen partitions into the mapped ones', async () => {
    const { target, summary } = await restoreTopic(topics.mapping, {
      sourcePartitions: { [topics.mapping]: [0, 2] },
      partitionMapping: { [topics.mapping]: { '0': 2, '2': 0 } }
    })
    assert.deepEqual(
      summary.partitions.map(p => [p.source, p.target]),
      [
        [`${topics.mapping}/0`, `${target}/2`],
        [`${topics.mapping}/2`, `${target}/0`]
      ]
    )
    const source = await readTopicRecords(cluster, topics.mapping)
    const restored = await readTopicRecords(cluster, target)
    const partitionContent = (records: StoredRecord[], partition: number) =>
      contentOf(records.filter(r => r.partition === partition)).map(({ partition: _p, ...rest }) => rest)
    assert.deepEqual(partitionContent(restored, 2), partitionContent(source, 0))
    assert.deepEqual(partitionContent(restored, 0), partitionContent(source, 2))
    assert.deepEqual(partitionContent(restored, 1), [])
    assert.equal((await cluster.metadata([target])).topics.get(target)?.partitionsCount, 3)
  })

  test('createTopics recreates the partition count and the topic configs (cleanup.policy=compact, retention.ms)', async () => {
    const { target } = await restoreTopic(topics.configs)
    assert.equal((await cluster.metadata([target])).topics.get(target)?.partitionsCount, 4)
    const configs = (await describeTopicConfigs(cluster, [target])).get(target)
    assert.equal(configs?.['cleanup.policy'], 'compact')
    assert.equal(configs?.['retention.ms'], '123456789')
    assert.deepEqual(
      contentOf(await readTopicRecords(cluster, target)),
      contentOf(await readTopicRecords(cluster, topics.configs))
    )
  })

  test('a target partition that already holds records is refused with KB_TARGET_NOT_EMPTY, unless allowNonEmptyTarget appends after them', async () => {
    const target = `${topics.nonEmpty}-restored`
    await createTopic(cluster, target, 2)
    await producer.send({
      messages: [{ topic: target, partition: 1, key: Buffer.from('already'), value: Buffer.from('there') }]
    })
    await assert.rejects(restoreTopic(topics.nonEmpty), error => {
      assert.ok(isBackupError(error, 'KB_TARGET_NOT_EMPTY'))
      assert.match(error.message, new RegExp(`${target}/1`))
      return true
    })
    assert.equal((await readTopicRecords(cluster, target)).length, 1, 'nothing was written')

    const { summary } = await restoreTopic(topics.nonEmpty, { allowNonEmptyTarget: true })
    assert.equal(summary.records, 10)
    const restored = await readTopicRecords(cluster, target)
    const source = await readTopicRecords(cluster, topics.nonEmpty)
    assert.deepEqual(
      contentOf(restored.filter(r => r.partition === 0)),
      contentOf(source.filter(r => r.partition === 0))
    )
    assert.deepEqual(
      restored.filter(r => r.partition === 1).map(r => r.value),
      ['there', ...source.filter(r => r.partition === 1).map(r => r.value)]
    )
  })

  test('dryRun returns the plan and creates no topic, writes no record and no restore state', async () => {
    const statesBefore = await storage.list('test-backup/restores/')
    const { target, summary } = await restoreTopic(topics.dryRun, { dryRun: true })
    assert.equal(summary.status, 'planned')
    assert.equal(summary.dryRun, true)
    assert.deepEqual(summary.topicsCreated, [target])
    assert.equal(summary.records, 9)
    assert.deepEqual(
      summary.partitions.map(p => [p.source, p.target, p.records]),
      [
        [`${topics.dryRun}/0`, `${target}/0`, 0],
        [`${topics.dryRun}/1`, `${target}/1`, 9]
      ]
    )
    assert.ok(!(await listTopics(cluster)).some(t => t.name === target))
    assert.deepEqual(await storage.list(`${restoreStateBase('test-backup', summary.restoreId)}`), [])
    assert.deepEqual(await storage.list('test-backup/restores/'), statesBefore)
  })
})

describe('restore windows, resume and corruption', () => {
  test('PITR keeps exactly the records with timestamps inside the inclusive window, at millisecond edges, in and across batches, out of order', async () => {
    const topic = uniqueTopic('restore-pitr')
    await createTopic(cluster, topic, 3)
    const start = BASE_TIMESTAMP + 100_000n
    const end = start + 1000n
    const send = (partition: number, timestamps: bigint[]) =>
      producer.send({
        messages: timestamps.map((timestamp, i) => ({
          topic,
          partition,
          key: Buffer.from(`p${partition}-${i}`),
          value: Buffer.from(`at ${timestamp - start}`),
          timestamp
        }))
      })
    // One batch straddling both edges.
    await send(0, [start - 1n, start, start + 1n, end - 1n, end, end + 1n])
    // Edges between batches, and batches wholly before, inside and after the window.
    await send(1, [start - 3n, start - 2n, start - 1n])
    await send(1, [start, start + 1n])
    await send(1, [start + 10n, start + 11n])
    await send(1, [end - 1n, end])
    await send(1, [end + 1n, end + 2n])
    // Out of order inside one batch.
    await send(2, [end + 1n, start, start - 1n, end, start + 500n, end + 5n, start - 100n])

    const pitrStorage = tempStorage()
    // Frames of about one batch, so that whole frames before the window are skipped too.
    await runBackup(backupOptions(cluster, pitrStorage, [topic], { frameMaxBytes: 100 }))
    const target = `${topic}-restored`
    const summary = await runRestore(
      restoreOptions(cluster, pitrStorage, { topicMapping: { [topic]: target }, window: { start, end } })
    )
    const source = await readTopicRecords(cluster, topic)
    const expected = source.filter(r => r.timestamp >= start && r.timestamp <= end)
    const restored = await readTopicRecords(cluster, target)
    assert.equal(summary.records, expected.length)
    assert.deepEqual(contentOf(restored), contentOf(expected))
    const at = (partition: number) => restored.filter(r => r.partition === partition).map(r => r.timestamp - start)
    assert.deepEqual(at(0), [0n, 1n, 999n, 1000n])
    assert.deepEqual(at(1), [0n, 1n, 10n, 11n, 999n, 1000n])
    assert.deepEqual(at(2), [0n, 1000n, 500n])
  })

  test('a restore aborted midway and run again, or rerun from an older checkpoint, writes every record exactly once', async () => {
    const topic = uniqueTopic('restore-resume')
    await createTopic(cluster, topic, 2)
    for (let from = 0; from < 400; from += 10) {
      await produceNumbered(producer, topic, 0, from, 10)
      await produceNumbered(producer, topic, 1, from, 10)
    }
    const resumeStorage = tempStorage()
    await runBackup(backupOptions(cluster, resumeStorage, [topic]))
    const target = `${topic}-restored`
    // Small requests, one at a time per partition, so that the abort lands midway.
    const options = {
      topicMapping: { [topic]: target },
      coalesceMaxBytes: 1024,
      maxInFlightPerPartition: 1,
      checkpointIntervalMs: 20
    }
    const stopped = await runRestoreStoppedAt(restoreOptions(cluster, resumeStorage, options), 5)
    assert.equal(stopped.status, 'stopped')
    assert.ok(stopped.records > 0 && stopped.records < 800, `stopped after ${stopped.records} records`)
    const stateFile = newestRevisionFile(
      join(resumeStorage.location, restoreStateBase('test-backup', stopped.restoreId))
    )!
    const checkpointAtStop = readFileSync(stateFile)

    const resumed = await runRestore(restoreOptions(cluster, resumeStorage, options))
    assert.equal(resumed.status, 'complete')
    assert.equal(resumed.restoreId, stopped.restoreId)
    const source = await readTopicRecords(cluster, topic)
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), contentOf(source))

    // A crash that lost every checkpoint after the stop: the rerun finds the records already in
    // the target, maps them instead of writing them again.
    const state = JSON.parse(checkpointAtStop.toString())
    assert.ok(state.partitions.some((p: { done: boolean }) => !p.done))
    // The revisions written after the stop are the lost checkpoints.
    for (const name of readdirSync(dirname(stateFile))) {
      if (join(dirname(stateFile), name) > stateFile) {
        rmSync(join(dirname(stateFile), name))
      }
    }
    const rerun = await runRestore(restoreOptions(cluster, resumeStorage, options))
    assert.equal(rerun.status, 'complete')
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), contentOf(source))
    assert.deepEqual(await endOffsets(cluster, target, 2), [400n, 400n])
  })

  test('a bit-flipped segment is refused with KB_SEGMENT_CORRUPT naming the segment', async () => {
    const topic = uniqueTopic('restore-corrupt')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 50)
    const corruptStorage = tempStorage()
    await runBackup(backupOptions(cluster, corruptStorage, [topic]))
    const index = await readPartitionIndex(corruptStorage, 'test-backup', topic, 0)
    const segmentKey = `test-backup/${index!.segments[0]!.key}`
    const segmentFile = join(corruptStorage.location, segmentKey)
    const bytes = readFileSync(segmentFile)
    // The header is 30 bytes plus the topic name; the first frame follows it.
    const insideFirstFrame = 30 + Buffer.byteLength(topic) + 20
    bytes[insideFirstFrame] = bytes[insideFirstFrame]! ^ 0x10
    writeFileSync(segmentFile, bytes)

    const report = await validateBackup(corruptStorage, 'test-backup', { deep: true })
    assert.equal(report.valid, false)
    assert.deepEqual(
      report.problems.map(p => [p.code, p.key]),
      [['KB_SEGMENT_CORRUPT', segmentKey]],
      'validate --deep names the segment'
    )
    assert.match(report.problems[0]!.message, /frame 0/)

    const target = `${topic}-restored`
    await assert.rejects(
      runRestore(restoreOptions(cluster, corruptStorage, { topicMapping: { [topic]: target } })),
      error => {
        assert.ok(isBackupError(error, 'KB_SEGMENT_CORRUPT'), String(error))
        assert.ok(error.message.includes(segmentKey), error.message)
        return true
      }
    )
    assert.deepEqual(await endOffsets(cluster, target, 1), [0n], 'nothing of the corrupt frame reached the target')
  })
})
