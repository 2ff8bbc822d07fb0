import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { listOffsets } from '../../src/kafka/admin.ts'
import {
  backupOptions,
  fingerprint,
  newestRevisionFile,
  readBackedUpRecords,
  runBackup,
  tempStorage
} from '../helpers/backup.ts'
import { backupYaml, finished, restoreYaml, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

/** About 1 KiB of JSON per record, compressible like real events. */
async function produceJson(topic: string, partitions: number, recordsPerPartition: number): Promise<void> {
  for (let partition = 0; partition < partitions; partition++) {
    for (let start = 0; start < recordsPerPartition; start += 500) {
      await producer.send({
        compression: 'lz4',
        messages: Array.from({ length: Math.min(500, recordsPerPartition - start) }, (_, i) => ({
          topic,
          partition,
          key: Buffer.from(`customer-${(start + i) % 977}`),
          value: Buffer.from(
            JSON.stringify({
              id: start + i,
              partition,
              kind: 'order-created',
              items: Array.from({ length: 8 }, (_, n) => ({
                sku: `SKU-${(start + i + n) % 1000}`,
                qty: n + 1,
                note: 'x'.repeat(60)
              }))
            })
          )
        }))
      })
    }
  }
}

test('a backup killed with SIGKILL and run again holds every record exactly once', async () => {
  const topic = uniqueTopic('cli-kill-backup')
  await createTopic(cluster, topic, 2)
  await produceJson(topic, 2, 15_000)
  const storage = tempStorage()
  const path = storage.location
  const config = writeConfig(backupYaml('cli-test', topic, path))
  // The first run gets one batch per Fetch, each held 300 ms by an unreachable fetch.min.bytes,
  // and closes a segment per batch: slow enough to be killed halfway, with segments durable.
  const slow = writeConfig(
    backupYaml('cli-test', topic, path, 'backup:\n  segment_max_bytes: 65536\n  frame_max_bytes: 65536\n').replace(
      '  topics:',
      '  kafka_config:\n    fetch.min.bytes: 16777216\n    fetch.max.bytes: 16777216\n    fetch.max.wait.ms: 300\n    max.partition.fetch.bytes: 1\n  topics:'
    )
  )
  const child = startCli(['backup', '--config', slow])
  const result = finished(child)
  const indexFile = () => newestRevisionFile(join(path, 'cli-test', 'topics', topic, '0', 'index'))
  const durableSegments = () => {
    const file = indexFile()
    return file ? JSON.parse(readFileSync(file, 'utf8')).segments.length : 0
  }
  // Killed once several segments are durable and more batches are on their way.
  await until(() => durableSegments() >= 2, 'the first run to make two segments durable')
  child.kill('SIGKILL')
  assert.equal((await result).signal, 'SIGKILL')
  const manifest = JSON.parse(readFileSync(newestRevisionFile(join(path, 'cli-test', 'manifest'))!, 'utf8'))
  assert.equal(manifest.runs.at(-1).status, 'running', 'the killed run did not finish')

  const rerun = await runCli(['backup', '--config', config, '--json'])
  assert.equal(rerun.code, 0, rerun.stderr)
  const summary = JSON.parse(rerun.stdout)
  assert.ok(summary.records > 0 && summary.records < 30_000, `the rerun continued (${summary.records} records)`)

  const records = await readBackedUpRecords(storage, 'cli-test', topic)
  for (let partition = 0; partition < 2; partition++) {
    const offsets = records.filter(r => r.partition === partition).map(r => r.offset)
    assert.deepEqual(
      offsets,
      Array.from({ length: 15_000 }, (_, i) => BigInt(i)),
      `partition ${partition}: every offset once, in order`
    )
  }
  const validate = await runCli(['validate', '--path', path, '--backup-id', 'cli-test', '--deep', '--json'])
  assert.equal(validate.code, 0, validate.stdout)
  assert.equal(JSON.parse(validate.stdout).valid, true)
})

test('a restore killed with SIGKILL and run again writes every record exactly once', async () => {
  const topic = uniqueTopic('cli-kill-restore')
  await createTopic(cluster, topic, 2)
  await produceJson(topic, 2, 10_000)
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic], { compression: 'lz4', segmentMaxBytes: 2 * 1024 * 1024 }))
  const target = `${topic}-restored`
  // A rate limit makes the first run slow enough to be killed halfway; it is not part of the
  // restore's identity, so the second run, without it, resumes the same restore.
  const child = startCli([
    'restore',
    '--config',
    writeConfig(restoreYaml(topic, target, storage.location, '  rate_limit_bytes_per_sec: 65536\n'))
  ])
  const result = finished(child)
  const restoresDir = join(storage.location, 'test-backup', 'restores')
  const checkpointedRecords = () => {
    const [id] = existsSync(restoresDir) ? readdirSync(restoresDir) : []
    const file = id && newestRevisionFile(join(restoresDir, id, 'restore'))
    if (!file) return 0
    const partitions: Array<{ records: number }> = JSON.parse(readFileSync(file, 'utf8')).partitions
    return partitions.reduce((sum, p) => sum + p.records, 0)
  }
  const progressed = () => checkpointedRecords() > 0
  await until(progressed, 'the first run to checkpoint some progress')
  // Killed once the target holds records beyond the checkpoint: written but not checkpointed.
  const partitions = [0, 1].map(partition => ({ topic: target, partition }))
  await until(async () => {
    const checkpointed = checkpointedRecords()
    const written = [...(await listOffsets(cluster, partitions, 'latest')).values()].reduce((a, b) => a + b, 0n)
    return written > BigInt(checkpointed)
  }, 'records written beyond the checkpoint')
  child.kill('SIGKILL')
  assert.equal((await result).signal, 'SIGKILL')

  const rerun = await runCli([
    'restore',
    '--config',
    writeConfig(restoreYaml(topic, target, storage.location)),
    '--json'
  ])
  assert.equal(rerun.code, 0, rerun.stderr)
  const source = await readTopicRecords(cluster, topic)
  const restored = await readTopicRecords(cluster, target)
  assert.equal(restored.length, 20_000, 'no record lost or duplicated')
  assert.deepEqual(contentOf(restored), contentOf(source))
})

test('bad inputs give one clear line with a code, a non-zero exit, and leave the backup untouched', async () => {
  const topic = uniqueTopic('cli-errors')
  await createTopic(cluster, topic, 1)
  await produceJson(topic, 1, 100)
  const storage = tempStorage()
  const path = storage.location
  const good = writeConfig(backupYaml('cli-test', topic, path))
  assert.equal((await runCli(['backup', '--config', good])).code, 0)
  const before = fingerprint(path)

  const fileInsteadOfFolder = join(path, 'not-a-folder')
  writeFileSync(fileInsteadOfFolder, 'x')
  const cases: Array<{ name: string; args: string[]; code: string; exit: number }> = [
    {
      name: 'missing backup_id',
      args: [
        'backup',
        '--config',
        writeConfig(backupYaml('cli-test', topic, path).replace('backup_id: cli-test\n', ''))
      ],
      code: 'KB_CONFIG_INVALID',
      exit: 2
    },
    {
      name: 'unknown backend',
      args: [
        'backup',
        '--config',
        writeConfig(backupYaml('cli-test', topic, path).replace('backend: filesystem', 'backend: tape'))
      ],
      code: 'KB_CONFIG_INVALID',
      exit: 2
    },
    {
      name: 'missing config file',
      args: ['backup', '--config', join(path, 'nope.yaml')],
      code: 'KB_CONFIG_NOT_FOUND',
      exit: 2
    },
    {
      name: 'unreachable broker',
      args: ['backup', '--config', good, '--bootstrap-servers', '127.0.0.1:1'],
      code: 'KB_KAFKA_UNREACHABLE',
      exit: 1
    },
    {
      name: 'unwritable path',
      args: ['backup', '--config', good, '--path', join(fileInsteadOfFolder, 'backups')],
      code: 'KB_STORAGE',
      exit: 1
    },
    {
      name: 'a topic pattern that matches nothing',
      args: ['backup', '--config', good, '--topics', 'no-such-topic-*'],
      code: 'KB_TOPIC_NOT_FOUND',
      exit: 1
    },
    {
      name: 'a backup that does not exist',
      args: ['describe', '--path', path, '--backup-id', 'no-such-backup'],
      code: 'KB_BACKUP_NOT_FOUND',
      exit: 1
    }
  ]
  for (const c of cases) {
    const result = await runCli(c.args)
    assert.equal(result.code, c.exit, `${c.name}: exit code (stderr: ${result.stderr})`)
    const lines = result.stderr.trim().split('\n')
    assert.equal(lines.length, 1, `${c.name}: one line, got ${result.stderr}`)
    assert.match(lines[0]!, new RegExp(`^kafka-backup: ${c.code}: `), `${c.name}: ${lines[0]}`)
    assert.doesNotMatch(result.stderr, /\n\s+at /, `${c.name}: no stack trace`)
  }
  assert.deepEqual(
    fingerprint(path),
    new Map([...before, [fileInsteadOfFolder, fingerprint(path).get(fileInsteadOfFolder)!]])
  )
})

test('a password in the config never appears in the output of a failing run', async () => {
  const secret = 'Sup3r-S3cret-Passw0rd'
  const config = writeConfig(`mode: backup
backup_id: secret-test
source:
  bootstrap_servers: 127.0.0.1:1
  security:
    security_protocol: SASL_PLAINTEXT
    sasl_mechanism: PLAIN
    sasl_username: admin
    sasl_password: ${secret}
storage:
  backend: filesystem
  path: ${tempStorage().location}
`)
  for (const args of [
    ['backup', '--config', config],
    ['backup', '--config', config, '--json', '--debug', '--log-level', 'debug']
  ]) {
    const result = await runCli(args)
    assert.notEqual(result.code, 0)
    assert.ok(
      !`${result.stdout}${result.stderr}`.includes(secret),
      `the password leaked: ${result.stdout}${result.stderr}`
    )
  }
})

test('a backup that fails with metrics enabled closes the endpoint and exits with its code', async () => {
  const config = writeConfig(`mode: backup
backup_id: metrics-failure
source:
  bootstrap_servers: 127.0.0.1:1
storage:
  backend: filesystem
  path: ${tempStorage().location}
metrics: { enabled: true, port: 0, host: 127.0.0.1 }
`)
  const child = startCli(['backup', '--config', config])
  // The endpoint once kept the process alive for ever after the error: a hang, not an exit.
  const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const result = await finished(child)
  clearTimeout(deadline)
  assert.equal(result.signal, null, `the CLI did not exit by itself: ${result.stderr}`)
  assert.equal(result.code, 1)
  assert.match(result.stderr, /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/)
  assert.match(result.stderr, /^kafka-backup: KB_KAFKA_UNREACHABLE: .*127\.0\.0\.1:1/m)
})

test('list, describe and offset-map print what a backup and its restore hold, as JSON', async () => {
  const topic = uniqueTopic('cli-inspect')
  await createTopic(cluster, topic, 2)
  await produceJson(topic, 2, 300)
  const storage = tempStorage()
  const path = storage.location
  assert.equal((await runCli(['backup', '--config', writeConfig(backupYaml('cli-test', topic, path))])).code, 0)
  const target = `${topic}-copy`
  const restore = await runCli([
    'restore',
    '--json',
    '--config',
    writeConfig(`mode: restore
backup_id: cli-test
target:
  bootstrap_servers: ${bootstrapServers()}
restore:
  topic_mapping: { ${topic}: ${target} }
storage: { backend: filesystem, path: ${path} }
`)
  ])
  assert.equal(restore.code, 0, restore.stderr)
  const { restoreId } = JSON.parse(restore.stdout)

  const list = JSON.parse((await runCli(['list', '--path', path, '--json'])).stdout)
  assert.deepEqual(
    list.map((b: { backupId: string; topics: number; lastRun: string }) => [b.backupId, b.topics, b.lastRun]),
    [['cli-test', 1, 'complete']]
  )
  const describe = JSON.parse((await runCli(['describe', '--path', path, '--backup-id', 'cli-test', '--json'])).stdout)
  assert.equal(describe.records, 600)
  assert.deepEqual(
    describe.topics[0].partitions.map((p: { partition: number; startOffset: string; nextOffset: string }) => [
      p.partition,
      p.startOffset,
      p.nextOffset
    ]),
    [
      [0, '0', '300'],
      [1, '0', '300']
    ]
  )
  assert.ok(describe.compressionRatio > 1)
  const human = await runCli(['describe', '--path', path, '--backup-id', 'cli-test'])
  assert.match(human.stdout, new RegExp(`${topic}/1\\s+0\\.\\.299\\s+300`))

  const offsetMap = JSON.parse(
    (await runCli(['offset-map', '--path', path, '--backup-id', 'cli-test', '--json'])).stdout
  )
  assert.equal(offsetMap.length, 1)
  assert.equal(offsetMap[0].restoreId, restoreId)
  assert.deepEqual(
    offsetMap[0].partitions.map((p: { target: { topic: string }; runs: unknown[] }) => [p.target.topic, p.runs]),
    [
      [target, [{ sourceOffset: '0', targetOffset: '0', count: 300 }]],
      [target, [{ sourceOffset: '0', targetOffset: '0', count: 300 }]]
    ]
  )
})
