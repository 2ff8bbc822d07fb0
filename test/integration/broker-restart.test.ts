/**
 * A broker restarted in the middle of a backup and of a restore: both retry and end with every
 * record exactly once. This file starts a broker of its own, because it restarts it.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BackupEngine } from '../../src/backup/engine.ts'
import { RestoreEngine } from '../../src/restore/engine.ts'
import { backupOptions, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { createTopic, OwnBroker, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions } from '../helpers/restore.ts'
import { produceBatches } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const own = new OwnBroker('restart')
const recordsPerPartition = 4000

async function produce(topic: string): Promise<void> {
  const producer = newProducer({ bootstrapBrokers: [own.bootstrapServers] })
  await produceBatches(producer, topic, { partitions: 2, recordsPerPartition, valueBytes: 100 })
  await producer.close()
}

test('a broker restart during a backup: the backup retries and holds every record exactly once', async () => {
  const topic = uniqueTopic('restart-backup')
  await createTopic(own.cluster, topic, 2)
  await produce(topic)
  const storage = tempStorage()
  // One 100-record batch per Fetch, each held 100 ms: the backup takes seconds. The restart
  // comes once it has written records, and must land before it has written them all.
  const engine = new BackupEngine(
    backupOptions(own.cluster, storage, [topic], {
      bootstrapServers: [own.bootstrapServers],
      fetch: { maxWaitMs: 100, minBytes: 16 * 1024 * 1024, maxBytes: 16 * 1024 * 1024, partitionMaxBytes: 1 }
    })
  )
  const running = engine.run()
  const written = () => engine.progress().reduce((sum, p) => sum + p.records, 0)
  await until(() => written() > 0, 'the backup to write its first records')
  await own.restart(1000)
  assert.ok(written() < 2 * recordsPerPartition, `the restart landed inside the backup (${written()} records)`)
  const summary = await running
  assert.equal(summary.records, 2 * recordsPerPartition)
  const records = await readBackedUpRecords(storage, 'test-backup', topic)
  for (let partition = 0; partition < 2; partition++) {
    assert.deepEqual(
      records.filter(r => r.partition === partition).map(r => r.offset),
      Array.from({ length: recordsPerPartition }, (_, i) => BigInt(i))
    )
  }
})

test('a broker restart during a restore: the restore retries and writes every record exactly once', async () => {
  const topic = uniqueTopic('restart-restore')
  await createTopic(own.cluster, topic, 2)
  await produce(topic)
  const storage = tempStorage()
  await runBackup(backupOptions(own.cluster, storage, [topic], { bootstrapServers: [own.bootstrapServers] }))
  const target = `${topic}-restored`
  const warnings: string[] = []
  const engine = new RestoreEngine(
    restoreOptions(own.cluster, storage, {
      bootstrapServers: [own.bootstrapServers],
      topicMapping: { [topic]: target },
      rateLimitBytesPerSec: 256 * 1024,
      onWarning: message => warnings.push(message)
    })
  )
  const running = engine.run()
  const restored = () => engine.progress().reduce((sum, p) => sum + p.records, 0)
  // The rate limit makes the restore take seconds; the restart comes once it has written records.
  await until(() => restored() > 0, 'the restore to write its first records')
  await own.restart(1000)
  assert.ok(restored() < 2 * recordsPerPartition, `the restart landed inside the restore (${restored()} records)`)
  const summary = await running
  assert.equal(summary.records, 2 * recordsPerPartition)
  assert.ok(
    warnings.some(w => w.startsWith('restarting the restore')),
    `the restore saw the broker go away: ${warnings}`
  )
  assert.deepEqual(
    contentOf(await readTopicRecords(own.cluster, target)),
    contentOf(await readTopicRecords(own.cluster, topic))
  )
})
