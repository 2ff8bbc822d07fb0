/**
 * Encrypted backups end to end against the real broker, on the filesystem and on the S3
 * emulator: exact round trips, key rotation, mixed (plaintext then encrypted) backups, and clean
 * failures with a missing or wrong key that leave the target untouched and print no key bytes.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { validateBackup } from '../../src/catalog/inspect.ts'
import { readManifest, readPartitionIndex, writePartitionIndex } from '../../src/catalog/manifest.ts'
import { pruneBackup } from '../../src/catalog/prune.ts'
import { parseKeyring } from '../../src/crypto/keys.ts'
import { isBackupError } from '../../src/errors.ts'
import { readSegmentIndex } from '../../src/segment/reader.ts'
import { openRangeSource } from '../../src/storage/range-source.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { backupOptions, newestRevisionFile, runBackup, tempStorage } from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { backupYaml, restoreYaml, runCli, writeConfig } from '../helpers/cli.ts'
import { type AdminCluster, createTopic, testCluster, uniqueTopic } from '../helpers/kafka.ts'
import { useS3Server } from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const k1 = randomBytes(32)
const k2 = randomBytes(32)
const wrong = randomBytes(32)
const keyringK1 = `k1 ${k1.toString('hex')}\n`
const keyringBoth = `k1 ${k1.toString('hex')}\nk2 ${k2.toString('base64')}\n`
const onlyK1 = parseKeyring(keyringK1, 'keyring file k1')
const bothKeys = parseKeyring(keyringBoth, 'keyring file k1+k2')
const onlyK2 = parseKeyring(`k2 ${k2.toString('hex')}`, 'keyring file k2')
const wrongK1 = parseKeyring(`k1 ${wrong.toString('hex')}`, 'keyring file wrong')

/** Every spelling of every key a log line or error could carry. */
const keyMaterial = [k1, k2, wrong].flatMap(key => [key.toString('hex'), key.toString('base64')])

function assertNoKeyMaterial(text: string, what: string): void {
  for (const secret of keyMaterial) {
    assert.ok(!text.includes(secret), `${what} holds key material`)
  }
}

let cluster: AdminCluster
before(() => {
  cluster = testCluster()
})
after(() => cluster.close())

const MARKER = 'plain-text-marker'

/** `count` records over two partitions, 100 a request, so that segments hold many batches and frames. */
async function produce(topic: string, round: number, count = 2000): Promise<void> {
  const producer = newProducer()
  for (let from = 0; from < count; from += 100) {
    await producer.send({
      messages: Array.from({ length: Math.min(100, count - from) }, (_, j) => {
        const i = from + j
        return {
          topic,
          partition: i % 2,
          key: Buffer.from(`key-${round}-${i}`),
          value: Buffer.from(`${MARKER} round ${round} record ${i} ${'x'.repeat(i % 300)}`),
          headers: new Map([[Buffer.from('round'), Buffer.from(String(round))]])
        }
      })
    })
  }
  await producer.close()
}

async function segmentKeys(storage: Storage): Promise<string[]> {
  return (await storage.list('test-backup/topics/'))
    .map(object => object.key)
    .filter(key => key.endsWith('.seg'))
    .sort()
}

/** The key id each stored segment's header names (undefined: plaintext), in key order. */
async function headerKeyIds(storage: Storage): Promise<Array<string | undefined>> {
  const ids: Array<string | undefined> = []
  for (const key of await segmentKeys(storage)) {
    const index = await readSegmentIndex(await openRangeSource(storage, key), key)
    ids.push(index.header.encryption?.keyId)
  }
  return ids
}

async function assertRestoredExactly(topic: string, target: string): Promise<void> {
  const restored = await readTopicRecords(cluster, target)
  const source = await readTopicRecords(cluster, topic)
  assert.ok(source.length > 0)
  assert.deepEqual(contentOf(restored), contentOf(source))
}

async function encryptedRoundTrip(storage: Storage, label: string): Promise<void> {
  const topic = uniqueTopic(`enc-${label}`)
  await createTopic(cluster, topic, 2)
  await produce(topic, 1)
  const summary = await runBackup(
    backupOptions(cluster, storage, [topic], { keys: onlyK1, frameMaxBytes: 16 * 1024, segmentMaxBytes: 64 * 1024 })
  )
  assert.equal(summary.records, 2000)

  const keys = await segmentKeys(storage)
  assert.ok(keys.length > 2, `several segments a partition (${keys.length})`)
  assert.deepEqual(new Set(await headerKeyIds(storage)), new Set(['k1']))
  for (const key of keys) {
    const bytes = await storage.get(key)
    assert.ok(!bytes.includes(MARKER), `${key} holds no record in the clear`)
    assert.ok(!bytes.includes(k1), `${key} holds no key`)
  }
  const manifest = await readManifest(storage, 'test-backup')
  assert.deepEqual(manifest?.encryption, { keyIds: ['k1'] })
  assertNoKeyMaterial(JSON.stringify(manifest), 'the manifest')
  const index = await readPartitionIndex(storage, 'test-backup', topic, 0)
  assert.ok(index?.segments.every(segment => segment.keyId === 'k1'))

  // Deep validation opens every frame and checks every tag; without the key it says so.
  const report = await validateBackup(storage, 'test-backup', { deep: true, keys: onlyK1 })
  assert.deepEqual(report.problems, [])
  assert.ok(report.frames > keys.length, `${report.frames} frames checked`)
  assert.equal(report.records, 2000)
  await assert.rejects(validateBackup(storage, 'test-backup', { deep: true }), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_KEY_NOT_FOUND'), String(error))
    assert.match(error.message, /deep validation decrypts every frame and needs the keyring/)
    return true
  })
  assert.deepEqual((await validateBackup(storage, 'test-backup')).problems, [], 'shallow validation needs no key')

  // Wrong key, missing id, no keyring: each fails before anything is written to the target.
  const failures: string[] = []
  for (const [keys, code] of [
    [wrongK1, 'KB_DECRYPT_FAILED'],
    [onlyK2, 'KB_KEY_NOT_FOUND'],
    [undefined, 'KB_KEY_NOT_FOUND']
  ] as const) {
    const target = `${topic}-refused`
    await assert.rejects(
      runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, keys })),
      (error: unknown) => {
        assert.ok(isBackupError(error, code), `${code}: ${String(error)}`)
        assert.ok(error.message.includes('k1'), `names the key id: ${error.message}`)
        failures.push(`${error.message} ${JSON.stringify(error)}`)
        return true
      }
    )
    const topics = await cluster.admin.listTopics()
    assert.ok(!topics.includes(target), 'the refused restore created nothing')
  }
  assertNoKeyMaterial(failures.join('\n'), 'the errors')

  const target = `${topic}-restored`
  const restored = await runRestore(
    restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, keys: onlyK1 })
  )
  assert.equal(restored.records, 2000)
  await assertRestoredExactly(topic, target)
}

test('an encrypted backup on the filesystem round-trips exactly, validates deep, and refuses a wrong or missing key', async () => {
  await encryptedRoundTrip(tempStorage(), 'fs')
})

describe('S3', async () => {
  const s3 = await useS3Server()
  test('an encrypted backup on S3 round-trips exactly, validates deep, and refuses a wrong or missing key', async () => {
    const storage = s3.storageFor(await s3.createBucket(), { prefix: 'kafka' })
    await encryptedRoundTrip(storage, 's3')
    await storage.close()
  })
})

test('a plaintext backup continues encrypted, rotates keys without rewriting, restores whole and by time window, and refuses to go back to plaintext', async () => {
  const storage = tempStorage()
  const topic = uniqueTopic('enc-rotation')
  await createTopic(cluster, topic, 2)
  const options = { frameMaxBytes: 16 * 1024, segmentMaxBytes: 64 * 1024 }
  await produce(topic, 1, 500)
  await runBackup(backupOptions(cluster, storage, [topic], options))
  const plainSegments = (await headerKeyIds(storage)).length
  const round2From = BigInt(Date.now())
  await produce(topic, 2, 500)
  const round2To = BigInt(Date.now())
  await runBackup(backupOptions(cluster, storage, [topic], { ...options, keys: onlyK1 }))
  await produce(topic, 3, 500)
  await runBackup(backupOptions(cluster, storage, [topic], { ...options, keys: bothKeys }))

  const ids = await headerKeyIds(storage)
  assert.ok(ids.includes(undefined) && ids.includes('k1') && ids.includes('k2'), JSON.stringify(ids))
  assert.equal(ids.filter(id => id === undefined).length, plainSegments, 'older segments were not rewritten')
  assert.deepEqual((await readManifest(storage, 'test-backup'))?.encryption, { keyIds: ['k1', 'k2'] })

  const before = JSON.stringify(await segmentKeys(storage))
  await assert.rejects(runBackup(backupOptions(cluster, storage, [topic], options)), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
    assert.match(error.message, /is encrypted \(key ids k1, k2\); set backup\.encryption/)
    return true
  })
  assert.equal(JSON.stringify(await segmentKeys(storage)), before, 'the refused run wrote no segment')

  await assert.rejects(
    runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: `${topic}-k1only` }, keys: onlyK1 })),
    (error: unknown) => isBackupError(error, 'KB_KEY_NOT_FOUND') && error.message.includes('has no key k2')
  )
  const report = await validateBackup(storage, 'test-backup', { deep: true, keys: bothKeys })
  assert.deepEqual(report.problems, [])
  await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: `${topic}-restored` }, keys: bothKeys }))
  await assertRestoredExactly(topic, `${topic}-restored`)

  // A time window reads only the frames it overlaps, each decrypted on its own.
  const windowed = `${topic}-window`
  await runRestore(
    restoreOptions(cluster, storage, {
      topicMapping: { [topic]: windowed },
      window: { start: round2From, end: round2To },
      keys: bothKeys
    })
  )
  const expected = (await readTopicRecords(cluster, topic)).filter(
    record => record.timestamp >= round2From && record.timestamp <= round2To
  )
  assert.equal(expected.length, 500)
  assert.deepEqual(contentOf(await readTopicRecords(cluster, windowed)), contentOf(expected))

  // An index entry that no longer names its segment's key is caught against the header.
  const index = (await readPartitionIndex(storage, 'test-backup', topic, 0))!
  const edited = index.segments.findIndex(segment => segment.keyId === 'k2')
  delete index.segments[edited]!.keyId
  await writePartitionIndex(storage, 'test-backup', index)
  const problems = (await validateBackup(storage, 'test-backup')).problems
  assert.equal(problems.length, 1, JSON.stringify(problems))
  assert.equal(problems[0]!.code, 'KB_SEGMENT_CORRUPT')
  assert.match(problems[0]!.message, /keyId is k2, its index entry says none/)
})

test('the CLI backs up and restores with a keyring file, fails a wrong key with its code, and logs no key bytes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kafka-backup-test-'))
  const keyDir = mkdtempSync(join(tmpdir(), 'kafka-backup-keys-'))
  const topic = uniqueTopic('enc-cli')
  await createTopic(cluster, topic, 2)
  await produce(topic, 1, 500)
  const keyringFile = join(keyDir, 'keyring')
  writeFileSync(keyringFile, keyringK1)
  chmodSync(keyringFile, 0o600)
  const wrongFile = join(keyDir, 'wrong-keyring')
  writeFileSync(wrongFile, `k1 ${wrong.toString('base64')}\n`)
  chmodSync(wrongFile, 0o600)
  const encryption = (file: string, indent: string) => `${indent}encryption:\n${indent}  keyring_file: ${file}\n`
  const output: string[] = []
  const run = async (args: string[]) => {
    const result = await runCli(args)
    output.push(result.stdout, result.stderr)
    return result
  }

  const backup = writeConfig(backupYaml('test-backup', topic, dir, `backup:\n${encryption(keyringFile, '  ')}`))
  const backedUp = await run(['backup', '--config', backup])
  assert.equal(backedUp.code, 0, backedUp.stderr)
  const described = await run(['describe', '--path', dir, '--backup-id', 'test-backup'])
  assert.match(described.stdout, /encrypted with key ids k1\n/)

  const wrongRestore = writeConfig(restoreYaml(topic, `${topic}-wrong`, dir, encryption(wrongFile, '  ')))
  const failed = await run(['restore', '--config', wrongRestore])
  assert.notEqual(failed.code, 0)
  assert.match(failed.stderr, /KB_DECRYPT_FAILED/)
  assert.match(failed.stderr, /key k1 of keyring file .*wrong-keyring does not unwrap its data key/)

  const deepWithout = await run(['validate', '--path', dir, '--backup-id', 'test-backup', '--deep'])
  assert.notEqual(deepWithout.code, 0)
  assert.match(deepWithout.stderr, /KB_KEY_NOT_FOUND.*deep validation decrypts every frame and needs the keyring/)
  const deep = await run([
    'validate',
    '--path',
    dir,
    '--backup-id',
    'test-backup',
    '--deep',
    '--keyring-file',
    keyringFile
  ])
  assert.equal(deep.code, 0, deep.stdout + deep.stderr)
  assert.match(deep.stdout, /is valid: .* frames read and checked/)

  const goodRestore = writeConfig(restoreYaml(topic, `${topic}-restored`, dir, encryption(keyringFile, '  ')))
  const restored = await run(['restore', '--config', goodRestore])
  assert.equal(restored.code, 0, restored.stderr)
  await assertRestoredExactly(topic, `${topic}-restored`)
  assertNoKeyMaterial(output.join('\n'), 'the CLI output')
})

test('encrypted segments a killed run left outside the index: the next run records the one it finished, restore and validate --deep read it with the key, and prune removes the copy below the checkpoint', async () => {
  const topic = uniqueTopic('enc-leftovers')
  await createTopic(cluster, topic, 2)
  await produce(topic, 1, 1000)
  const storage = tempStorage()
  const options = backupOptions(cluster, storage, [topic], {
    keys: onlyK1,
    frameMaxBytes: 16 * 1024,
    segmentMaxBytes: 32 * 1024
  })
  await runBackup(options)
  const partitionDir = (partition: number) => join(storage.location, 'test-backup', 'topics', topic, String(partition))

  // Partition 0: a run killed after its last segment was durable, before the index revision
  // that records it.
  const indexDir = join(partitionDir(0), 'index')
  const recorded = JSON.parse(readFileSync(newestRevisionFile(indexDir)!, 'utf8'))
  assert.ok(recorded.segments.length >= 2, `${recorded.segments.length} segments`)
  rmSync(newestRevisionFile(indexDir)!)
  const unrecorded = `test-backup/${recorded.segments.at(-1).key}`
  // Partition 1: an encrypted segment below the checkpoint that no index lists (a redundant
  // copy, as an interrupted run or prune leaves one).
  const [first] = (await readPartitionIndex(storage, 'test-backup', topic, 1))!.segments
  const copy = join(partitionDir(1), '00000000000000000001.seg')
  copyFileSync(join(storage.location, 'test-backup', first!.key), copy)
  const leftovers = (await validateBackup(storage, 'test-backup')).problems
  assert.deepEqual(
    leftovers.map(p => [p.code, p.severity, p.key]),
    [
      ['KB_ORPHAN_SEGMENT', 'warning', unrecorded],
      ['KB_ORPHAN_SEGMENT', 'warning', `test-backup/topics/${topic}/1/00000000000000000001.seg`]
    ]
  )

  await produce(topic, 2, 200)
  const warnings: string[] = []
  const second = await runBackup({ ...options, onWarning: message => warnings.push(message) })
  assert.equal(second.records, 200, 'the next run took only the new records')
  assert.ok(
    warnings.some(w => w.includes(`recorded segment ${unrecorded}`)),
    warnings.join('\n')
  )
  assert.ok(existsSync(copy), 'a backup run deletes nothing')

  const target = `${topic}-restored`
  const restored = await runRestore(
    restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, keys: onlyK1 })
  )
  assert.equal(restored.records, 1200, 'the copy is not restored, the recorded segment is')
  await assertRestoredExactly(topic, target)
  const deep = await validateBackup(storage, 'test-backup', { deep: true, keys: onlyK1 })
  assert.deepEqual(
    deep.problems.map(p => [p.code, p.severity]),
    [['KB_ORPHAN_SEGMENT', 'warning']],
    'only the copy, until prune'
  )
  assert.equal(deep.records, 1200)

  const pruned = await pruneBackup({ storage, backupId: 'test-backup', keepFrom: 0 })
  assert.equal(pruned.segments, 0, 'no record is older than the cutoff')
  assert.equal(existsSync(copy), false, 'prune removed the copy')
  assert.deepEqual((await validateBackup(storage, 'test-backup', { deep: true, keys: onlyK1 })).problems, [])
})
