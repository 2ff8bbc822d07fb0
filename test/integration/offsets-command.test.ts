/**
 * `kafka-backup offsets plan|apply|rollback` against the real broker: group offsets captured at
 * backup time, translated through a topic mapping into a target that already held records (so
 * every target offset differs from its source offset), applied only to groups without active
 * members, and rolled back to the snapshot apply took.
 */
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { Consumer } from '@platformatic/kafka'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { runCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { readTopicRecords } from '../helpers/topic.ts'

const { cluster, producer } = clusterAndProducer()

async function commit(groupId: string, topic: string, offsets: Record<number, bigint>) {
  await cluster.admin.alterConsumerGroupOffsets({
    groupId,
    topics: [
      {
        name: topic,
        partitionOffsets: Object.entries(offsets).map(([p, offset]) => ({ partition: Number(p), offset }))
      }
    ]
  })
}

/** partition -> committed offset of the group on the topic (partitions without a commit are absent). */
async function committed(groupId: string, topic: string): Promise<Record<number, bigint>> {
  const [group] = await cluster.admin.listConsumerGroupOffsets({ groups: [groupId] })
  const result: Record<number, bigint> = {}
  for (const p of group?.topics.find(t => t.name === topic)?.partitions ?? []) {
    if (p.committedOffset >= 0n) result[p.partitionIndex] = p.committedOffset
  }
  return result
}

async function waitForGroupState(groupId: string, states: string[]) {
  for (let attempt = 0; ; attempt++) {
    const state = String((await cluster.admin.describeGroups({ groups: [groupId] })).get(groupId)?.state)
    if (states.includes(state)) return
    assert.ok(attempt < 200, `${groupId} did not reach ${states.join('/')} (state ${state})`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

test('offsets plan, apply and rollback after a restore: translated through topic mapping, active groups left alone', async () => {
  const topic = uniqueTopic('offsets-cmd')
  const target = `${topic}-restored`
  await createTopic(cluster, topic, 2)
  await produceNumbered(producer, topic, 0, 0, 30, { label: 'src-p0-' })
  await produceNumbered(producer, topic, 1, 0, 20, { label: 'src-p1-' })
  const idle = `${topic}-idle`
  const busy = `${topic}-busy`
  await commit(idle, topic, { 0: 12n, 1: 5n })
  await commit(busy, topic, { 0: 4n })
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))

  // The target already holds 7 and 3 records, so restored offsets are shifted by those.
  await createTopic(cluster, target, 2)
  await produceNumbered(producer, target, 0, 0, 7, { label: 'old-p0-' })
  await produceNumbered(producer, target, 1, 0, 3, { label: 'old-p1-' })
  await commit(idle, target, { 0: 2n })
  await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, allowNonEmptyTarget: true }))
  const config = writeConfig(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${bootstrapServers()}
storage:
  backend: filesystem
  path: ${storage.location}
`)

  const planJson = await runCli(['offsets', 'plan', '--config', config, '--format', 'json'])
  assert.equal(planJson.code, 0, planJson.stderr)
  const plan = JSON.parse(planJson.stdout)
  const rows = plan.rows.map((r: Record<string, unknown>) => [
    r.groupId,
    `${r.sourceTopic}/${r.sourcePartition}@${r.sourceOffset}`,
    `${r.targetTopic}/${r.targetPartition}@${r.targetOffset}`,
    r.currentOffset
  ])
  assert.deepEqual(
    rows.sort((a: string[], b: string[]) => `${a[0]}${a[1]}`.localeCompare(`${b[0]}${b[1]}`)),
    [
      [busy, `${topic}/0@4`, `${target}/0@11`, null],
      [idle, `${topic}/0@12`, `${target}/0@19`, '2'],
      [idle, `${topic}/1@5`, `${target}/1@8`, null]
    ]
  )
  const restored = await readTopicRecords(cluster, target)
  const valueAt = (partition: number, offset: bigint) =>
    restored.find(r => r.partition === partition && r.offset === offset)?.value
  assert.equal(valueAt(0, 19n), 'src-p0-12', 'the planned offset is the first record the group had not read')
  assert.equal(valueAt(1, 8n), 'src-p1-5')

  const csv = await runCli(['offsets', 'plan', '--config', config, '--format', 'csv'])
  assert.equal(csv.code, 0, csv.stderr)
  const lines = csv.stdout.trim().split('\n')
  assert.equal(
    lines[0],
    'group,source_topic,source_partition,source_offset,target_topic,target_partition,target_offset,current_offset'
  )
  assert.ok(lines.includes(`${idle},${topic},0,12,${target},0,19,2`), csv.stdout)
  const text = await runCli(['offsets', 'plan', '--config', config])
  assert.equal(text.code, 0, text.stderr)
  assert.match(text.stdout, new RegExp(`${busy}\\s+${topic}/0\\s+4\\s+${target}/0\\s+11\\s+-`))

  const snapshots = () => {
    const restores = join(storage.location, 'test-backup', 'restores')
    return readdirSync(restores).flatMap(id => {
      try {
        return readdirSync(join(restores, id, 'offset-snapshots'))
      } catch {
        return []
      }
    })
  }
  const consumer = new Consumer({
    clientId: 'kafka-backup-test',
    groupId: busy,
    bootstrapBrokers: [bootstrapServers()],
    autocommit: false
  })
  try {
    const stream = await consumer.consume({ topics: [target], mode: 'committed' })
    await waitForGroupState(busy, ['Stable', 'STABLE'])
    const refused = await runCli(['offsets', 'apply', '--config', config])
    assert.equal(refused.code, 1, refused.stderr)
    assert.match(refused.stderr, new RegExp(`KB_GROUP_ACTIVE: consumer group ${busy} is (Stable|STABLE) on the target`))
    assert.deepEqual(await committed(idle, target), { 0: 2n }, 'nothing was committed while a group was active')
    assert.deepEqual(snapshots(), [], 'no snapshot either: the refusal came first')

    const applied = await runCli(['offsets', 'apply', '--config', config, '--groups', idle, '--json'])
    assert.equal(applied.code, 0, applied.stderr)
    assert.deepEqual(JSON.parse(applied.stdout).committed, [idle])
    assert.deepEqual(await committed(idle, target), { 0: 19n, 1: 8n })
    assert.equal(snapshots().length, 1)

    const rolledBack = await runCli(['offsets', 'rollback', '--config', config, '--json'])
    assert.equal(rolledBack.code, 0, rolledBack.stderr)
    assert.deepEqual(JSON.parse(rolledBack.stdout).groups, [idle])
    assert.deepEqual(await committed(idle, target), { 0: 2n }, 'p0 back to 2, p1 without a commit as before')
    await stream.close()
  } finally {
    await consumer.close(true)
  }
  await waitForGroupState(busy, ['Empty', 'EMPTY', 'Dead', 'DEAD'])
  const all = await runCli(['offsets', 'apply', '--config', config, '--json'])
  assert.equal(all.code, 0, all.stderr)
  assert.deepEqual(JSON.parse(all.stdout).committed.sort(), [busy, idle].sort())
  assert.deepEqual(await committed(busy, target), { 0: 11n })
  assert.deepEqual(await committed(idle, target), { 0: 19n, 1: 8n })
})
