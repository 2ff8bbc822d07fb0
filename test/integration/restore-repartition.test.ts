/**
 * Restoring into a different partition count (restore.repartition) against the real broker,
 * checked with Kafka's own Java code: every keyed record lands where the Java producer's
 * partitioner puts its key, each key keeps its order, nothing is lost or doubled, and a group's
 * translated offsets never skip a record it had not consumed.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { kafkaJavaArgs } from '../../scripts/broker.ts'
import { listOffsets } from '../../src/kafka/admin.ts'
import { restoreStateBase } from '../../src/restore/state.ts'
import {
  backupOptions,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  type StoredRecord,
  tempStorage
} from '../helpers/backup.ts'
import { BASE_TIMESTAMP, produceTransactional } from '../helpers/cases.ts'
import { restoreYaml, runCli, writeConfig } from '../helpers/cli.ts'
import { consoleConsumeCommitted } from '../helpers/console-consumer.ts'
import { bootstrapServers, createTopic, runKafkaTool, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore, runRestoreStoppedAt } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

/** Where the Java client's BuiltInPartitioner puts each key among `partitions`. */
function javaPartitions(keys: string[], partitions: number): Map<string, number> {
  const source = join(import.meta.dirname, '../fixtures/java/KeyPartitions.java')
  const result = spawnSync('java', kafkaJavaArgs(source, [String(partitions)], ['-Xmx256m']), {
    input: `${keys.join('\n')}\n`,
    encoding: 'utf8'
  })
  assert.equal(result.status, 0, result.stderr)
  const lines = result.stdout.trim().split('\n')
  assert.equal(lines.length, keys.length)
  return new Map(keys.map((key, i) => [key, Number(lines[i])]))
}

/** The group's committed offsets on `topic` as Kafka's consumer-group tool describes them. */
function javaCommittedOffsets(groupId: string, topic: string): Map<number, bigint> {
  const output = runKafkaTool('org.apache.kafka.tools.consumer.group.ConsumerGroupCommand', [
    '--bootstrap-server',
    bootstrapServers(),
    '--describe',
    '--group',
    groupId
  ])
  const offsets = new Map<number, bigint>()
  for (const line of output.split('\n')) {
    const columns = line.trim().split(/\s+/)
    if (columns[1] === topic && /^\d+$/.test(columns[3] ?? '')) {
      offsets.set(Number(columns[2]), BigInt(columns[3]!))
    }
  }
  return offsets
}

const SOURCE_PARTITIONS = 3
const TARGET_PARTITIONS = 5
const PER_PARTITION = 240

/** Value `s<source partition>-<source offset>`; keys user-0..29 stay in one source partition each. */
async function produceKeyed(topic: string): Promise<void> {
  const codecs = ['zstd', 'gzip', 'none', 'lz4'] as const
  for (let partition = 0; partition < SOURCE_PARTITIONS; partition++) {
    for (let from = 0; from < PER_PARTITION; from += 40) {
      await producer.send({
        compression: codecs[(from / 40) % codecs.length],
        messages: Array.from({ length: 40 }, (_, i) => {
          const offset = from + i
          // Every seventh record has no key.
          const key =
            offset % 7 === 3 ? undefined : Buffer.from(`user-${partition + SOURCE_PARTITIONS * (offset % 10)}`)
          return {
            topic,
            partition,
            key,
            value: Buffer.from(`s${partition}-${offset}`),
            headers: new Map([[Buffer.from('seq'), Buffer.from(String(offset))]]),
            timestamp: BASE_TIMESTAMP + BigInt(offset * 3 + partition)
          }
        })
      })
    }
  }
}

const sourceOf = (record: StoredRecord) => {
  const [, partition, offset] = /^s(\d+)-(\d+)$/.exec(record.value ?? '') ?? []
  return { partition: Number(partition), offset: BigInt(offset!) }
}

test('issue 14: a topic restored from 3 into 5 partitions puts each key where the Java partitioner does, in order, once, with group offsets that skip nothing', async () => {
  const topic = uniqueTopic('repartition')
  await createTopic(cluster, topic, SOURCE_PARTITIONS)
  await produceKeyed(topic)
  const groupId = `${topic}-reader`
  // Partition 1 has no committed offset: the group counts as not having read it.
  const committed = new Map([
    [0, 100n],
    [2, 175n]
  ])
  await cluster.admin.alterConsumerGroupOffsets({
    groupId,
    topics: [{ name: topic, partitionOffsets: [...committed].map(([partition, offset]) => ({ partition, offset })) }]
  })
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))

  const target = `${topic}-wide`
  const plan = await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      repartition: true,
      targetPartitions: { [topic]: TARGET_PARTITIONS },
      dryRun: true
    })
  )
  assert.deepEqual(plan.topicsCreated, [target])
  assert.ok(
    plan.notes.some(note => note.includes(`re-partitioned by key from 3 into the 5 partitions of ${target}`)),
    plan.notes.join('\n')
  )
  assert.equal(plan.records, SOURCE_PARTITIONS * PER_PARTITION)
  const summary = await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      repartition: true,
      targetPartitions: { [topic]: TARGET_PARTITIONS },
      resetConsumerOffsets: true,
      consumerGroups: [groupId]
    })
  )
  const total = SOURCE_PARTITIONS * PER_PARTITION
  assert.equal(summary.records, total)

  const restored = await consoleConsumeCommitted(target, total)
  assert.equal(restored.length, total)
  assert.equal(new Set(restored.map(r => r.partition)).size, TARGET_PARTITIONS)
  // Once each, unchanged.
  assert.deepEqual(
    restored.map(r => r.value).sort(),
    Array.from({ length: SOURCE_PARTITIONS }, (_, p) => Array.from({ length: PER_PARTITION }, (_, o) => `s${p}-${o}`))
      .flat()
      .sort()
  )
  for (const record of restored) {
    const source = sourceOf(record)
    assert.deepEqual(record.headers, [['seq', String(source.offset)]])
    assert.equal(record.timestamp, BASE_TIMESTAMP + source.offset * 3n + BigInt(source.partition))
  }
  // Keyed records where the Java producer puts their key; keyless ones at source partition mod 5.
  const keys = [...new Set(restored.flatMap(r => (r.key === null ? [] : [r.key])))]
  const java = javaPartitions(keys, TARGET_PARTITIONS)
  for (const record of restored) {
    const expected = record.key === null ? sourceOf(record).partition % TARGET_PARTITIONS : java.get(record.key)
    assert.equal(record.partition, expected, `${record.key} ${record.value}`)
  }
  // Per key (and for the keyless records of each source partition), source order.
  const lastSeen = new Map<string, bigint>()
  for (const record of restored) {
    const source = sourceOf(record)
    const stream = record.key ?? `null from ${source.partition}`
    assert.ok((lastSeen.get(stream) ?? -1n) < source.offset, `${stream} in order`)
    lastSeen.set(stream, source.offset)
  }

  // The group: no record it had not read on the source is below its offset on the target.
  const targetOffsets = javaCommittedOffsets(groupId, target)
  assert.equal(targetOffsets.size, TARGET_PARTITIONS)
  for (let partition = 0; partition < TARGET_PARTITIONS; partition++) {
    const here = restored.filter(r => r.partition === partition)
    const unread = here.filter(r => sourceOf(r).offset >= (committed.get(sourceOf(r).partition) ?? 0n))
    const resumeAt = targetOffsets.get(partition)!
    const firstUnread = unread[0]?.offset ?? BigInt(here.length)
    assert.ok(resumeAt <= firstUnread, `partition ${partition}: resumes at ${resumeAt}, first unread ${firstUnread}`)
    // Sparse offset runs round down by less than one run (64 records).
    assert.ok(firstUnread - resumeAt < 64n, `partition ${partition}: re-reads ${firstUnread - resumeAt} records`)
  }
})

test('a re-partitioned restore with erasure of a transactional topic, stopped midway, resumes exactly, also after losing its checkpoints', async () => {
  const topic = uniqueTopic('repartition-tx')
  await createTopic(cluster, topic, 2)
  const committed = await produceTransactional(topic, producer)
  for (let partition = 0; partition < 2; partition++) {
    await producer.send({
      compression: 'gzip',
      messages: Array.from({ length: 600 }, (_, i) => ({
        topic,
        partition,
        key: i % 11 === 0 ? undefined : Buffer.from(`acct-${partition}-${i % 17}`),
        value: Buffer.from(`bulk-${partition}-${i}`),
        timestamp: BASE_TIMESTAMP + 1000n + BigInt(i)
      }))
    })
  }
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const source = await readBackedUpRecords(storage, 'test-backup', topic)
  assert.equal(source.length, committed + 1200)
  const erased = (key: string | null) => key !== null && (key.startsWith('plain-2-') || key === 'acct-1-5')
  const expected = source.filter(r => !erased(r.key))

  const target = `${topic}-wide`
  const options = {
    topicMapping: { [topic]: target },
    repartition: true,
    targetPartitions: { [topic]: 3 },
    erase: { keys: ['acct-1-5'], patterns: ['plain-2-*'] },
    coalesceMaxBytes: 1024,
    maxInFlightPerPartition: 1,
    checkpointIntervalMs: 20
  }
  const stopped = await runRestoreStoppedAt(restoreOptions(cluster, storage, options), 2)
  assert.equal(stopped.status, 'stopped')
  assert.ok(stopped.records > 0 && stopped.records < expected.length, `stopped after ${stopped.records} records`)
  const stateFile = newestRevisionFile(join(storage.location, restoreStateBase('test-backup', stopped.restoreId)))!

  /** The target holds every record not erased once, each key where Java puts it, in order. */
  const assertExact = async (label: string) => {
    const restored = await readTopicRecords(cluster, target)
    assert.deepEqual(
      contentOf(restored)
        .map(r => JSON.stringify([r.key, r.value, r.headers, String(r.timestamp)]))
        .sort(),
      contentOf(expected)
        .map(r => JSON.stringify([r.key, r.value, r.headers, String(r.timestamp)]))
        .sort(),
      label
    )
    const java = javaPartitions([...new Set(expected.flatMap(r => (r.key === null ? [] : [r.key])))], 3)
    const sourceOrder = new Map(source.map((r, i) => [r.value, i]))
    const lastSeen = new Map<string, number>()
    for (const record of restored) {
      if (record.key !== null) {
        assert.equal(record.partition, java.get(record.key), `${label}: ${record.key}`)
        const at = sourceOrder.get(record.value)!
        assert.ok((lastSeen.get(record.key) ?? -1) < at, `${label}: ${record.key} in order`)
        lastSeen.set(record.key, at)
      }
    }
  }

  const resumed = await runRestore(restoreOptions(cluster, storage, options))
  assert.equal(resumed.status, 'complete')
  assert.equal(resumed.restoreId, stopped.restoreId)
  assert.equal(resumed.records, expected.length)
  assert.equal(resumed.erasedRecords, source.length - expected.length)
  await assertExact('resumed')

  // A crash that lost every checkpoint after the stop: the records already in the target are
  // found and mapped, not written again, and the erased count stays exact.
  for (const name of readdirSync(dirname(stateFile))) {
    if (join(dirname(stateFile), name) > stateFile) {
      rmSync(join(dirname(stateFile), name))
    }
  }
  const rerun = await runRestore(restoreOptions(cluster, storage, options))
  assert.equal(rerun.status, 'complete')
  assert.equal(rerun.records, expected.length)
  assert.equal(rerun.erasedRecords, source.length - expected.length)
  await assertExact('rerun after lost checkpoints')
})

test('the CLI re-partitions into an existing topic with fewer partitions and erases keys from a keys file beside the config, reporting both in --json', async () => {
  const topic = uniqueTopic('repartition-cli')
  await createTopic(cluster, topic, SOURCE_PARTITIONS)
  await produceKeyed(topic)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const target = `${topic}-narrow`
  await createTopic(cluster, target, 2)

  const refused = await runCli(['restore', '--config', writeConfig(restoreYaml(topic, target, storage.location))])
  assert.notEqual(refused.code, 0)
  assert.match(refused.stderr, /target topic .* has 2 partitions; restoring .* needs 3/)

  const config = writeConfig(
    restoreYaml(
      topic,
      target,
      storage.location,
      '  repartition:\n    enabled: true\n  erase:\n    keys_file: erase-request.txt\n'
    )
  )
  writeFileSync(join(dirname(config), 'erase-request.txt'), 'user-4\nuser-8\n')
  const result = await runCli(['restore', '--config', config, '--json'])
  assert.equal(result.code, 0, result.stderr)
  const summary = JSON.parse(result.stdout)
  // Keys as produceKeyed writes them: user-4 lives in source partition 1, user-8 in 2.
  let erased = 0
  for (let offset = 0; offset < PER_PARTITION; offset++) {
    if (offset % 7 !== 3 && (offset % 10 === 1 || offset % 10 === 2)) erased++
  }
  const restored = await consoleConsumeCommitted(target, SOURCE_PARTITIONS * PER_PARTITION - erased)
  assert.equal(restored.length, SOURCE_PARTITIONS * PER_PARTITION - erased)
  const ends = await listOffsets(
    cluster,
    [0, 1].map(partition => ({ topic: target, partition })),
    'latest'
  )
  assert.equal(
    [...ends.values()].reduce((a, b) => a + b, 0n),
    BigInt(restored.length),
    'nothing more in the target'
  )
  assert.equal(summary.erasedRecords, erased)
  assert.equal(summary.records, restored.length)
  assert.ok(summary.notes.some((note: string) => note.includes('re-partitioned by key from 3 into the 2 partitions')))
  assert.equal(restored.filter(r => r.key === 'user-4' || r.key === 'user-8').length, 0)
  const java = javaPartitions([...new Set(restored.flatMap(r => (r.key === null ? [] : [r.key])))], 2)
  for (const record of restored) {
    const expected = record.key === null ? sourceOf(record).partition % 2 : java.get(record.key)
    assert.equal(record.partition, expected, `${record.key} ${record.value}`)
  }
})

test('a source batch whose records all go to one target partition is split to fit the target topic max.message.bytes', async () => {
  const topic = uniqueTopic('repartition-large')
  await createTopic(cluster, topic, 1)
  // One uncompressed source batch of about 300 KB, every record with the same key.
  await producer.send({
    messages: Array.from({ length: 300 }, (_, i) => ({
      topic,
      partition: 0,
      key: Buffer.from('tenant-7'),
      value: Buffer.from(`${i}:${'x'.repeat(1000)}`)
    }))
  })
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const target = `${topic}-wide`
  await createTopic(cluster, target, 4, { 'max.message.bytes': '65536' })
  const summary = await runRestore(
    restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, repartition: true })
  )
  assert.equal(summary.records, 300)
  const restored = await readTopicRecords(cluster, target)
  const partition = javaPartitions(['tenant-7'], 4).get('tenant-7')
  assert.deepEqual(
    restored.map(r => [r.partition, r.value?.split(':')[0]]),
    Array.from({ length: 300 }, (_, i) => [partition, String(i)])
  )
})
