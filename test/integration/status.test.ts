/**
 * `kafka-backup status` against a real running job: a continuous backup's checkpoints per
 * partition as they advance (--json, --watch until the job ends), then a finished restore's
 * progress per partition.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { JobStatus } from '../../src/status/job-status.ts'
import { tempStorage } from '../helpers/backup.ts'
import { finished, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'

const { cluster, producer } = clusterAndProducer()

test('status shows a running backup per partition from its checkpoints, --watch follows it to its end, then a restore', async () => {
  const topic = uniqueTopic('status')
  await createTopic(cluster, topic, 2)
  await produceNumbered(producer, topic, 0, 0, 30)
  await produceNumbered(producer, topic, 1, 0, 10)
  const storage = tempStorage()
  const config = writeConfig(`mode: backup
backup_id: status-test
source:
  bootstrap_servers: ${bootstrapServers()}
  topics:
    include: [${topic}]
  kafka_config:
    fetch.max.wait.ms: 100
storage:
  backend: filesystem
  path: ${storage.location}
backup:
  continuous: true
  checkpoint_interval_secs: 0.2
  segment_max_interval_ms: 200
`)
  const backup = startCli(['backup', '--config', config])
  const backupDone = finished(backup)
  const status = async (): Promise<JobStatus | undefined> => {
    const result = await runCli(['status', '--config', config, '--json'])
    return result.code === 0 ? (JSON.parse(result.stdout) as JobStatus) : undefined
  }
  const checkpoints = (s: JobStatus | undefined) =>
    Object.fromEntries((s?.backup.partitions ?? []).map(p => [p.partition, p.checkpointOffset]))
  let seen: JobStatus | undefined
  for (let attempt = 0; attempt < 300; attempt++) {
    seen = await status()
    if (checkpoints(seen)['0'] === '30' && checkpoints(seen)['1'] === '10') break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  assert.deepEqual(checkpoints(seen), { 0: '30', 1: '10' }, 'both partitions checkpointed to their end')
  assert.equal(seen?.backup.run?.status, 'running')
  assert.equal(seen?.backup.records, 40)

  const watch = startCli(['status', '--config', config, '--json', '--watch', '0.2'])
  const watched = finished(watch)
  // The watcher's first line must show the backup running: wait for it before the backup moves
  // on (a segment now closes as soon as its interval is up, sooner than the watcher starts).
  await new Promise<void>(resolve =>
    watch.stdout!.on('data', (chunk: string) => {
      if (chunk.includes('\n')) resolve()
    })
  )
  await produceNumbered(producer, topic, 1, 0, 5)
  for (let attempt = 0; attempt < 300 && checkpoints(await status())['1'] !== '15'; attempt++) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  backup.kill('SIGTERM')
  assert.equal((await backupDone).code, 0)
  const result = await watched
  assert.equal(result.code, 0, result.stderr)
  const lines = result.stdout
    .trim()
    .split('\n')
    .map(line => JSON.parse(line) as JobStatus)
  assert.ok(lines.length >= 2, `--watch printed ${lines.length} status lines`)
  assert.equal(lines[0]?.backup.run?.status, 'running')
  assert.notEqual(lines.at(-1)?.backup.run?.status, 'running', '--watch ended with the backup')
  assert.deepEqual(checkpoints(lines.at(-1)), { 0: '30', 1: '15' })

  await runRestore(
    restoreOptions(cluster, storage, { backupId: 'status-test', topicMapping: { [topic]: `${topic}-r` } })
  )
  const text = await runCli(['status', '--path', storage.location, '--backup-id', 'status-test'])
  assert.equal(text.code, 0, text.stderr)
  assert.match(text.stdout, /restore \S+: complete/)
  assert.match(text.stdout, new RegExp(`${topic}/1\\s+${topic}-r/1\\s+15\\s+15\\s+15\\s+15\\s+yes`))
  const json = JSON.parse(
    (await runCli(['status', '--path', storage.location, '--backup-id', 'status-test', '--json'])).stdout
  ) as JobStatus
  assert.equal(json.restores.length, 1)
  assert.equal(json.restores[0]?.records, 45)
  assert.ok(json.restores[0]?.partitions.every(p => p.done && p.percent === 100))
})
