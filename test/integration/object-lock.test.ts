/**
 * A backup on a bucket that holds every object version it is given (S3 Object Lock, which
 * SeaweedFS implements: versioning on, a default COMPLIANCE retention, a locked version cannot
 * be deleted). Backing up, restoring and validating must never write a key twice nor delete
 * one, so the bucket keeps exactly one version per key; only prune deletes (delete markers,
 * the locked versions stay until their retention ends).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  PutObjectLockConfigurationCommand
} from '@aws-sdk/client-s3'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { indexBase } from '../../src/catalog/manifest.ts'
import { pruneBackup } from '../../src/catalog/prune.ts'
import { backupOptions, runBackup } from '../helpers/backup.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { uniqueName, useS3Server } from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const DAY = 86_400_000
const s3 = await useS3Server()
const { cluster, producer } = clusterAndProducer()

async function produceRound(topic: string, round: number, daysAgo: number): Promise<void> {
  for (const partition of [0, 1]) {
    await producer.send({
      messages: Array.from({ length: 30 }, (_, i) => ({
        topic,
        partition,
        key: Buffer.from(`round-${round}-${i}`),
        value: Buffer.from(`value ${round}/${partition}/${i} `.repeat(10)),
        timestamp: BigInt(Date.now() - daysAgo * DAY + i)
      }))
    })
  }
}

/** Every version and delete marker in the bucket, by key. */
async function versionsOf(bucket: string) {
  const versions = new Map<string, string[]>()
  const deleteMarkers: string[] = []
  let page: ListObjectVersionsCommandOutput | undefined
  do {
    page = await s3.client.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        KeyMarker: page?.NextKeyMarker,
        VersionIdMarker: page?.NextVersionIdMarker
      })
    )
    for (const version of page.Versions ?? []) {
      versions.set(version.Key!, [...(versions.get(version.Key!) ?? []), version.VersionId!])
    }
    deleteMarkers.push(...(page.DeleteMarkers ?? []).map(marker => marker.Key!))
  } while (page.IsTruncated)
  return { versions, deleteMarkers }
}

async function assertEveryKeyWrittenOnce(bucket: string, when: string): Promise<number> {
  const { versions, deleteMarkers } = await versionsOf(bucket)
  assert.deepEqual(
    [...versions].filter(([, ids]) => ids.length > 1).map(([key]) => key),
    [],
    `${when}: keys written more than once`
  )
  assert.deepEqual(deleteMarkers, [], `${when}: keys deleted`)
  return versions.size
}

test('on an S3 Object Lock bucket a first, an incremental and a continuous backup, a restore and validate --deep write each key once and delete none; prune then deletes with markers and the locked versions stay', async () => {
  const bucket = uniqueName('worm')
  await s3.client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }))
  await s3.client.send(
    new PutObjectLockConfigurationCommand({
      Bucket: bucket,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } }
      }
    })
  )
  const storage = s3.storageFor(bucket, { prefix: 'kafka' })
  const topic = uniqueTopic('object-lock')
  await createTopic(cluster, topic, 2, { 'retention.ms': '-1' })

  await produceRound(topic, 0, 40)
  await runBackup(backupOptions(cluster, storage, [topic]))
  await produceRound(topic, 1, 0)
  await runBackup(backupOptions(cluster, storage, [topic]))
  const revisions = async () => (await storage.list(`${indexBase('test-backup', topic, 0)}/`)).length
  const beforeContinuous = await revisions()
  const controller = new AbortController()
  const continuous = runBackup(
    backupOptions(cluster, storage, [topic], {
      continuous: true,
      signal: controller.signal,
      segmentMaxIntervalMs: 200,
      checkpointIntervalMs: 200
    })
  )
  let round = 2
  await until(
    async () => {
      await produceRound(topic, round++, 0)
      return (await revisions()) >= beforeContinuous + 4
    },
    'four checkpoints of the continuous run',
    { intervalMs: 100 }
  )
  controller.abort()
  assert.equal((await continuous).status, 'stopped')
  // The last rounds may have come after the continuous run's last checkpoint: a one-shot run
  // takes the backup to the end of the topic.
  await runBackup(backupOptions(cluster, storage, [topic]))
  const written = await assertEveryKeyWrittenOnce(bucket, 'after the backups')

  await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: `${topic}-restored` } }))
  const source = contentOf(await readTopicRecords(cluster, topic))
  assert.equal(source.length, round * 60)
  assert.deepEqual(contentOf(await readTopicRecords(cluster, `${topic}-restored`)), source)
  const report = await validateBackup(storage, 'test-backup', { deep: true })
  assert.deepEqual(report.problems, [])
  assert.ok((await assertEveryKeyWrittenOnce(bucket, 'after restore and validate')) > written)

  const pruned = await pruneBackup({ storage, backupId: 'test-backup', keepFrom: Date.now() - 20 * DAY })
  assert.equal(pruned.segments, 2, 'the 40-day-old segment of each partition')
  assert.ok(pruned.supersededRevisions > 8, `${pruned.supersededRevisions} superseded revisions`)
  const { versions, deleteMarkers } = await versionsOf(bucket)
  const prunedKey = `kafka/${pruned.partitions[0]!.segments[0]!.key}`
  assert.ok(deleteMarkers.includes(prunedKey), 'prune deleted the segment (a delete marker)')
  await assert.rejects(
    s3.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: prunedKey, VersionId: versions.get(prunedKey)![0] })),
    (error: Error) => error.name === 'AccessDenied',
    'the locked version of the pruned segment cannot be deleted'
  )
  assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true })).problems, [])
  await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: `${topic}-after-prune` },
      window: { start: BigInt(Date.now() - 20 * DAY) }
    })
  )
  assert.equal((await readTopicRecords(cluster, `${topic}-after-prune`)).length, source.length - 60)
})
