/**
 * Several `kafka-backup backup` processes with one config (backup.workers) against the real
 * broker: they share the partitions through their Kafka group, a killed worker's partitions are
 * finished by the others, and a worker paused past its session timeout is fenced off: its late
 * writes are refused and never become part of the backup.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { readBackedUpRecords } from '../helpers/backup.ts'
import { backupYaml, type CliResult, finished, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceBatches, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

const PARTITIONS = 24
const BACKUP_ID = 'workers'

/**
 * Three workers of a rate-limited one-shot backup of a 24-partition topic: each takes several
 * seconds over its share, so the tests can act while all three hold partitions. Segments close
 * on size only, so a worker holds data not yet durable most of the time.
 */
async function setUp(label: string, { recordsPerPartition = 300 } = {}) {
  const topic = uniqueTopic(label)
  await createTopic(cluster, topic, PARTITIONS)
  await produceBatches(producer, topic, {
    partitions: PARTITIONS,
    recordsPerPartition,
    batchRecords: 10,
    valueBytes: 200
  })
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-workers-'))
  const config = writeConfig(
    backupYaml(
      BACKUP_ID,
      topic,
      path,
      `backup:
  segment_max_bytes: 16384
  segment_max_interval_ms: 600000
  checkpoint_interval_secs: 600
  max_bytes_in_flight: 131072
  rate_limit_bytes_per_sec: 60000
  workers:
    enabled: true
    session_timeout_ms: 6000
    heartbeat_interval_ms: 500
    rebalance_timeout_ms: 20000
`
    ).replace(
      'source:\n',
      'source:\n  kafka_config:\n    fetch.max.bytes: 65536\n    max.partition.fetch.bytes: 16384\n'
    )
  )
  return { topic, path, config, storage: new FilesystemStorage({ path }) }
}

interface Worker {
  child: ChildProcess
  result: Promise<CliResult>
}

function startWorker(config: string): Worker {
  const child = startCli(['backup', '--config', config])
  return { child, result: finished(child) }
}

/** Which worker (by process id) holds each partition's claim in storage, undefined before the first. */
async function owners(storage: FilesystemStorage, topic: string): Promise<Array<number | undefined>> {
  return Promise.all(
    Array.from({ length: PARTITIONS }, async (_, partition) => {
      const owner = (await readPartitionIndex(storage, BACKUP_ID, topic, partition))?.owner
      return owner && Number(/-(\d+)-[0-9a-f]{8}$/.exec(owner.worker)?.[1])
    })
  )
}

/** The backup holds exactly the topic's records, each once, and validates. */
async function assertExact(storage: FilesystemStorage, path: string, topic: string): Promise<string> {
  const backedUp = await readBackedUpRecords(storage, BACKUP_ID, topic)
  const source = await readTopicRecords(cluster, topic)
  assert.equal(backedUp.length, source.length, 'as many records in the backup as in the topic')
  assert.deepEqual(backedUp, source, 'the backup holds each record of the topic once, in order')
  const validate = await runCli(['validate', '--path', path, '--backup-id', BACKUP_ID, '--deep'])
  assert.equal(validate.code, 0, `validate: ${validate.stdout}${validate.stderr}`)
  return validate.stdout + validate.stderr
}

test('three workers share a one-shot backup of 24 partitions: every record once, one manifest with three runs', async () => {
  const { topic, path, config, storage } = await setUp('workers-share')
  const workers = [0, 1, 2].map(() => startWorker(config))
  const pids = workers.map(w => w.child.pid!)
  await until(
    async () => new Set((await owners(storage, topic)).filter(o => o !== undefined)).size === 3,
    'all three workers holding partitions'
  )
  const results = await Promise.all(workers.map(w => w.result))
  for (const result of results) {
    assert.equal(result.code, 0, result.stderr)
  }
  await assertExact(storage, path, topic)
  const manifest = (await readManifest(storage, BACKUP_ID))!
  assert.equal(manifest.topics[0]?.partitionCount, PARTITIONS)
  assert.equal(manifest.runs.length, 3, 'one run entry per worker in the one manifest')
  assert.deepEqual(
    manifest.runs.map(r => r.status),
    ['complete', 'complete', 'complete']
  )
  assert.ok(
    pids.every(pid => manifest.runs.some(r => r.worker?.includes(`-${pid}-`))),
    'each run names its worker'
  )
  const describe = JSON.parse((await runCli(['describe', '--path', path, '--backup-id', BACKUP_ID, '--json'])).stdout)
  assert.equal(describe.records, PARTITIONS * 300, 'describe sees one backup with every record')
  const target = `${topic}-restored`
  const restore = await runCli([
    'restore',
    '--config',
    writeConfig(`mode: restore
backup_id: ${BACKUP_ID}
target:
  bootstrap_servers: ${bootstrapServers()}
restore:
  topic_mapping:
    ${topic}: ${target}
storage:
  backend: filesystem
  path: ${path}
`)
  ])
  assert.equal(restore.code, 0, restore.stderr)
  assert.deepEqual(
    contentOf(await readTopicRecords(cluster, target)),
    contentOf(await readTopicRecords(cluster, topic)),
    'the restore of the backup the workers shared equals the source topic'
  )
})

test('backup.rate_limit_bytes_per_sec caps what one process backs up per second', async () => {
  const topic = uniqueTopic('rate-limit')
  await createTopic(cluster, topic, 2)
  await produceBatches(producer, topic, { partitions: 2, recordsPerPartition: 500, batchRecords: 10, valueBytes: 200 })
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-rate-'))
  const rate = 50_000
  const chunk = 16_384
  const startedAt = Date.now()
  const result = await runCli([
    'backup',
    '--json',
    '--config',
    writeConfig(
      backupYaml('rate', topic, path, `backup:\n  rate_limit_bytes_per_sec: ${rate}\n`).replace(
        'source:\n',
        `source:\n  kafka_config:\n    fetch.max.bytes: ${chunk}\n    max.partition.fetch.bytes: ${chunk}\n`
      )
    )
  ])
  const elapsedMs = Date.now() - startedAt
  assert.equal(result.code, 0, result.stderr)
  const { bytes, records } = JSON.parse(result.stdout)
  assert.equal(records, 1000)
  // A token bucket with one second of burst, and the last fetched chunk taken on credit: the
  // rest of the bytes take (bytes - rate - chunk) / rate.
  const floorMs = ((bytes - rate - chunk) / rate) * 1000
  assert.ok(elapsedMs >= floorMs, `${bytes} bytes at ${rate} B/s took ${elapsedMs} ms, at least ${floorMs} expected`)
})

test('a worker killed with SIGKILL mid-backup: the others take its partitions over and the backup is exact', async () => {
  const { topic, path, config, storage } = await setUp('workers-kill')
  const workers = [0, 1, 2].map(() => startWorker(config))
  const victim = workers[1]!
  const victimPid = victim.child.pid!
  await until(async () => {
    const held = await owners(storage, topic)
    return new Set(held.filter(o => o !== undefined)).size === 3 && held.includes(victimPid)
  }, 'all three workers holding partitions')
  const killedAt = Date.now()
  victim.child.kill('SIGKILL')
  await until(
    async () => !(await owners(storage, topic)).includes(victimPid),
    "the killed worker's partitions claimed by the others",
    { timeoutMs: 120_000 }
  )
  const takeoverMs = Date.now() - killedAt
  const survivors = await Promise.all([workers[0]!.result, workers[2]!.result])
  for (const result of survivors) {
    assert.equal(result.code, 0, result.stderr)
  }
  assert.equal((await victim.result).signal, 'SIGKILL')
  await assertExact(storage, path, topic)
  const runs = (await readManifest(storage, BACKUP_ID))!.runs
  assert.equal(
    runs.find(r => r.worker?.includes(`-${victimPid}-`))?.status,
    'interrupted',
    'a worker ending its run marked the killed one, gone from the group, interrupted'
  )
  assert.equal(runs.filter(r => r.status === 'complete').length, 2)
  const status = await runCli(['status', '--path', path, '--backup-id', BACKUP_ID, '--json'])
  assert.deepEqual(JSON.parse(status.stdout).backup.workers, [], 'status shows no worker still running')
  console.log(`# takeover after SIGKILL: ${takeoverMs} ms (session timeout 6000 ms)`)
})

test('a worker paused past its session timeout is fenced: its partitions move, its late writes are refused, the backup is exact', async () => {
  const { topic, path, config, storage } = await setUp('workers-pause')
  const workers = [0, 1, 2].map(() => startWorker(config))
  const stale = workers[2]!
  const stalePid = stale.child.pid!
  // Paused mid-stream: all partitions claimed in one generation by the three, and the one to pause
  // has made a segment durable under its claim, so it has fetched data queued or in open segments
  // that it will try to write when it wakes up.
  await until(async () => {
    const indexes = await Promise.all(
      Array.from({ length: PARTITIONS }, (_, p) => readPartitionIndex(storage, BACKUP_ID, topic, p))
    )
    const claims = indexes.map(index => index?.owner)
    return (
      claims.every(owner => owner !== undefined) &&
      new Set(claims.map(owner => owner!.generation)).size === 1 &&
      new Set(claims.map(owner => owner!.worker)).size === 3 &&
      indexes.some(
        index =>
          index!.owner!.worker.includes(`-${stalePid}-`) &&
          index!.segments.some(s => s.key.endsWith(`-${index!.owner!.epoch}.seg`))
      )
    )
  }, 'the three workers holding all partitions in one generation, the one to pause writing')
  const held = (await owners(storage, topic)).flatMap((o, partition) => (o === stalePid ? [partition] : []))
  stale.child.kill('SIGSTOP')
  const stoppedAt = Date.now()
  try {
    await until(
      async () => !(await owners(storage, topic)).includes(stalePid),
      "the paused worker's partitions claimed by the others",
      { timeoutMs: 120_000 }
    )
  } finally {
    stale.child.kill('SIGCONT')
  }
  const takeoverMs = Date.now() - stoppedAt
  const results = await Promise.all(workers.map(w => w.result))
  for (const result of results) {
    assert.equal(result.code, 0, result.stderr)
  }
  const staleLog = results[2]!.stderr
  assert.match(staleLog, /KB_PARTITION_FENCED/, 'the paused worker was refused when it wrote after waking up')
  assert.match(staleLog, /moved to another worker/)
  // Its late segments are in storage but in no index: leftovers, named with its old epoch.
  const leftovers = held.flatMap(partition => {
    const dir = join(path, BACKUP_ID, 'topics', topic, String(partition))
    const index = JSON.parse(
      readFileSync(join(dir, 'index', readdirSync(join(dir, 'index')).sort().at(-1)!), 'utf8')
    ) as { segments: Array<{ key: string }> }
    return readdirSync(dir).filter(
      name => name.endsWith('.seg') && !index.segments.some(s => s.key.endsWith(`/${name}`))
    )
  })
  const validateOutput = await assertExact(storage, path, topic)
  if (leftovers.length > 0) {
    assert.match(validateOutput, /written by an earlier owner/, 'validate names the late segments as leftovers')
  }
  console.log(
    `# takeover after SIGSTOP: ${takeoverMs} ms (session timeout 6000 ms); ${leftovers.length} late segments left unindexed`
  )
})

test('continuous workers follow the topic between them until SIGTERM, then leave an exact backup', async () => {
  const topic = uniqueTopic('workers-continuous')
  const partitions = 6
  await createTopic(cluster, topic, partitions)
  await produceBatches(producer, topic, { partitions, recordsPerPartition: 100, batchRecords: 10 })
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-workers-'))
  const storage = new FilesystemStorage({ path })
  const config = writeConfig(
    backupYaml(
      BACKUP_ID,
      topic,
      path,
      `backup:
  continuous: true
  checkpoint_interval_secs: 1
  workers:
    enabled: true
    session_timeout_ms: 6000
    heartbeat_interval_ms: 500
`
    )
  )
  const checkpointsAt = async (offset: bigint) =>
    (
      await Promise.all(Array.from({ length: partitions }, (_, p) => readPartitionIndex(storage, BACKUP_ID, topic, p)))
    ).every(index => index !== undefined && BigInt(index.nextOffset) === offset)
  const workers = [0, 1].map(() => startWorker(config))
  await until(() => checkpointsAt(100n), 'the workers checkpointing every partition at its end')
  for (let partition = 0; partition < partitions; partition++) {
    await produceNumbered(producer, topic, partition, 100, 50)
  }
  await until(() => checkpointsAt(150n), 'the workers following what was produced after they started')
  const owners = new Set(
    (
      await Promise.all(Array.from({ length: partitions }, (_, p) => readPartitionIndex(storage, BACKUP_ID, topic, p)))
    ).map(index => index?.owner?.worker)
  )
  assert.equal(owners.size, 2, 'both workers hold partitions')
  for (const worker of workers) {
    worker.child.kill('SIGTERM')
  }
  for (const result of await Promise.all(workers.map(w => w.result))) {
    assert.equal(result.code, 0, result.stderr)
  }
  await assertExact(storage, path, topic)
  assert.deepEqual(
    (await readManifest(storage, BACKUP_ID))!.runs.map(r => r.status),
    ['stopped', 'stopped']
  )
})
