import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { isBackupError } from '../../src/errors.ts'
import { AzureBlobStorage } from '../../src/storage/azure.ts'
import { GcsStorage } from '../../src/storage/gcs.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { backupOptions, runBackup } from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { type AdminCluster, createTopic, testCluster, uniqueTopic } from '../helpers/kafka.ts'
import {
  restartObjectServer,
  stopObjectServer,
  useAzurite,
  useFakeGcs,
  useS3Server
} from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const MiB = 1024 * 1024
let cluster: AdminCluster
let topic: string
const partitions = 2

before(async () => {
  cluster = testCluster()
  topic = uniqueTopic('object-storage')
  await createTopic(cluster, topic, partitions)
  // About 15 MiB per partition of random hex: segments end up larger than one upload part.
  const producer = newProducer()
  for (let round = 0; round < 24; round++) {
    await producer.send({
      messages: Array.from({ length: 1000 }, (_, i) => ({
        topic,
        partition: i % partitions,
        key: Buffer.from(`key-${round}-${i}`),
        value: Buffer.from(randomBytes(600).toString('hex')),
        headers: new Map([[Buffer.from('round'), Buffer.from(String(round))]])
      }))
    })
  }
  await producer.close()
})
after(() => cluster.close())

/** Backs the topic up to `storage` (no compression, 16 MiB segments) and restores it to a new topic. */
async function roundTrip(storage: Storage, label: string): Promise<void> {
  const summary = await runBackup(
    backupOptions(cluster, storage, [topic], { compression: 'none', segmentMaxBytes: 16 * MiB, frameMaxBytes: MiB })
  )
  assert.equal(summary.records, 24_000)
  assert.ok(summary.storedBytes > 2 * 6 * MiB, `${label}: segments larger than a part`)
  const report = await validateBackup(storage, 'test-backup', { deep: true })
  assert.deepEqual(report.problems, [])
  const target = `${topic}-${label}`
  await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
  assert.deepEqual(
    contentOf(await readTopicRecords(cluster, target)),
    contentOf(await readTopicRecords(cluster, topic))
  )
}

describe('S3', async () => {
  const s3 = await useS3Server()
  const storageFor = (bucket: string) =>
    s3.storageFor(bucket, {
      prefix: 'kafka',
      multipartThreshold: 5 * MiB,
      multipartPartSize: 5 * MiB,
      maxConcurrentUploads: 4
    })

  test('a backup to S3 and a restore from it are byte for byte, with multipart segments', async () => {
    const storage = storageFor(await s3.createBucket())
    await roundTrip(storage, 's3')
    await storage.close()
  })

  test('the S3 server killed mid-upload: the backup fails clearly, a rerun completes, no half-written segment is indexed', async () => {
    const bucket = await s3.createBucket()
    const storage = storageFor(bucket)
    const options = backupOptions(cluster, storage, [topic], {
      compression: 'none',
      segmentMaxBytes: 64 * MiB,
      frameMaxBytes: MiB
    })
    const first = runBackup(options)
    await until(
      async () => (await storage.incompleteUploads().catch(() => [])).length > 0,
      'the backup to start a multipart upload'
    )
    await stopObjectServer(s3.server, { kill: true })
    await assert.rejects(first, error => {
      assert.ok(isBackupError(error) && error.code.startsWith('KB_STORAGE'), String(error))
      assert.doesNotMatch(error.message, new RegExp(s3.server.secretKey))
      return true
    })
    s3.server = await restartObjectServer(s3.server)
    const rerun = storageFor(bucket)
    const summary = await runBackup(backupOptions(cluster, rerun, [topic], { compression: 'none', frameMaxBytes: MiB }))
    assert.equal(summary.records, 24_000, 'the rerun backs up everything the failed run did not make durable')
    const report = await validateBackup(rerun, 'test-backup', { deep: true })
    assert.deepEqual(report.problems, [])
    assert.deepEqual(await rerun.incompleteUploads(), [], 'the rerun aborted the upload the failed run left')
    await Promise.all([storage.close(), rerun.close()])
  })
})

describe('Azure Blob', async () => {
  const azurite = await useAzurite()
  test('a backup to Azure Blob and a restore from it are byte for byte, with block uploads', async () => {
    const storage = new AzureBlobStorage({
      container: await azurite.createContainer(),
      connectionString: azurite.server.connectionString,
      prefix: 'kafka',
      blockSize: 4 * MiB
    })
    await roundTrip(storage, 'azure')
    await storage.close()
  })
})

describe('GCS', async () => {
  const gcs = await useFakeGcs()
  test('a backup to GCS and a restore from it are byte for byte, with resumable uploads', async () => {
    const storage = new GcsStorage({
      bucket: await gcs.createBucket(),
      endpoint: gcs.server.endpoint,
      prefix: 'kafka',
      resumableThreshold: 4 * MiB,
      chunkSize: 8 * MiB
    })
    await roundTrip(storage, 'gcs')
    await storage.close()
  })
})
