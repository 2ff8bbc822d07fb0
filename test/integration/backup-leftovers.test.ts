/**
 * What a killed backup leaves behind, and who clears it: the next run removes the temp files of
 * uploads in progress and marks the run interrupted, deleting no object; prune deletes segments
 * outside the index and the superseded revisions of the catalogue.
 */
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { isBackupError } from '../../src/errors.ts'
import {
  backupOptions,
  fingerprint,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  tempStorage
} from '../helpers/backup.ts'
import { backupYaml, finished, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

/** Every file under a folder, with its size. */
function files(folder: string): Array<{ path: string; name: string; size: number }> {
  if (!existsSync(folder)) {
    return []
  }
  return readdirSync(folder, { recursive: true, encoding: 'utf8' })
    .map(relative => join(folder, relative))
    .filter(path => statSync(path).isFile())
    .map(path => ({ path, name: path.slice(path.lastIndexOf('/') + 1), size: statSync(path).size }))
}

const isTemp = (name: string) => /^\..+\.[0-9a-f]{16}\.tmp$/.test(name)

test('the run after a SIGKILLed backup removes its temp files and marks it interrupted, deleting no object; prune then removes the unindexed segment and superseded revisions, leaving only what the indexes list', async () => {
  const topic = uniqueTopic('backup-leftovers')
  await createTopic(cluster, topic, 2)
  const value = Buffer.from('x'.repeat(900))
  for (let partition = 0; partition < 2; partition++) {
    for (let start = 0; start < 10_000; start += 500) {
      await producer.send({
        compression: 'lz4',
        messages: Array.from({ length: 500 }, (_, i) => ({
          topic,
          partition,
          key: Buffer.from(`k${start + i}`),
          value: Buffer.concat([Buffer.from(`${start + i}`), value])
        }))
      })
    }
  }
  const storage = tempStorage()
  const backupDir = join(storage.location, 'leftovers')
  const partitionDir = (partition: number) => join(backupDir, 'topics', topic, String(partition))
  const indexFile = (partition: number) => newestRevisionFile(join(partitionDir(partition), 'index'))
  const indexOf = (partition: number) => JSON.parse(readFileSync(indexFile(partition)!, 'utf8'))
  // One batch per Fetch, each held 300 ms, a segment per batch: a segment upload is nearly
  // always open, so the kill lands inside one (see the kill test in cli.test.ts).
  const slow = writeConfig(
    backupYaml(
      'leftovers',
      topic,
      storage.location,
      'backup:\n  segment_max_bytes: 65536\n  frame_max_bytes: 65536\n'
    ).replace(
      '  topics:',
      '  kafka_config:\n    fetch.min.bytes: 16777216\n    fetch.max.bytes: 16777216\n    fetch.max.wait.ms: 300\n    max.partition.fetch.bytes: 1\n  topics:'
    )
  )
  const child = startCli(['backup', '--config', slow])
  const result = finished(child)
  const killable = () =>
    indexFile(0) !== undefined &&
    indexOf(0).segments.length > 0 &&
    files(join(backupDir, 'topics')).some(f => isTemp(f.name))
  for (let i = 0; i < 600 && !killable(); i++) {
    await sleep(50)
  }
  assert.ok(killable(), 'the first run made a segment durable and has an upload open')
  child.kill('SIGKILL')
  assert.equal((await result).signal, 'SIGKILL')

  assert.ok(
    files(backupDir).some(f => isTemp(f.name)),
    'the killed run left temp files'
  )
  // An unindexed segment below the checkpoint, as validate reports them.
  const first = indexOf(0).segments[0]
  const orphan = join(partitionDir(0), '00000000000000000001.seg')
  copyFileSync(join(backupDir, first.key), orphan)
  const before = await runCli(['validate', '--path', storage.location, '--backup-id', 'leftovers', '--json'])
  assert.ok(
    JSON.parse(before.stdout).problems.some((p: { code: string }) => p.code === 'KB_ORPHAN_SEGMENT'),
    before.stdout
  )

  const rerun = await runCli([
    'backup',
    '--config',
    writeConfig(backupYaml('leftovers', topic, storage.location)),
    '--json'
  ])
  assert.equal(rerun.code, 0, rerun.stderr)
  assert.ok(existsSync(orphan), 'a backup run deletes no segment')
  const pruned = await runCli(['prune', '--path', storage.location, '--backup-id', 'leftovers', '--keep-from', '0'])
  assert.equal(pruned.code, 0, pruned.stderr)

  const left = files(backupDir)
  assert.deepEqual(
    left.filter(f => isTemp(f.name)).map(f => f.path),
    [],
    'no temp file is left'
  )
  assert.equal(existsSync(orphan), false, 'prune removed the unindexed segment')
  let indexed = 0
  for (let partition = 0; partition < 2; partition++) {
    const index = indexOf(partition)
    const listed = new Set(index.segments.map((s: { key: string }) => join(backupDir, s.key)))
    const segments = files(partitionDir(partition)).filter(f => f.name.endsWith('.seg'))
    assert.deepEqual(
      segments.map(f => f.path).sort(),
      [...listed].sort(),
      `partition ${partition}: only indexed segments`
    )
    indexed += index.segments.reduce((sum: number, s: { sizeBytes: number }) => sum + s.sizeBytes, 0)
    assert.deepEqual(readdirSync(join(partitionDir(partition), 'index')), [indexFile(partition)!.split('/').at(-1)])
    indexed += statSync(indexFile(partition)!).size
  }
  const onDisk = files(join(backupDir, 'topics')).reduce((sum, f) => sum + f.size, 0)
  assert.equal(onDisk, indexed, 'the bytes on disk are the indexed segments and the indexes')

  assert.equal(readdirSync(join(backupDir, 'manifest')).length, 1, 'prune kept only the newest manifest')
  const manifest = JSON.parse(readFileSync(newestRevisionFile(join(backupDir, 'manifest'))!, 'utf8'))
  assert.deepEqual(
    manifest.runs.map((r: { status: string }) => r.status),
    ['interrupted', 'complete']
  )
  const validate = await runCli([
    'validate',
    '--path',
    storage.location,
    '--backup-id',
    'leftovers',
    '--deep',
    '--json'
  ])
  assert.equal(validate.code, 0, validate.stdout)
  assert.deepEqual(JSON.parse(validate.stdout).problems, [])
  const records = await readBackedUpRecords(storage, 'leftovers', topic)
  for (let partition = 0; partition < 2; partition++) {
    assert.deepEqual(
      records.filter(r => r.partition === partition).map(r => r.offset),
      Array.from({ length: 10_000 }, (_, i) => BigInt(i)),
      `partition ${partition}: every offset once, in order`
    )
  }
})

test('a segment a killed run made durable but did not record is taken into the index by the next run, which changes and deletes no stored object', async () => {
  const topic = uniqueTopic('backup-unrecorded')
  await createTopic(cluster, topic, 1)
  const send = async (from: number, count: number) => {
    for (let start = from; start < from + count; start += 50) {
      await producer.send({
        messages: Array.from({ length: 50 }, (_, i) => ({
          topic,
          partition: 0,
          key: Buffer.from(`k${start + i}`),
          value: Buffer.from(`${start + i}:${'y'.repeat(1500)}`)
        }))
      })
    }
  }
  await send(0, 300)
  const storage = tempStorage()
  const options = backupOptions(cluster, storage, [topic], { backupId: 'unrecorded', segmentMaxBytes: 64 * 1024 })
  await runBackup(options)
  const indexDir = join(storage.location, 'unrecorded', 'topics', topic, '0', 'index')
  const recorded = JSON.parse(readFileSync(newestRevisionFile(indexDir)!, 'utf8'))
  assert.ok(recorded.segments.length >= 2, `${recorded.segments.length} segments`)
  // A run killed after its last segment's upload completed, before the revision recording it.
  rmSync(newestRevisionFile(indexDir)!)
  const checkpoint = JSON.parse(readFileSync(newestRevisionFile(indexDir)!, 'utf8'))
  assert.equal(checkpoint.segments.length, recorded.segments.length - 1)
  const stored = fingerprint(storage.location)
  await send(300, 100)
  const warnings: string[] = []
  await runBackup({ ...options, onWarning: message => warnings.push(message) })

  const now = fingerprint(storage.location)
  for (const [path, hash] of stored) {
    assert.equal(now.get(path), hash, `${path} is unchanged`)
  }
  assert.ok(
    warnings.some(w => w.includes(`recorded segment unrecorded/${recorded.segments.at(-1).key}`)),
    warnings.join('\n')
  )
  const records = await readBackedUpRecords(storage, 'unrecorded', topic)
  assert.deepEqual(
    records.map(r => r.offset),
    Array.from({ length: 400 }, (_, i) => BigInt(i))
  )
  const validate = await runCli(['validate', '--path', storage.location, '--backup-id', 'unrecorded', '--json'])
  assert.equal(validate.code, 0, validate.stdout)
  assert.deepEqual(JSON.parse(validate.stdout).problems, [])
})

test('two backup processes on one backup: one stops with KB_BACKUP_BUSY, nothing is written over, and the backup holds every offset once', async () => {
  const topic = uniqueTopic('backup-two-writers')
  await createTopic(cluster, topic, 1)
  const send = async (from: number) => {
    await producer.send({
      messages: Array.from({ length: 50 }, (_, i) => ({ topic, partition: 0, value: Buffer.from(`${from + i}`) }))
    })
  }
  await send(0)
  const storage = tempStorage()
  const options = backupOptions(cluster, storage, [topic], {
    backupId: 'two-writers',
    continuous: true,
    segmentMaxIntervalMs: 200,
    checkpointIntervalMs: 200
  })
  const controllers = [new AbortController(), new AbortController()]
  const outcomes: Array<{ error?: unknown; status?: string } | undefined> = [undefined, undefined]
  const runs = controllers.map((controller, i) =>
    runBackup({ ...options, signal: controller.signal }).then(
      summary => {
        outcomes[i] = { status: summary.status }
      },
      error => {
        outcomes[i] = { error }
      }
    )
  )
  let produced = 50
  await until(async () => {
    await send(produced)
    produced += 50
    return outcomes.some(outcome => outcome?.error !== undefined)
  }, 'one of the two writers to stop')
  for (const controller of controllers) {
    controller.abort()
  }
  await Promise.all(runs)
  const failed = outcomes.filter(outcome => outcome?.error !== undefined)
  assert.equal(failed.length, 1, JSON.stringify(outcomes.map(o => o?.status ?? String(o?.error))))
  assert.ok(isBackupError(failed[0]!.error, 'KB_BACKUP_BUSY'), String(failed[0]!.error))
  assert.equal(outcomes.find(outcome => outcome?.error === undefined)?.status, 'stopped')

  // A one-shot run after both continues the backup to the end of the topic.
  await runBackup({ ...options, continuous: false, signal: undefined })
  const records = await readBackedUpRecords(storage, 'two-writers', topic)
  assert.deepEqual(
    records.map(r => r.offset),
    Array.from({ length: produced }, (_, i) => BigInt(i))
  )
  const validate = await runCli(['validate', '--path', storage.location, '--backup-id', 'two-writers', '--deep'])
  assert.equal(validate.code, 0, validate.stdout)
})
