/**
 * What a killed backup leaves behind, and the next run clearing it: temp files of uploads in
 * progress, segments outside the index, and the run record still saying "running".
 */
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { readBackedUpRecords, tempStorage } from '../helpers/backup.ts'
import { backupYaml, finished, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'

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

test('the run after a SIGKILLed backup removes its temp files and unindexed segments and marks it interrupted; the folder then holds only what the indexes list', async () => {
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
  const indexOf = (partition: number) => JSON.parse(readFileSync(join(partitionDir(partition), 'index.json'), 'utf8'))
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
    existsSync(join(partitionDir(0), 'index.json')) &&
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

  const left = files(backupDir)
  assert.deepEqual(
    left.filter(f => isTemp(f.name)).map(f => f.path),
    [],
    'no temp file is left'
  )
  assert.equal(existsSync(orphan), false, 'the unindexed segment is gone')
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
    indexed += statSync(join(partitionDir(partition), 'index.json')).size
  }
  const onDisk = files(join(backupDir, 'topics')).reduce((sum, f) => sum + f.size, 0)
  assert.equal(onDisk, indexed, 'the bytes on disk are the indexed segments and the indexes')

  const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8'))
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
