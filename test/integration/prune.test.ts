import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { pruneBackup } from '../../src/catalog/prune.ts'
import { legacyPruneLockKey } from '../../src/catalog/prune-lock.ts'
import { isBackupError } from '../../src/errors.ts'
import { listOffsets, partitionKey } from '../../src/kafka/admin.ts'
import { listRestoreStates, writeRestoreState } from '../../src/restore/state.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { backupOptions, newestPruneLock, runBackup, tempStorage } from '../helpers/backup.ts'
import { runCli } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { useS3Server } from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const DAY = 86_400_000
const RECORDS_PER_ROUND = 40
const { cluster, producer } = clusterAndProducer()

/**
 * One round of records per partition, all `daysAgo` old, and when given one more record in
 * partition 0, `lateDaysAgo` old: a producer's out-of-order timestamp that keeps an old segment
 * inside the retention window. It goes in a batch of its own, as a late producer's would.
 */
async function produceRound(topic: string, round: number, daysAgo: number, lateDaysAgo?: number): Promise<void> {
  const now = Date.now()
  for (const partition of [0, 1]) {
    await producer.send({
      messages: Array.from({ length: RECORDS_PER_ROUND }, (_, i) => ({
        topic,
        partition,
        key: Buffer.from(`round-${round}-${i}`),
        value: Buffer.from(`value ${round}/${partition}/${i} `.repeat(20)),
        timestamp: BigInt(now - daysAgo * DAY + i)
      }))
    })
  }
  if (lateDaysAgo !== undefined) {
    await producer.send({
      messages: [{ topic, partition: 0, key: Buffer.from(`late-${round}`), timestamp: BigInt(now - lateDaysAgo * DAY) }]
    })
  }
}

/** A new topic with 4 rounds (60, 40, 20, 5 days old), one backup run (so one segment) per round. */
async function backedUpTopic(storage: Storage, label: string): Promise<string> {
  const topic = uniqueTopic(label)
  // The broker's own retention must not delete the old records before they are backed up.
  await createTopic(cluster, topic, 2, { 'retention.ms': '-1' })
  for (const [round, daysAgo] of [60, 40, 20, 5].entries()) {
    await produceRound(topic, round, daysAgo, round === 1 ? 10 : undefined)
    await runBackup(backupOptions(cluster, storage, [topic]))
  }
  return topic
}

async function restored(storage: Storage, topic: string, target: string, start?: number) {
  await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: target },
      window: start === undefined ? {} : { start: BigInt(start) }
    })
  )
  return contentOf(await readTopicRecords(cluster, target))
}

async function segmentKeys(storage: Storage): Promise<string[]> {
  return (await storage.list('test-backup/topics/')).map(o => o.key).filter(key => key.endsWith('.seg'))
}

/**
 * The whole life of a pruned backup on one store: dry run, prune, validate --deep, the same
 * point-in-time restore as before, an incremental run after it, and retention at the end of a
 * run.
 */
async function pruneKeepsRestorePointsExact(storage: Storage, label: string): Promise<void> {
  const topic = await backedUpTopic(storage, label)
  const keepFrom = Date.now() - 30 * DAY
  const before = await restored(storage, topic, `${topic}-before`, keepFrom)
  assert.equal(before.length, 2 * 2 * RECORDS_PER_ROUND + 1, 'rounds 20 and 5 days old, and the late record')
  const allKeys = await segmentKeys(storage)
  assert.equal(allKeys.length, 8, 'one segment per run and partition')

  const dryRun = await pruneBackup({ storage, backupId: 'test-backup', keepFrom, dryRun: true })
  assert.deepEqual(await segmentKeys(storage), allKeys, 'a dry run deletes nothing')
  // Partition 0 keeps round 1 (its late record is inside the window) and so everything after it.
  assert.deepEqual(
    dryRun.partitions.map(p => [p.partition, p.segments.length]),
    [
      [0, 1],
      [1, 2]
    ]
  )
  assert.equal(dryRun.records, 3 * RECORDS_PER_ROUND)
  const sizes = new Map((await storage.list('test-backup/topics/')).map(o => [o.key, o.size]))
  assert.equal(
    dryRun.sizeBytes,
    dryRun.partitions.flatMap(p => p.segments).reduce((sum, s) => sum + sizes.get(s.key)!, 0)
  )

  const summary = await pruneBackup({ storage, backupId: 'test-backup', keepFrom })
  assert.deepEqual({ ...summary, dryRun: true }, dryRun)
  const gone = dryRun.partitions.flatMap(p => p.segments.map(s => s.key))
  assert.deepEqual(
    await segmentKeys(storage),
    allKeys.filter(key => !gone.includes(key))
  )
  assert.equal((await newestPruneLock(storage, 'test-backup'))?.released, true, 'the lock is released')
  const index1 = (await readPartitionIndex(storage, 'test-backup', topic, 1))!
  assert.equal(index1.startOffset, String(2 * RECORDS_PER_ROUND))
  assert.equal(index1.pruned?.fromOffset, '0')
  assert.equal(index1.pruned?.records, 2 * RECORDS_PER_ROUND)
  assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true })).problems, [])

  assert.deepEqual(await restored(storage, topic, `${topic}-after`, keepFrom), before, 'the same restore point')

  // The next run continues from the checkpoint; retention at its end prunes 15 days back.
  await produceRound(topic, 4, 1)
  const run = await runBackup(backupOptions(cluster, storage, [topic], { retention: { keepWithinMs: 15 * DAY } }))
  assert.equal(run.records, 2 * RECORDS_PER_ROUND, 'only the new round')
  // Partition 0's round 1 holds a record 10 days old: it stays, and round 2 after it.
  assert.equal(run.pruned?.segments, 1)
  assert.equal(run.pruned?.records, RECORDS_PER_ROUND)
  assert.equal((await readPartitionIndex(storage, 'test-backup', topic, 1))!.pruned?.records, 3 * RECORDS_PER_ROUND)
  assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true })).problems, [])
  const source = contentOf(await readTopicRecords(cluster, topic))
  const keep15 = Date.now() - 15 * DAY
  assert.deepEqual(
    await restored(storage, topic, `${topic}-last`, keep15),
    source.filter(r => r.timestamp >= BigInt(keep15)),
    'a restore inside the window equals the source'
  )
}

describe('prune on the filesystem', () => {
  test('prune keeps every restore point inside the window exact, validate --deep stays clean, and incremental runs continue', async () => {
    await pruneKeepsRestorePointsExact(tempStorage(), 'prune-fs')
  })

  test('a prune stopped between its index write and its deletes leaves a valid backup; a backup run deletes nothing and the next prune removes the leftovers', async () => {
    const storage = tempStorage()
    const topic = await backedUpTopic(storage, 'prune-crash')
    const keepFrom = Date.now() - 30 * DAY
    const before = await restored(storage, topic, `${topic}-before`, keepFrom)
    // The process ends after the first index write: no segment delete gets through.
    const failingDeletes = new Proxy(storage, {
      get(target, property) {
        if (property === 'delete') {
          return async (key: string) => {
            if (key.endsWith('.seg')) {
              throw new Error(`killed before deleting ${key}`)
            }
            await target.delete(key)
          }
        }
        const value = Reflect.get(target, property, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
    await assert.rejects(pruneBackup({ storage: failingDeletes, backupId: 'test-backup', keepFrom }), /killed before/)
    assert.equal((await segmentKeys(storage)).length, 8, 'nothing deleted')
    const report = await validateBackup(storage, 'test-backup', { deep: true })
    assert.equal(report.valid, true, JSON.stringify(report.problems))
    assert.deepEqual(
      report.problems.map(p => [p.code, p.partition]),
      [['KB_ORPHAN_SEGMENT', 0]],
      'the one segment whose index was rewritten is a leftover, not lost data'
    )
    assert.match(report.problems[0]!.message, /below the index's startOffset 40: a prune removed it/)
    assert.deepEqual(await restored(storage, topic, `${topic}-between`, keepFrom), before)

    await runBackup(backupOptions(cluster, storage, [topic]))
    assert.deepEqual(
      (await validateBackup(storage, 'test-backup', { deep: true })).problems.map(p => p.key),
      [report.problems[0]!.key],
      'a backup run deletes nothing: the leftover is still there'
    )
    const again = await pruneBackup({ storage, backupId: 'test-backup', keepFrom })
    assert.equal(again.segments, 2, 'partition 1, which the stopped prune had not reached')
    assert.deepEqual(
      again.partitions.flatMap(p => p.leftovers),
      [report.problems[0]!.key]
    )
    assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true })).problems, [])
    assert.deepEqual(await restored(storage, topic, `${topic}-after`, keepFrom), before)
  })

  test('prune refuses while a backup run is in progress, and a backup run refuses while a prune holds the lock', async () => {
    const storage = tempStorage()
    const topic = await backedUpTopic(storage, 'prune-busy')
    const keepFrom = Date.now() - 30 * DAY
    const controller = new AbortController()
    const continuous = runBackup(
      backupOptions(cluster, storage, [topic], { continuous: true, signal: controller.signal })
    )
    await until(
      async () => (await readManifest(storage, 'test-backup'))?.runs.at(-1)?.status === 'running',
      'the continuous run to be on record'
    )
    const keys = await segmentKeys(storage)
    await assert.rejects(pruneBackup({ storage, backupId: 'test-backup', keepFrom }), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_BUSY'), String(error))
      assert.match(error.message, /has a run in progress/)
      return true
    })
    assert.equal(await newestPruneLock(storage, 'test-backup'), undefined, 'the refused prune took no lock')
    controller.abort()
    assert.equal((await continuous).status, 'stopped')
    assert.deepEqual(await segmentKeys(storage), keys, 'the refused prune deleted nothing')

    // A prune in progress, as another process of an older version would hold it (no lease).
    await storage.replace(
      legacyPruneLockKey('test-backup'),
      Buffer.from(JSON.stringify({ token: 'other', host: 'elsewhere', pid: 4242, startedAt: new Date().toISOString() }))
    )
    const runs = (await readManifest(storage, 'test-backup'))!.runs.length
    await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_BUSY'), String(error))
      assert.match(error.message, /is being pruned \(lock .*locks\/prune\.json, taken by pid 4242 on elsewhere/)
      return true
    })
    await assert.rejects(pruneBackup({ storage, backupId: 'test-backup', keepFrom }), /is being pruned/)
    assert.equal((await readManifest(storage, 'test-backup'))!.runs.length, runs, 'the refused run wrote nothing')
    assert.ok(await storage.head(legacyPruneLockKey('test-backup')), "another prune's lock is left alone")
  })

  test('a restore stopped before a prune removed what it had still to write refuses to continue instead of skipping those records', async () => {
    const storage = tempStorage()
    const topic = await backedUpTopic(storage, 'prune-resume')
    const keepFrom = Date.now() - 30 * DAY
    const target = `${topic}-resumed`
    await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
    // As a restore killed after writing partition 1's first 10 records would have left it.
    const [state] = await listRestoreStates(storage, 'test-backup')
    const stopped = state!.partitions.find(p => p.sourcePartition === 1)!
    Object.assign(stopped, { done: false, sourceNextOffset: '10' })
    state!.status = 'stopped'
    await writeRestoreState(storage, state!)
    await pruneBackup({ storage, backupId: 'test-backup', keepFrom })
    const end = (await listOffsets(cluster, [{ topic: target, partition: 1 }], 'latest')).get(partitionKey(target, 1))
    await assert.rejects(runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } })), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_PRUNED'), String(error))
      assert.match(
        error.message,
        /stopped at source offset 10 of .*\/1, but the backup was pruned up to offset 80 since/
      )
      return true
    })
    assert.equal(
      (await listOffsets(cluster, [{ topic: target, partition: 1 }], 'latest')).get(partitionKey(target, 1)),
      end,
      'nothing written'
    )
  })

  test('kafka-backup prune: --dry-run lists segments and bytes, --json prunes, and a bad duration is refused', async () => {
    const storage = tempStorage()
    await backedUpTopic(storage, 'prune-cli')
    const location = ['--path', storage.location, '--backup-id', 'test-backup']
    const keys = await segmentKeys(storage)

    const bad = await runCli(['prune', ...location, '--keep-within', '30x'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /KB_CONFIG_INVALID.*--keep-within: expected a positive duration such as 30d.*"30x"/)
    const neither = await runCli(['prune', ...location])
    assert.equal(neither.code, 2)
    assert.match(neither.stderr, /exactly one of --keep-within <duration> \(e\.g\. 30d\) and --keep-from <time>/)

    const dryRun = await runCli(['prune', ...location, '--keep-within', '30d', '--dry-run'])
    assert.equal(dryRun.code, 0, dryRun.stderr)
    assert.equal(dryRun.stdout.match(/^would delete test-backup\/topics\/.*\.seg \(/gm)?.length, 3)
    assert.match(
      dryRun.stdout,
      /would delete 3 segments, 120 records, .* \(\d+ bytes\); every record from .* on is kept/
    )
    assert.deepEqual(await segmentKeys(storage), keys)

    const pruned = await runCli([
      'prune',
      ...location,
      '--keep-from',
      new Date(Date.now() - 30 * DAY).toISOString(),
      '--json'
    ])
    assert.equal(pruned.code, 0, pruned.stderr)
    const summary = JSON.parse(pruned.stdout) as { segments: number; records: number; dryRun: boolean }
    assert.deepEqual([summary.segments, summary.records, summary.dryRun], [3, 120, false])
    assert.equal((await segmentKeys(storage)).length, 5)
    const validate = await runCli(['validate', ...location, '--deep'])
    assert.equal(validate.code, 0, validate.stdout)
  })
})

describe('prune on S3', async () => {
  const s3 = await useS3Server()
  test('prune keeps every restore point inside the window exact on S3, validate --deep stays clean, and incremental runs continue', async () => {
    const storage = s3.storageFor(await s3.createBucket(), { prefix: 'kafka' })
    await pruneKeepsRestorePointsExact(storage, 'prune-s3')
    await storage.close()
  })
})
