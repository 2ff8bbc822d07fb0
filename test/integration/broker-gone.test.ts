/**
 * The broker stopped and kept down in the middle of a backup and of a restore: the run logs
 * every retry with what failed and the time left, ends with KB_KAFKA_UNREACHABLE once the
 * cluster's unreachable_timeout_secs pass, and a SIGTERM stops it within seconds keeping what
 * is durable (exit 143: an interrupted run is not a complete one). This file starts a broker
 * of its own, because it stops it.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { listOffsets } from '../../src/kafka/admin.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { backupOptions, newestRevisionFile, readBackedUpRecords, runBackup } from '../helpers/backup.ts'
import { newProducer } from '../helpers/cases.ts'
import { type CliResult, finished, startCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, OwnBroker, uniqueTopic } from '../helpers/kafka.ts'
import { produceBatches } from '../helpers/setup.ts'

const own = new OwnBroker('gone')
const recordsPerPartition = 10_000

/** Two partitions of 100-record batches. */
async function produce(topic: string): Promise<void> {
  await createTopic(own.cluster, topic, 2)
  const producer = newProducer({ bootstrapBrokers: [own.bootstrapServers] })
  await produceBatches(producer, topic, { partitions: 2, recordsPerPartition, valueBytes: 100 })
  await producer.close()
}

/** Collects a child's stderr as it comes, so a test can wait for a line. */
function watch(child: ChildProcess): { result: Promise<CliResult>; stderr: () => string } {
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  return { result: finished(child), stderr: () => stderr }
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`)
    }
    await sleep(50)
  }
}

/** A backup config whose fetches take one batch per partition each: the run lasts long enough to stop the broker in it. */
function backupConfig(topic: string, path: string, unreachableTimeoutSecs: number): string {
  return writeConfig(`mode: backup
backup_id: gone
source:
  bootstrap_servers: ${own.bootstrapServers}
  unreachable_timeout_secs: ${unreachableTimeoutSecs}
  topics: { include: [${topic}] }
  kafka_config: { max.partition.fetch.bytes: 1, fetch.min.bytes: 16000000, fetch.max.bytes: 16000000, fetch.max.wait.ms: 100 }
storage: { backend: filesystem, path: ${path} }
backup: { checkpoint_interval_secs: 1 }
`)
}

function restoreConfig(topic: string, path: string, unreachableTimeoutSecs: number): string {
  return writeConfig(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${own.bootstrapServers}
  unreachable_timeout_secs: ${unreachableTimeoutSecs}
storage: { backend: filesystem, path: ${path} }
restore:
  topic_mapping: { ${topic}: ${topic}-restored }
  default_replication_factor: 1
  rate_limit_bytes_per_sec: 200000
`)
}

const retryLine = (key: string) =>
  new RegExp(
    `no answer from Kafka at ${own.bootstrapServers}.*; retrying in [\\d.]+ s, giving up in [\\d.]+ s \\(${key}\\)`
  )

async function brokerDownDuring(child: ChildProcess, started: () => boolean | Promise<boolean>) {
  const watched = watch(child)
  await waitFor('the run to be under way', started)
  await own.stop()
  return watched
}

test('a backup whose broker stays down logs every retry and ends with KB_KAFKA_UNREACHABLE after source.unreachable_timeout_secs', async () => {
  const topic = uniqueTopic('gone-backup')
  await produce(topic)
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-gone-'))
  const child = startCli(['backup', '--config', backupConfig(topic, path, 6)])
  const { result, stderr } = await brokerDownDuring(
    child,
    () => newestRevisionFile(join(path, 'gone', 'manifest')) !== undefined
  )
  const stoppedAt = Date.now()
  const { code } = await result
  await own.restart()
  assert.match(stderr(), retryLine('source.unreachable_timeout_secs'))
  assert.match(
    stderr(),
    /kafka-backup: KB_KAFKA_UNREACHABLE: backup: gave up after [\d.]+ s without an answer from Kafka \(source\.unreachable_timeout_secs: 6\.0 s\)/
  )
  assert.equal(code, 1)
  assert.ok(Date.now() - stoppedAt < 40_000, `gave up ${Date.now() - stoppedAt} ms after the broker stopped`)
})

test('SIGTERM stops a backup waiting for a stopped broker within seconds, keeps the durable segments and exits 143', async () => {
  const topic = uniqueTopic('gone-backup-term')
  await produce(topic)
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-gone-'))
  const child = startCli(['backup', '--config', backupConfig(topic, path, 300)])
  const firstSegment = join(path, 'gone', 'topics', topic, '0', `${'0'.repeat(20)}.seg`)
  const { result, stderr } = await brokerDownDuring(child, () => existsSync(firstSegment))
  await waitFor('a retry log line', () => retryLine('source.unreachable_timeout_secs').test(stderr()))
  const signalledAt = Date.now()
  child.kill('SIGTERM')
  const { code } = await result
  const stopMs = Date.now() - signalledAt
  await own.restart()
  assert.equal(code, 143, stderr())
  assert.ok(stopMs < 3000, `stopped ${stopMs} ms after SIGTERM`)
  const records = await readBackedUpRecords(new FilesystemStorage({ path }), 'gone', topic)
  assert.ok(records.length > 0, 'what was fetched before the broker stopped is durable')
  for (let partition = 0; partition < 2; partition++) {
    const offsets = records.filter(r => r.partition === partition).map(r => r.offset)
    assert.deepEqual(
      offsets,
      offsets.map((_, i) => BigInt(i))
    )
  }
})

async function backedUp(topic: string): Promise<string> {
  await produce(topic)
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-gone-'))
  await runBackup(
    backupOptions(own.cluster, new FilesystemStorage({ path }), [topic], { bootstrapServers: [own.bootstrapServers] })
  )
  return path
}

/** True once the target topic holds records. */
const restoreStarted = (topic: string) => async () => {
  const ends = await listOffsets(own.cluster, [{ topic: `${topic}-restored`, partition: 0 }], 'latest').catch(
    () => undefined
  )
  return (ends?.get(`${topic}-restored/0`) ?? 0n) > 0n
}

test('a restore whose broker stays down logs every retry and ends with KB_KAFKA_UNREACHABLE after target.unreachable_timeout_secs', async () => {
  const topic = uniqueTopic('gone-restore')
  const path = await backedUp(topic)
  const child = startCli(['restore', '--config', restoreConfig(topic, path, 6)])
  const { result, stderr } = await brokerDownDuring(child, restoreStarted(topic))
  const { code } = await result
  await own.restart()
  assert.match(stderr(), retryLine('target.unreachable_timeout_secs'))
  assert.match(
    stderr(),
    /kafka-backup: KB_KAFKA_UNREACHABLE: restore: gave up after [\d.]+ s without an answer from Kafka \(target\.unreachable_timeout_secs: 6\.0 s\)/
  )
  assert.equal(code, 1)
})

test('SIGTERM stops a restore waiting for a stopped broker within seconds, saves its position and exits 143', async () => {
  const topic = uniqueTopic('gone-restore-term')
  const path = await backedUp(topic)
  const child = startCli(['restore', '--config', restoreConfig(topic, path, 300)])
  const { result, stderr } = await brokerDownDuring(child, restoreStarted(topic))
  await waitFor('a retry log line', () => retryLine('target.unreachable_timeout_secs').test(stderr()))
  const signalledAt = Date.now()
  child.kill('SIGTERM')
  const { code } = await result
  const stopMs = Date.now() - signalledAt
  await own.restart()
  assert.equal(code, 143, stderr())
  assert.ok(stopMs < 3000, `stopped ${stopMs} ms after SIGTERM`)
  const [firstRevision] = await new FilesystemStorage({ path }).list('test-backup/restores/')
  const newest = newestRevisionFile(join(path, dirname(firstRevision!.key)))!
  const state = JSON.parse(readFileSync(newest, 'utf8')) as { status: string }
  assert.equal(state.status, 'stopped')
})
