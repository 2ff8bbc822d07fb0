import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runCli } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { readTopicRecords } from '../helpers/topic.ts'

const fixtures = fileURLToPath(new URL('../fixtures/config/oso/', import.meta.url))

const { cluster, producer } = clusterAndProducer()

/** The fixture with its topic `orders` renamed to `topic`, in a fresh folder. */
function fixtureFor(name: string, topic: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kafka-backup-oso-')), name)
  writeFileSync(file, readFileSync(join(fixtures, name), 'utf8').replaceAll(/\borders\b/g, topic))
  return file
}

test('OSO-layout backup and restore configs run unchanged: warnings name the keys, flat partition_mapping swaps partitions', async () => {
  const topic = uniqueTopic('oso-orders')
  await createTopic(cluster, topic, 2)
  for (const partition of [0, 1]) {
    await producer.send({
      messages: Array.from({ length: 20 + partition * 5 }, (_, i) => ({
        topic,
        partition,
        key: Buffer.from(`k${i}`),
        value: Buffer.from(`p${partition}-v${i}`)
      }))
    })
  }
  const env = {
    BACKUP_ID: 'oso-layout',
    KAFKA_BOOTSTRAP_SERVERS: bootstrapServers(),
    BACKUP_PATH: mkdtempSync(join(tmpdir(), 'kafka-backup-oso-store-'))
  }
  const backup = await runCli(['backup', '--config', fixtureFor('backup.yaml', topic), '--json'], env)
  assert.equal(backup.code, 0, backup.stderr)
  assert.match(backup.stderr, /backup\.include_offset_headers has no effect/)
  assert.equal(JSON.parse(backup.stdout).records, 45)

  const restore = await runCli(['restore', '--config', fixtureFor('restore.yaml', topic), '--json'], env)
  assert.equal(restore.code, 0, restore.stderr)
  assert.match(restore.stderr, /restore\.produce_batch_size has no effect/)
  const restored = await readTopicRecords(cluster, `${topic}-restored`)
  const valuesOf = (partition: number) => restored.filter(r => r.partition === partition).map(r => r.value?.toString())
  // partition_mapping {0: 1, 1: 0}, flat as OSO writes it, applies to the topic.
  assert.deepEqual(
    valuesOf(1),
    Array.from({ length: 20 }, (_, i) => `p0-v${i}`)
  )
  assert.deepEqual(
    valuesOf(0),
    Array.from({ length: 25 }, (_, i) => `p1-v${i}`)
  )
})
