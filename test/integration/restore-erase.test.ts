/**
 * Erasure on restore (restore.erase) against the real broker: records whose key an erasure
 * request names never come back, every other record does, exactly once and unchanged, from
 * filesystem and S3 backups of compressed (every codec) and transactional topics, also with a
 * time window; the erased count is reported and group offsets stay exact.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { backupOptions, readBackedUpRecords, runBackup, type StoredRecord, tempStorage } from '../helpers/backup.ts'
import { BASE_TIMESTAMP, produceDataKinds, produceTransactional } from '../helpers/cases.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { useS3Server } from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

/** What the request names: exact keys (text, base64 for binary and the empty key) and patterns. */
const KEYS_FILE_LINES = [
  '# erasure request 42, one key per line',
  'key-1-5',
  `base64:${Buffer.from('committed-1-1-2').toString('base64')}`,
  'base64:',
  '',
  'k45\r'
]
const INLINE_KEYS = ['k44', 'k46']
const PATTERNS = ['key-2-1?', 'plain-2-*']

function isErased(key: string | null): boolean {
  if (key === null) {
    return false
  }
  const exact = new Set(['key-1-5', 'committed-1-1-2', '', 'k45', 'k44', 'k46'])
  return exact.has(key) || /^key-2-1.$/.test(key) || key.startsWith('plain-2-')
}

/** Backs up three topics into `storage`: every codec, transactions, and a numbered one with a group. */
async function backedUp(storage: Storage, label: string) {
  const kinds = uniqueTopic(`${label}-kinds`)
  const transactional = uniqueTopic(`${label}-tx`)
  const numbered = uniqueTopic(`${label}-num`)
  await createTopic(cluster, kinds, 5)
  await createTopic(cluster, transactional, 2)
  await createTopic(cluster, numbered, 1)
  await produceDataKinds(producer, kinds)
  await produceTransactional(transactional, producer)
  for (let from = 0; from < 100; from += 10) {
    await produceNumbered(producer, numbered, 0, from, 10)
  }
  const groupId = `${numbered}-reader`
  await cluster.admin.alterConsumerGroupOffsets({
    groupId,
    topics: [{ name: numbered, partitionOffsets: [{ partition: 0, offset: 45n }] }]
  })
  await runBackup(backupOptions(cluster, storage, [kinds, transactional, numbered]))
  return { topics: [kinds, transactional, numbered], numbered, groupId }
}

async function restoreErasing(storage: Storage, label: string, window: { start?: bigint; end?: bigint }) {
  const { topics, numbered, groupId } = await backedUp(storage, label)
  const keysFile = join(mkdtempSync(join(tmpdir(), 'kb-erase-')), 'erase.txt')
  writeFileSync(keysFile, KEYS_FILE_LINES.join('\n'))
  const mapping = Object.fromEntries(topics.map(t => [t, `${t}-restored`]))
  const summary = await runRestore(
    restoreOptions(cluster, storage, {
      topics: { include: topics, exclude: [] },
      topicMapping: mapping,
      window,
      erase: { keysFile, keys: INLINE_KEYS, patterns: PATTERNS },
      resetConsumerOffsets: true,
      consumerGroups: [groupId]
    })
  )
  const inWindow = (r: StoredRecord) =>
    (window.start === undefined || r.timestamp >= window.start) &&
    (window.end === undefined || r.timestamp <= window.end)
  let erasedExpected = 0
  for (const topic of topics) {
    const backed = (await readBackedUpRecords(storage, 'test-backup', topic)).filter(inWindow)
    const kept = backed.filter(r => !isErased(r.key))
    erasedExpected += backed.length - kept.length
    const restored = await readTopicRecords(cluster, mapping[topic]!)
    assert.deepEqual(contentOf(restored), contentOf(kept), `${topic}: every record not erased, once, unchanged`)
    assert.equal(restored.filter(r => isErased(r.key)).length, 0, `${topic}: no erased key came back`)
    if (topic === numbered) {
      // The group had read up to 45: it resumes at the first kept record from 45 on (k47).
      const resume = kept.findIndex(r => r.offset >= 45n)
      const committed = summary.consumerGroups.find(g => g.groupId === groupId)?.offsets[0]
      assert.equal(committed?.targetOffset, String(restored[resume]!.offset))
      assert.equal(restored[resume]!.key, 'k47')
    }
  }
  assert.ok(erasedExpected > 10, `the scenario erases records (${erasedExpected})`)
  assert.equal(summary.erasedRecords, erasedExpected)
  assert.equal(
    summary.partitions.reduce((sum, p) => sum + p.erasedRecords, 0),
    erasedExpected
  )
}

describe('issue 15: restore.erase leaves the named keys out of a restore', () => {
  test('from a filesystem backup: every codec, transactions, a group; erased keys never come back, the rest exactly once', async () => {
    await restoreErasing(tempStorage(), 'erase-fs', {})
  })

  test('from an S3 backup with a time window: only records inside it and not erased come back', async () => {
    const s3 = await useS3Server()
    const storage = s3.storageFor(await s3.createBucket('erase'))
    await restoreErasing(storage, 'erase-s3', { start: BASE_TIMESTAMP + 20n })
  })

  test('a keys file with bad base64 is refused before anything is written, naming the file and line', async () => {
    const storage = tempStorage()
    const topic = uniqueTopic('erase-bad')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 5)
    await runBackup(backupOptions(cluster, storage, [topic]))
    const keysFile = join(mkdtempSync(join(tmpdir(), 'kb-erase-')), 'bad-keys.txt')
    writeFileSync(keysFile, 'k1\nbase64:not base64!\n')
    await assert.rejects(
      runRestore(
        restoreOptions(cluster, storage, {
          topicMapping: { [topic]: `${topic}-restored` },
          erase: { keysFile, keys: [], patterns: [] }
        })
      ),
      error => isBackupError(error, 'KB_CONFIG_INVALID') && /bad-keys\.txt line 2/.test(error.message)
    )
    const topics = await cluster.admin.listTopics({ includeInternals: false })
    assert.ok(!topics.includes(`${topic}-restored`), 'nothing was created')
  })
})
