import assert from 'node:assert/strict'
import { test } from 'node:test'
import { readPartitionIndex } from '../../src/catalog/manifest.ts'
import { backupOptions, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()

test('a one-shot backup stores every record of every partition, and a rerun adds exactly the new ones', async () => {
  const topic = uniqueTopic('backup-incremental')
  await createTopic(cluster, topic, 3)
  for (let partition = 0; partition < 3; partition++) {
    await produceNumbered(producer, topic, partition, 0, 50)
  }
  const storage = tempStorage()
  const first = await runBackup(backupOptions(cluster, storage, [topic]))
  assert.equal(first.records, 150)
  assert.equal(first.status, 'complete')

  for (let partition = 0; partition < 3; partition++) {
    await produceNumbered(producer, topic, partition, 50, 20)
  }
  const second = await runBackup(backupOptions(cluster, storage, [topic]))
  assert.equal(second.records, 60, 'the second run backs up only what was produced since the first')

  const records = await readBackedUpRecords(storage, 'test-backup', topic)
  assert.equal(records.length, 210)
  for (let partition = 0; partition < 3; partition++) {
    const inPartition = records.filter(r => r.partition === partition)
    assert.deepEqual(
      inPartition.map(r => r.offset),
      Array.from({ length: 70 }, (_, i) => BigInt(i))
    )
    assert.deepEqual(
      inPartition.map(r => r.value),
      Array.from({ length: 70 }, (_, i) => `v${i}`)
    )
    const index = await readPartitionIndex(storage, 'test-backup', topic, partition)
    assert.equal(index?.nextOffset, '70')
    assert.equal(index?.segments.length, 2)
  }
})
