/**
 * A prune killed while it holds its lock (docs/retention.md, "Prune and backup runs"): the next
 * prune on the same host takes the lock over at once and finishes the work, a backup run is not
 * refused, and a lock held from elsewhere binds until its lease runs out.
 */
import assert from 'node:assert/strict'
import { watch } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { readPartitionIndex } from '../../src/catalog/manifest.ts'
import { pruneBackup } from '../../src/catalog/prune.ts'
import { legacyPruneLockKey, pruneLockBase } from '../../src/catalog/prune-lock.ts'
import { revisionKey } from '../../src/catalog/revisions.ts'
import { isBackupError } from '../../src/errors.ts'
import { backupOptions, newestPruneLock, runBackup, tempStorage } from '../helpers/backup.ts'
import { finished, runCli, startCli } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()
const DAY = 86_400_000
const PARTITIONS = 24

/** Three runs, one segment each per partition: 60 days old, 40 days old, new. */
async function backedUp(label: string) {
  const topic = uniqueTopic(label)
  await createTopic(cluster, topic, PARTITIONS, { 'retention.ms': '-1' })
  const storage = tempStorage()
  for (const daysAgo of [60, 40, 0]) {
    await producer.send({
      messages: Array.from({ length: PARTITIONS * 10 }, (_, i) => ({
        topic,
        partition: i % PARTITIONS,
        value: Buffer.from(`${daysAgo} days ago ${i}`),
        timestamp: BigInt(Date.now() - daysAgo * DAY)
      }))
    })
    await runBackup(backupOptions(cluster, storage, [topic]))
  }
  return { topic, storage }
}

test('a prune killed with SIGKILL while it holds the lock: a backup run is not refused, and the next prune takes the lock over and finishes the work', async () => {
  const { topic, storage } = await backedUp('prune-killed')
  const location = ['--path', storage.location, '--backup-id', 'test-backup']
  const child = startCli(['prune', ...location, '--keep-within', '30d'])
  const exited = finished(child)
  // Killed once it has its lock (a revision, not the temp file it is written through) and
  // has written its first pruned index: in the middle of its work.
  let locked = false
  const watcher = watch(join(storage.location, 'test-backup'), { recursive: true }, (_, name) => {
    locked ||= name?.startsWith(join('locks', 'prune')) === true && /\d{12}\.json$/.test(name)
    if (locked && name?.startsWith('topics') && /index.\d{12}\.json$/.test(name)) {
      child.kill('SIGKILL')
    }
  })
  const killed = await exited
  watcher.close()
  assert.equal(killed.signal, 'SIGKILL', `the prune was killed, not finished: ${killed.stderr}`)
  const left = await newestPruneLock(storage, 'test-backup')
  assert.equal(left?.pid, child.pid, 'the killed prune left its lock')
  assert.notEqual(left?.released, true)

  // The holder is gone: a backup run goes ahead instead of refusing with KB_BACKUP_BUSY.
  const run = await runBackup(backupOptions(cluster, storage, [topic]))
  assert.equal(run.status, 'complete')

  const again = await runCli(['prune', ...location, '--keep-within', '30d'])
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stderr, new RegExp(`took over the prune lock .* \\(pid ${child.pid} on .*its process .* is gone`))
  assert.equal((await newestPruneLock(storage, 'test-backup'))?.released, true)
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const index = await readPartitionIndex(storage, 'test-backup', topic, partition)
    assert.equal(index?.segments.length, 1, `partition ${partition} kept only its new segment`)
  }
  assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true })).problems, [])
  assert.deepEqual(
    (await storage.list('test-backup/locks/')).map(o => o.key),
    [revisionKey(pruneLockBase('test-backup'), 3)],
    'the lock is one revision: taken over (2), released (3)'
  )
})

test('a lock held from another host binds a backup run and a prune until its lease runs out; then a prune takes it over', async () => {
  const { topic, storage } = await backedUp('prune-elsewhere')
  const held = (expiresAt: number) => ({
    token: 'other',
    host: 'elsewhere',
    pid: process.pid,
    startedAt: new Date(expiresAt - 300_000).toISOString(),
    expiresAt: new Date(expiresAt).toISOString()
  })
  await storage.create(
    revisionKey(pruneLockBase('test-backup'), 1),
    Buffer.from(JSON.stringify(held(Date.now() + 60_000)))
  )
  const busy = (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_BACKUP_BUSY'), String(error))
    assert.match(error.message, /is being pruned .*taken by pid \d+ on elsewhere.*once its lease runs out at /)
    return true
  }
  await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), busy)
  await assert.rejects(pruneBackup({ storage, backupId: 'test-backup', keepFrom: Date.now() - 30 * DAY }), busy)

  await storage.create(revisionKey(pruneLockBase('test-backup'), 2), Buffer.from(JSON.stringify(held(Date.now() - 1))))
  const warnings: string[] = []
  const summary = await pruneBackup({
    storage,
    backupId: 'test-backup',
    keepFrom: Date.now() - 30 * DAY,
    onWarning: message => warnings.push(message)
  })
  assert.equal(summary.segments, 2 * PARTITIONS)
  assert.match(warnings.join('\n'), /took over the prune lock .* \(pid \d+ on elsewhere.*lease ran out/)
  assert.equal((await newestPruneLock(storage, 'test-backup'))?.released, true)

  // A prune of an older version (its lock has no lease, and it knows no chain) binds beside a released chain.
  await storage.create(
    legacyPruneLockKey('test-backup'),
    Buffer.from(JSON.stringify({ ...held(Date.now()), expiresAt: undefined }))
  )
  await assert.rejects(runBackup(backupOptions(cluster, storage, [topic])), /is being pruned .*locks\/prune\.json/)
})
