import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { CompressionAlgorithmValue } from '@platformatic/kafka'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

test('restores every codec to a new topic name, record by record, keys, headers and timestamps equal', async () => {
  const topic = uniqueTopic('restore-codecs')
  const codecs: CompressionAlgorithmValue[] = ['none', 'gzip', 'snappy', 'lz4', 'zstd']
  await createTopic(cluster, topic, codecs.length)
  for (const [partition, compression] of codecs.entries()) {
    for (let round = 0; round < 3; round++) {
      await producer.send({
        compression,
        messages: Array.from({ length: 20 }, (_, i) => ({
          topic,
          partition,
          key: i % 5 === 0 ? undefined : Buffer.from(`key-${round}-${i}`),
          value: i % 7 === 0 ? undefined : Buffer.from(JSON.stringify({ compression, round, i })),
          headers: new Map([[Buffer.from('h'), Buffer.from(`${round}:${i}`)]]),
          timestamp: 1_700_000_000_000n + BigInt(round * 100 + i)
        }))
      })
    }
  }
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const target = `${topic}-restored`
  const summary = await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
  assert.equal(summary.records, 300)
  assert.deepEqual(summary.topicsCreated, [target])
  const source = await readTopicRecords(cluster, topic)
  const restored = await readTopicRecords(cluster, target)
  assert.equal(restored.length, 300)
  assert.deepEqual(contentOf(restored), contentOf(source))
})
