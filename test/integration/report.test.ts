import assert from 'node:assert/strict'
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import { checkReportContents } from '../../src/report/check.ts'
import { reportBackup, reportRestore } from '../../src/report/compare.ts'
import { checkSignature, type SignedReport, signReport } from '../../src/report/sign.ts'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { produceTransactional } from '../helpers/cases.ts'
import { type CliResult, runCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { useS3Server } from '../helpers/object-servers.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()

/** An Ed25519 key pair in PEM files, as `openssl genpkey -algorithm ed25519` writes them. */
function keyFiles(): { privateKey: string; publicKey: string } {
  const folder = mkdtempSync(join(tmpdir(), 'kafka-backup-keys-'))
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const files = { privateKey: join(folder, 'key.pem'), publicKey: join(folder, 'key.pub.pem') }
  writeFileSync(files.privateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }))
  writeFileSync(files.publicKey, publicKey.export({ type: 'spki', format: 'pem' }))
  return files
}

/** The config of the backup `test-backup` of `topic` in a filesystem folder. */
function backupConfig(topic: string, path: string): string {
  return `mode: backup
backup_id: test-backup
source:
  bootstrap_servers: ${bootstrapServers()}
  topics: { include: [${topic}] }
storage: { backend: filesystem, path: ${path} }
`
}

/** `kafka-backup report` on the job a config describes, signed with a new key pair, into a new file. */
async function reportCli(
  config: string
): Promise<{ made: CliResult; output: string; keys: { privateKey: string; publicKey: string } }> {
  const keys = keyFiles()
  const output = join(mkdtempSync(join(tmpdir(), 'kafka-backup-report-')), 'report.json')
  const made = await runCli(['report', '--config', writeConfig(config), '--key', keys.privateKey, '--output', output])
  return { made, output, keys }
}

/** A topic with committed and aborted transactions and plain writes on two partitions. */
async function transactionalTopic(label: string): Promise<{ topic: string; committed: number }> {
  const topic = uniqueTopic(label)
  await createTopic(cluster, topic, 2)
  return { topic, committed: await produceTransactional(topic, producer) }
}

describe('verification report on the filesystem', () => {
  test('report signs a backup that matches its source, verify-report accepts it, and rejects a changed report or another key', async () => {
    const storage = tempStorage()
    const { topic, committed } = await transactionalTopic('report-backup')
    await runBackup(backupOptions(cluster, storage, [topic]))
    const { made, output, keys } = await reportCli(backupConfig(topic, storage.location))
    assert.equal(made.code, 0, made.stderr)
    assert.match(made.stdout, /backup of test-backup: 2 partitions, \d+ records compared with .*: MATCH/)
    const signed = JSON.parse(readFileSync(output, 'utf8')) as SignedReport
    assert.equal(signed.report.result, 'match')
    assert.equal(
      signed.report.partitions.reduce((sum, p) => sum + p.backup.records, 0),
      committed,
      'every committed record, no aborted one'
    )
    for (const p of signed.report.partitions) {
      assert.deepEqual(p.backup, p.cluster)
      assert.match(p.backup.sha256, /^[0-9a-f]{64}$/)
    }
    assert.equal(signed.report.backup.runs.at(-1)?.status, 'complete', 'when it was backed up')

    const verified = await runCli([
      'verify-report',
      '--report',
      output,
      '--public-key',
      keys.publicKey,
      '--path',
      storage.location
    ])
    assert.equal(verified.code, 0, verified.stderr)
    assert.match(verified.stdout, /signature valid, contents consistent and backed by .*: MATCH/)

    // An auditor's copy edited to claim one record more.
    const edited = structuredClone(signed)
    edited.report.partitions[0]!.backup.records++
    edited.report.partitions[0]!.cluster.records++
    const editedFile = `${output}.edited.json`
    writeFileSync(editedFile, JSON.stringify(edited))
    const refused = await runCli(['verify-report', '--report', editedFile, '--public-key', keys.publicKey])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /KB_REPORT_INVALID.*the signature does not match the report/)

    const other = keyFiles()
    const wrongKey = await runCli(['verify-report', '--report', output, '--public-key', other.publicKey])
    assert.equal(wrongKey.code, 1)
    assert.match(wrongKey.stderr, /KB_REPORT_INVALID.*signed with another key than the trusted public key/)

    // A report re-signed by someone else whose verdict does not follow from its figures.
    const forged = structuredClone(signed.report)
    forged.partitions[1]!.cluster.sha256 = '0'.repeat(64)
    const forgedFile = `${output}.forged.json`
    writeFileSync(forgedFile, JSON.stringify(signReport(forged, createPrivateKey(readFileSync(other.privateKey)))))
    const inconsistent = await runCli(['verify-report', '--report', forgedFile, '--public-key', other.publicKey])
    assert.equal(inconsistent.code, 1)
    assert.match(
      inconsistent.stderr,
      /KB_REPORT_INVALID.*partitions\[1\] .* says it differs in \[\], its figures differ in \[sha256\]/
    )
  })

  test('report on a topic recreated with other records exits 1 naming the partition, and verify-report calls the signed report a mismatch', async () => {
    const storage = tempStorage()
    const { topic } = await transactionalTopic('report-recreated')
    await runBackup(backupOptions(cluster, storage, [topic]))
    await cluster.admin.deleteTopics({ topics: [topic] })
    await createTopic(cluster, topic, 2)
    await producer.send({
      messages: Array.from({ length: 80 }, (_, i) => ({
        topic,
        partition: i % 2,
        key: Buffer.from(`other-${i}`),
        value: Buffer.from('not the backed-up record')
      }))
    })
    const { made, output, keys } = await reportCli(backupConfig(topic, storage.location))
    assert.equal(made.code, 1, made.stdout)
    assert.match(
      made.stderr,
      /KB_VERIFY_MISMATCH: backup of test-backup differs from the cluster in 2 of 2 partitions, first .*\/0 -> .*\/0: .*sha256/
    )
    const signed = JSON.parse(readFileSync(output, 'utf8')) as SignedReport
    assert.equal(signed.report.result, 'mismatch')
    const verified = await runCli(['verify-report', '--report', output, '--public-key', keys.publicKey])
    assert.equal(verified.code, 1)
    assert.match(verified.stderr, /KB_VERIFY_MISMATCH: .* is authentic and records a mismatch/)
  })

  test('report on a restore compares the target with the backup and matches; verify-report accepts it', async () => {
    const storage = tempStorage()
    const { topic, committed } = await transactionalTopic('report-restore')
    await runBackup(backupOptions(cluster, storage, [topic]))
    const target = `${topic}-restored`
    await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
    const { made, output, keys } = await reportCli(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${bootstrapServers()}
restore:
  topic_mapping: { ${topic}: ${target} }
storage: { backend: filesystem, path: ${storage.location} }
`)
    assert.equal(made.code, 0, made.stderr)
    const signed = JSON.parse(readFileSync(output, 'utf8')) as SignedReport
    assert.equal(signed.report.kind, 'restore')
    assert.equal(signed.report.restore?.status, 'complete')
    assert.equal(
      signed.report.partitions.reduce((sum, p) => sum + p.cluster.records, 0),
      committed
    )
    assert.ok(signed.report.partitions.every(p => p.other.topic === target))
    const verified = await runCli(['verify-report', '--report', output, '--public-key', keys.publicKey])
    assert.equal(verified.code, 0, verified.stderr)
  })
})

describe('verification report on S3', async () => {
  const s3 = await useS3Server()
  test('a backup on S3 and its restore both report a match, and the signed reports verify against the backup', async () => {
    const storage = s3.storageFor(await s3.createBucket(), { prefix: 'kafka' })
    const { topic, committed } = await transactionalTopic('report-s3')
    await runBackup(backupOptions(cluster, storage, [topic]))
    const target = `${topic}-restored`
    await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const servers = [bootstrapServers()]
    for (const report of [
      await reportBackup(storage, 'test-backup', cluster, servers),
      await reportRestore(storage, storage, 'test-backup', undefined, cluster, servers)
    ]) {
      assert.equal(report.result, 'match', report.kind)
      assert.equal(
        report.partitions.reduce((sum, p) => sum + p.backup.records, 0),
        committed
      )
      const signed = signReport(report, privateKey)
      checkSignature(signed, publicKey, 'report.json')
      await checkReportContents(signed, 'report.json', storage)
      // The backup's digest of the same source range is the same in both reports.
      signed.report.partitions[0]!.backup.sha256 = 'f'.repeat(64)
      signed.report.partitions[0]!.cluster.sha256 = 'f'.repeat(64)
      await assert.rejects(
        checkReportContents(signed, 'report.json', storage),
        error => isBackupError(error, 'KB_REPORT_INVALID') && /no longer holds what the report says/.test(error.message)
      )
    }
    await storage.close()
  })
})
