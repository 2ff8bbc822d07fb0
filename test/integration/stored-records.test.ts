/**
 * `backup.store_records` against the real broker: topics written with every producer codec
 * (none, gzip, snappy, lz4, zstd) and an lz4 topic with committed and aborted transactions are
 * backed up as fetched and with records decompressed. The decompressed backup must hold the
 * same batches (boundaries, header fields, codec, records) and restore record by record to what
 * the source holds; a backup whose partition holds segments of both kinds restores too.
 */
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { Codec, type RecordBatchView } from '../../src/batch/header.ts'
import { uncompressedRecords } from '../../src/batch/records.ts'
import { openIndexedSegment } from '../../src/catalog/audit.ts'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { readPartitionBatches } from '../../src/restore/source.ts'
import { FrameFlag } from '../../src/segment/format.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { headerFields } from '../helpers/batch-header.ts'
import { produceDataKinds, produceTransactional } from '../helpers/cases.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()
const kinds = uniqueTopic('stored-kinds')
const transactional = uniqueTopic('stored-txn')
const asFetched = tempStorage()
const decompressed = tempStorage()

before(async () => {
  await createTopic(cluster, kinds, 5)
  await createTopic(cluster, transactional, 2)
  await produceDataKinds(producer, kinds)
  await produceTransactional(transactional, producer, 'lz4')
  const topics = [kinds, transactional]
  await runBackup(backupOptions(cluster, asFetched, topics, { storeRecords: 'as_fetched' }))
  await runBackup(backupOptions(cluster, decompressed, topics, { storeRecords: 'decompressed' }))
})

async function partitionCount(storage: Storage, topic: string): Promise<number> {
  const manifest = await readManifest(storage, 'test-backup')
  return manifest!.topics.find(t => t.name === topic)!.partitionCount
}

async function backedUpBatches(storage: Storage, topic: string, partition: number): Promise<RecordBatchView[]> {
  const index = await readPartitionIndex(storage, 'test-backup', topic, partition)
  const batches: RecordBatchView[] = []
  for await (const batch of readPartitionBatches(storage, 'test-backup', index!)) {
    batches.push(batch)
  }
  return batches
}

/** OR of the frame flags of a partition's segments. */
async function frameFlags(storage: Storage, topic: string, partition: number): Promise<number> {
  const index = await readPartitionIndex(storage, 'test-backup', topic, partition)
  let flags = 0
  for (const entry of index!.segments) {
    flags |= (await openIndexedSegment(storage, 'test-backup', topic, partition, entry)).index.footer.flags
  }
  return flags
}

async function restoreInto(storage: Storage, source: string, target: string) {
  return runRestore(
    restoreOptions(cluster, storage, {
      topics: { include: [source], exclude: [] },
      topicMapping: { [source]: target }
    })
  )
}

describe('store_records: decompressed', () => {
  test('keeps every batch of every codec: boundaries, header fields, codec and records as fetched; only compressed batches are stored decompressed', async () => {
    const codecsSeen = new Set<number>()
    for (const topic of [kinds, transactional]) {
      for (let partition = 0; partition < (await partitionCount(decompressed, topic)); partition++) {
        const fetched = await backedUpBatches(asFetched, topic, partition)
        const rebuilt = await backedUpBatches(decompressed, topic, partition)
        assert.ok(fetched.length > 0, `${topic}/${partition} has batches`)
        assert.deepEqual(rebuilt.map(headerFields), fetched.map(headerFields), `${topic}/${partition}`)
        for (const [i, batch] of rebuilt.entries()) {
          assert.ok(batch.isCrcValid())
          assert.deepEqual(uncompressedRecords(batch), uncompressedRecords(fetched[i]!))
          codecsSeen.add(batch.codec)
        }
        const compressed = fetched.some(batch => batch.codec !== Codec.none)
        const flagged = ((await frameFlags(decompressed, topic, partition)) & FrameFlag.recordsDecompressed) !== 0
        assert.equal(flagged, compressed, `${topic}/${partition}: frames flagged iff a batch is compressed`)
        assert.equal(((await frameFlags(asFetched, topic, partition)) & FrameFlag.recordsDecompressed) !== 0, false)
      }
    }
    assert.deepEqual([...codecsSeen].sort(), [Codec.none, Codec.gzip, Codec.snappy, Codec.lz4, Codec.zstd])
    for (let partition = 0; partition < 2; partition++) {
      const batches = await backedUpBatches(decompressed, transactional, partition)
      assert.ok(batches.some(batch => batch.isTransactional))
      assert.ok(batches.every(batch => batch.codec === Codec.lz4))
    }
  })

  for (const [name, topic] of [
    ['every producer codec', kinds],
    ['lz4 transactions, some aborted', transactional]
  ] as const) {
    test(`restores ${name} from a decompressed backup record by record`, async () => {
      const target = `${topic}-restored`
      const summary = await restoreInto(decompressed, topic, target)
      assert.equal(summary.status, 'complete')
      const expected = await readTopicRecords(cluster, topic)
      const restored = await readTopicRecords(cluster, target)
      assert.ok(expected.length > 0)
      assert.equal(summary.records, expected.length)
      assert.deepEqual(contentOf(restored), contentOf(expected))
      assert.ok(restored.every(r => !r.value?.startsWith('aborted')))
    })
  }

  test('a partition with segments stored both ways (the setting changed between runs) restores whole', async () => {
    const topic = uniqueTopic('stored-mixed')
    await createTopic(cluster, topic, 5)
    const storage = tempStorage()
    await produceDataKinds(producer, topic)
    await runBackup(backupOptions(cluster, storage, [topic], { storeRecords: 'as_fetched' }))
    await produceDataKinds(producer, topic)
    await runBackup(backupOptions(cluster, storage, [topic], { storeRecords: 'decompressed' }))
    const index = await readPartitionIndex(storage, 'test-backup', topic, 3)
    assert.equal(index!.segments.length, 2)
    assert.equal((await frameFlags(storage, topic, 3)) & FrameFlag.recordsDecompressed, FrameFlag.recordsDecompressed)
    const target = `${topic}-restored`
    const summary = await restoreInto(storage, topic, target)
    const expected = await readTopicRecords(cluster, topic)
    assert.equal(summary.records, expected.length)
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), contentOf(expected))
  })
})
