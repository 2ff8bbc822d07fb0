import assert from 'node:assert/strict'
import { test } from 'node:test'
import { responseBuffers } from '../../src/kafka/wire/buffer-pool.ts'
import { backupOptions, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceBatches } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()

test('a backup reuses its Fetch response buffers: a few allocations for many responses, every record stored', async () => {
  const topic = uniqueTopic('backup-memory')
  await createTopic(cluster, topic, 2)
  // 2 × 400 records of ~1 KiB in batches of 20: ~40 batches of ~20 KiB per partition.
  await produceBatches(producer, topic, { partitions: 2, recordsPerPartition: 400, batchRecords: 20, valueBytes: 1000 })
  const storage = tempStorage()
  let responses = 0
  const allocatedBefore = responseBuffers.allocatedCount
  await runBackup(
    backupOptions(cluster, storage, [topic], {
      // Responses of ~64-100 KiB (pooled), at most two of them in the budget.
      fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: 96 * 1024, partitionMaxBytes: 48 * 1024 },
      maxBytesInFlight: 192 * 1024,
      onFetch: (_durationMs, bytes) => {
        if (bytes > 0) {
          responses++
        }
      }
    })
  )
  const allocated = responseBuffers.allocatedCount - allocatedBefore
  assert.ok(responses >= 8, `the backup took ${responses} Fetch responses with data`)
  // The budget holds two responses, one more is arriving, and a last one may still be queued
  // behind a partition's writes: anything beyond means buffers are not coming back.
  assert.ok(allocated <= 4, `${allocated} response buffers allocated for ${responses} responses`)
  const stored = await readBackedUpRecords(storage, 'test-backup', topic)
  assert.equal(stored.length, 800)
  for (const [i, record] of stored.entries()) {
    const partition = Math.floor(i / 400)
    const n = i % 400
    assert.equal(record.partition, partition)
    assert.equal(record.offset, BigInt(n))
    assert.equal(record.key, `k${n}`)
    assert.equal(record.value, `v${n}${'x'.repeat(1000)}`)
  }
})
