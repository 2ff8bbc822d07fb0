/**
 * Sharded restore (restore.workers, docs/architecture.md "Sharded restore"): several CLI
 * processes share one restore through a group on the real broker, a worker killed with SIGKILL
 * has its partitions taken over and resumed, the result is the source record for record, and
 * the consumer-group offsets are committed once.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { commitGroupOffsets, fetchGroupOffsets } from '../../src/kafka/admin.ts'
import { listDoneRecords, readPartitionDocument } from '../../src/restore/state.ts'
import type { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { BASE_TIMESTAMP } from '../helpers/cases.ts'
import { type CliResult, finished, startCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { readTopicRecords } from '../helpers/topic.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()
const PARTITIONS = 24

/**
 * A 24-partition topic with keys, null keys, headers and distinct timestamps, a consumer group
 * with offsets on every partition, backed up into fresh storage.
 */
async function backedUpTopic(label: string, perPartition: number, valueBytes: number) {
  const topic = uniqueTopic(label)
  await createTopic(cluster, topic, PARTITIONS)
  for (let partition = 0; partition < PARTITIONS; partition++) {
    for (let from = 0; from < perPartition; from += 100) {
      await producer.send({
        messages: Array.from({ length: Math.min(100, perPartition - from) }, (_, i) => {
          const n = from + i
          return {
            topic,
            partition,
            key: n % 7 === 0 ? undefined : Buffer.from(`k${partition}-${n}`),
            value: Buffer.from(`${partition}:${n}:${'x'.repeat(valueBytes)}`),
            headers: n % 3 === 0 ? new Map([[Buffer.from('trace'), Buffer.from(`t${n}`)]]) : undefined,
            timestamp: BASE_TIMESTAMP + BigInt(partition * 100_000 + n)
          }
        })
      })
    }
  }
  const group = `${topic}-app`
  await commitGroupOffsets(
    cluster,
    group,
    Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: BigInt(partition * 3) }))
  )
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  return { topic, group, storage }
}

function workerConfig(topic: string, target: string, group: string, storage: FilesystemStorage, restore = '') {
  return writeConfig(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${bootstrapServers()}
storage:
  backend: filesystem
  path: ${storage.location}
restore:
  topic_mapping:
    ${topic}: ${target}
  reset_consumer_offsets: true
  consumer_groups: [${group}]
  checkpoint_interval_secs: 0.5
  workers:
    enabled: true
    session_timeout_ms: 6000
    heartbeat_interval_ms: 500
    rebalance_timeout_ms: 10000
${restore}`)
}

/** The target is the source record for record: partitions, offsets, keys, values, headers, timestamps. */
async function assertExact(topic: string, target: string): Promise<void> {
  const [source, restored] = await Promise.all([readTopicRecords(cluster, topic), readTopicRecords(cluster, target)])
  assert.equal(restored.length, source.length, 'as many records as the source, none twice')
  assert.deepEqual(restored, source)
}

async function assertGroupTranslated(group: string, target: string): Promise<void> {
  const committed = await fetchGroupOffsets(cluster, group, [
    { name: target, partitions: Array.from({ length: PARTITIONS }, (_, p) => p) }
  ])
  assert.deepEqual(
    committed.map(o => [o.partition, o.offset]).sort((a, b) => Number(a[0]) - Number(b[0])),
    Array.from({ length: PARTITIONS }, (_, partition) => [partition, BigInt(partition * 3)])
  )
}

/** Each worker's exit and summary: exit 0 and the whole restore complete, not only its share. */
function assertCompleteSummaries(results: CliResult[], records: number): Array<{ partitions: string[] }> {
  return results.map(result => {
    assert.equal(result.code, 0, result.stderr)
    const summary = JSON.parse(result.stdout)
    assert.equal(summary.status, 'complete')
    assert.equal(summary.records, records)
    assert.equal(summary.partitions.length, PARTITIONS)
    assert.equal(summary.consumerGroups.length, 1)
    return summary.worker
  })
}

/** The merged restore state's revisions: one per finished restore, written by one worker. */
function mergedRevisions(storage: FilesystemStorage): string[] {
  const restores = join(storage.location, 'test-backup', 'restores')
  const [restoreId] = readdirSync(restores)
  return readdirSync(join(restores, restoreId!, 'restore'))
}

/**
 * A worker process whose log names its member id, and the partitions it restored part of: what
 * a test needs to stop or kill it mid-restore.
 */
function watchedWorker(config: string, storage: FilesystemStorage, topic: string) {
  const child = startCli(['restore', '--config', config, '--json'])
  const result = finished(child)
  let log = ''
  child.stderr?.on('data', chunk => {
    log += chunk
  })
  const restores = join(storage.location, 'test-backup', 'restores')
  const restoreId = () => (existsSync(restores) ? readdirSync(restores)[0] : undefined)
  /** A partition the worker restored part of, not all, in generation `generation` or later. */
  const partWay = async (generation: number) => {
    const memberId = /"memberId":"([^"]+)"/.exec(log)?.[1]
    const id = memberId && restoreId()
    for (let p = 0; id && p < PARTITIONS; p++) {
      const state = await readPartitionDocument(storage, 'test-backup', id, topic, p)
      if (
        state?.owner.memberId === memberId &&
        state.owner.generation >= generation &&
        state.partition.records > 0 &&
        !state.partition.done
      ) {
        return `${topic}/${p}`
      }
    }
    return undefined
  }
  return { child, result, restoreId, partWay }
}

test('three workers restore a 24-partition backup exactly, committing the group offsets once', async () => {
  const { topic, group, storage } = await backedUpTopic('workers-restore', 200, 20)
  const target = `${topic}-restored`
  const config = workerConfig(topic, target, group, storage)
  const results = await Promise.all([1, 2, 3].map(() => finished(startCli(['restore', '--config', config, '--json']))))
  const shares = assertCompleteSummaries(results, PARTITIONS * 200)
  // Every partition restored by exactly one of them.
  assert.deepEqual(
    shares.flatMap(s => s.partitions).sort(),
    Array.from({ length: PARTITIONS }, (_, p) => `${topic}/${p}`).sort()
  )
  await assertExact(topic, target)
  await assertGroupTranslated(group, target)
  assert.deepEqual(mergedRevisions(storage), ['000000000001.json'])

  // Consumers moved on after the restore; a worker started again finds the restore complete and
  // leaves their offsets alone.
  await commitGroupOffsets(cluster, group, [{ topic: target, partition: 0, offset: 150n }])
  const again = await finished(startCli(['restore', '--config', config, '--json']))
  assertCompleteSummaries([again], PARTITIONS * 200)
  const [first] = await fetchGroupOffsets(cluster, group, [{ name: target, partitions: [0] }])
  assert.equal(first?.offset, 150n, 'the offsets were not committed a second time')
  assert.deepEqual(mergedRevisions(storage), ['000000000001.json'])
})

test('a worker gives its partitions up promptly when others join, and one killed with SIGKILL mid-restore is taken over and resumes: the result is exact', async () => {
  const perPartition = 400
  const { topic, group, storage } = await backedUpTopic('workers-kill', perPartition, 1000)
  const target = `${topic}-restored`
  // Each worker restores about 1 MB/s, so the 10 MB take several seconds.
  const config = workerConfig(topic, target, group, storage, '  rate_limit_bytes_per_sec: 1048576\n')
  const victim = watchedWorker(config, storage, topic)
  const { partWay, restoreId } = victim
  // Alone at first, it takes every partition; the two that join make it give them up, and it
  // must stop sending before the coordinator hands them on.
  await until(async () => (await partWay(1)) !== undefined, 'the first worker to restore part of a partition')
  const others = [1, 2].map(() => finished(startCli(['restore', '--config', config, '--json'])))
  let started: string | undefined
  await until(async () => {
    started = await partWay(2)
    return started !== undefined
  }, 'the first worker to restore part of a partition of its new share')
  victim.child.kill('SIGKILL')
  assert.equal((await victim.result).signal, 'SIGKILL')
  const id = restoreId()!
  assert.equal((await listDoneRecords(storage, 'test-backup', id)).has(started!), false)

  const restarted = finished(startCli(['restore', '--config', config, '--json']))
  const results = await Promise.all([...others, restarted])
  const shares = assertCompleteSummaries(results, PARTITIONS * perPartition)
  // The part-way partition was finished by another worker or the restarted one, from where it stood.
  assert.ok(shares.some(s => s.partitions.includes(started!)))
  const done = (await listDoneRecords(storage, 'test-backup', id)).get(started!)!
  const record = JSON.parse(readFileSync(join(storage.location, done.key), 'utf8'))
  assert.equal(record.partition.sourceNextOffset, String(perPartition))
  await assertExact(topic, target)
  await assertGroupTranslated(group, target)
  assert.deepEqual(mergedRevisions(storage), ['000000000001.json'])
})

test('a record written into a restored partition by someone else during a sharded restore fails it before any group offset is committed', async () => {
  const { topic, group, storage } = await backedUpTopic('workers-foreign', 200, 20)
  const target = `${topic}-restored`
  // Slow enough (about 6 s) that the other write lands before the end.
  const config = workerConfig(topic, target, group, storage, '  rate_limit_bytes_per_sec: 51200\n')
  const worker = finished(startCli(['restore', '--config', config, '--json']))
  const restores = join(storage.location, 'test-backup', 'restores')
  let done: string | undefined
  await until(async () => {
    const id = existsSync(restores) ? readdirSync(restores)[0] : undefined
    done = id && [...(await listDoneRecords(storage, 'test-backup', id)).keys()][0]
    return done !== undefined
  }, 'a partition to be restored')
  const partition = Number(done!.split('/').at(-1))
  await producer.send({ messages: [{ topic: target, partition, value: Buffer.from('not from the backup') }] })
  const result = await worker
  assert.equal(result.code, 1, result.stdout)
  assert.match(
    result.stderr,
    new RegExp(
      `KB_TARGET_CHANGED: target partition ${target}/${partition} ends at 201, but the restore of ${topic}/${partition} ended it at 200`
    )
  )
  assert.deepEqual(
    await fetchGroupOffsets(cluster, group, [
      { name: target, partitions: Array.from({ length: PARTITIONS }, (_, p) => p) }
    ]),
    []
  )
  assert.equal(existsSync(join(restores, readdirSync(restores)[0]!, 'restore')), false, 'no merged state')
})

test('a worker paused past its session timeout sends nothing when it wakes: the others finished its partitions and the result is exact', async () => {
  const perPartition = 300
  const { topic, group, storage } = await backedUpTopic('workers-pause', perPartition, 1000)
  const target = `${topic}-restored`
  // Rate-limited, so that a worker is mostly waiting to send its next request when it is paused.
  const config = workerConfig(topic, target, group, storage, '  rate_limit_bytes_per_sec: 1048576\n')
  const sleeper = watchedWorker(config, storage, topic)
  const other = finished(startCli(['restore', '--config', config, '--json']))
  // Paused once it restored part of a partition of its share beside the other worker. Before
  // the lease check it woke up sending what it had queued, after the other worker had restored
  // those partitions and reported the restore complete: every record of them twice.
  await until(
    async () => (await sleeper.partWay(2)) !== undefined,
    'the worker to be paused to restore part of a partition after the other joined'
  )
  sleeper.child.kill('SIGSTOP')
  assertCompleteSummaries([await other], PARTITIONS * perPartition)
  sleeper.child.kill('SIGCONT')
  const woken = await sleeper.result
  assertCompleteSummaries([woken], PARTITIONS * perPartition)
  await assertExact(topic, target)
  await assertGroupTranslated(group, target)
})
