/**
 * A backup in the layout of versions before catalogue revisions (`manifest.json` and
 * `index.json` replaced in place) is listed, validated, restored and continued as it is, with
 * no migration; continuing it writes revisions beside the old files and never changes them,
 * and prune removes them once revisions supersede them.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  backupOptions,
  fingerprint,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  tempStorage
} from '../helpers/backup.ts'
import { runCli } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

async function produce(topic: string, from: number, count: number): Promise<void> {
  for (const partition of [0, 1]) {
    await producer.send({
      messages: Array.from({ length: count }, (_, i) => ({
        topic,
        partition,
        key: Buffer.from(`k${from + i}`),
        value: Buffer.from(`value ${partition}/${from + i}`)
      }))
    })
  }
}

/** `{base}/{newest revision}.json` becomes `{base}.json` without its revision field, as older versions wrote it. */
function toLegacy(base: string): void {
  const newest = newestRevisionFile(base)!
  const { revision: _, ...document } = JSON.parse(readFileSync(newest, 'utf8'))
  writeFileSync(`${base}.json`, `${JSON.stringify(document, null, 2)}\n`)
  rmSync(base, { recursive: true })
}

test('a backup written in the layout of older versions is listed, validated, restored and continued without a migration, and its old files are never changed', async () => {
  const topic = uniqueTopic('legacy-layout')
  await createTopic(cluster, topic, 2)
  await produce(topic, 0, 50)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  const backupDir = join(storage.location, 'test-backup')
  const indexBases = [0, 1].map(partition => join(backupDir, 'topics', topic, String(partition), 'index'))
  for (const base of [join(backupDir, 'manifest'), ...indexBases]) {
    toLegacy(base)
  }
  const legacy = fingerprint(storage.location)
  assert.deepEqual(
    [...legacy.keys()].filter(path => path.endsWith('.json')).sort(),
    [join(backupDir, 'manifest.json'), ...indexBases.map(base => `${base}.json`)].sort()
  )

  const listed = await runCli(['list', '--path', storage.location, '--json'])
  assert.equal(listed.code, 0, listed.stderr)
  assert.deepEqual(
    JSON.parse(listed.stdout).map((b: { backupId: string; topics: number }) => [b.backupId, b.topics]),
    [['test-backup', 1]]
  )
  const validate = await runCli(['validate', '--path', storage.location, '--backup-id', 'test-backup', '--deep'])
  assert.equal(validate.code, 0, validate.stdout)
  await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: `${topic}-restored` } }))
  assert.deepEqual(
    contentOf(await readTopicRecords(cluster, `${topic}-restored`)),
    contentOf(await readTopicRecords(cluster, topic))
  )

  await produce(topic, 50, 30)
  const continued = await runBackup(backupOptions(cluster, storage, [topic]))
  assert.equal(continued.records, 60, 'only the records added since the old checkpoint')
  const now = fingerprint(storage.location)
  for (const [path, hash] of legacy) {
    assert.equal(now.get(path), hash, `${path} is unchanged`)
  }
  for (const base of indexBases) {
    assert.deepEqual(readdirSync(base), ['000000000001.json'], 'the continuing run wrote revision 1')
  }
  const records = await readBackedUpRecords(storage, 'test-backup', topic)
  for (const partition of [0, 1]) {
    assert.deepEqual(
      records.filter(r => r.partition === partition).map(r => r.offset),
      Array.from({ length: 80 }, (_, i) => BigInt(i))
    )
  }

  const pruned = await runCli(['prune', '--path', storage.location, '--backup-id', 'test-backup', '--keep-from', '0'])
  assert.equal(pruned.code, 0, pruned.stderr)
  const afterPrune = fingerprint(storage.location)
  for (const path of legacy.keys()) {
    if (path.endsWith('.json')) {
      assert.equal(afterPrune.has(path), false, `prune removed the superseded ${path}`)
    }
  }
  const revalidated = await runCli(['validate', '--path', storage.location, '--backup-id', 'test-backup', '--deep'])
  assert.equal(revalidated.code, 0, revalidated.stdout)
})
