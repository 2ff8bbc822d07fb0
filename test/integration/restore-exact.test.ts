/**
 * A restore never reports success with a result that differs from the backup: killed at any
 * moment it resumes exact, saved state is checked against the target before it is trusted,
 * timestamps survive LogAppendTime topics, a read-only backup location is refused before
 * anything is written (or the state lives elsewhere), and a dry run refuses what the real run
 * refuses. Against the real broker.
 */
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { ConfigResourceTypes } from '@platformatic/kafka'
import { isBackupError } from '../../src/errors.ts'
import { commitGroupOffsets, describeTopicConfigs, listOffsets, partitionKey } from '../../src/kafka/admin.ts'
import { restoreStateBase } from '../../src/restore/state.ts'
import { backupOptions, newestRevisionFile, readBackedUpRecords, runBackup, tempStorage } from '../helpers/backup.ts'
import { BASE_TIMESTAMP } from '../helpers/cases.ts'
import { backupYaml, finished, restoreYaml, runCli, startCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer, produceBatches, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'
import { runUnprivileged } from '../helpers/unprivileged.ts'

const { cluster, producer } = clusterAndProducer()

/** A topic with `partitions` x `perPartition` records, backed up into fresh storage. */
async function backedUpTopic(label: string, partitions: number, perPartition: number, valueBytes = 0) {
  const topic = uniqueTopic(label)
  await createTopic(cluster, topic, partitions)
  await produceBatches(producer, topic, {
    partitions,
    recordsPerPartition: perPartition,
    batchRecords: 500,
    valueBytes
  })
  const storage = tempStorage()
  await runBackup(backupOptions(cluster, storage, [topic]))
  return { topic, storage }
}

async function endOffset(topic: string, partition: number): Promise<bigint> {
  const offsets = await listOffsets(cluster, [{ topic, partition }], 'latest')
  return offsets.get(partitionKey(topic, partition)) ?? 0n
}

async function deleteTopic(topic: string): Promise<void> {
  await cluster.admin.deleteTopics({ topics: [topic] })
  for (let attempt = 0; attempt < 300; attempt++) {
    if (!(await cluster.admin.listTopics({ includeInternals: false })).includes(topic)) {
      return
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`topic ${topic} still exists 30 s after its deletion`)
}

/** Files readable by everyone and writable by nobody, as on a read-only mount. */
function makeReadOnly(path: string): void {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name)
    if (entry.isDirectory()) {
      makeReadOnly(child)
    } else {
      chmodSync(child, 0o444)
    }
  }
  chmodSync(path, 0o555)
}

const sourceUrl = (path: string) => JSON.stringify(pathToFileURL(resolve(import.meta.dirname, '../..', path)).href)

/**
 * Runs a restore (library API) in a process subject to file permissions (see unprivileged.ts)
 * and returns its summary or its error's code and message.
 */
function restoreUnprivileged(options: {
  backupPath: string
  statePath?: string
  topic: string
  target: string
  dryRun?: boolean
}): { summary?: { status: string; restoreId: string; records: number }; error?: { code: string; message: string } } {
  const { stdout } = runUnprivileged(`
    import { RestoreEngine } from ${sourceUrl('src/restore/engine.ts')}
    import { FilesystemStorage } from ${sourceUrl('src/storage/filesystem.ts')}
    import { testCluster } from ${sourceUrl('test/helpers/kafka.ts')}
    import { restoreOptions } from ${sourceUrl('test/helpers/restore.ts')}
    const cluster = testCluster()
    const statePath = ${JSON.stringify(options.statePath ?? null)}
    try {
      const summary = await new RestoreEngine(
        restoreOptions(cluster, new FilesystemStorage({ path: ${JSON.stringify(options.backupPath)} }), {
          topicMapping: { ${JSON.stringify(options.topic)}: ${JSON.stringify(options.target)} },
          stateStorage: statePath === null ? undefined : new FilesystemStorage({ path: statePath }),
          dryRun: ${options.dryRun === true}
        })
      ).run()
      console.log(JSON.stringify({ summary }))
    } catch (error) {
      console.log(JSON.stringify({ error: { code: error.code, message: error.message } }))
    } finally {
      await cluster.close()
    }
  `)
  return JSON.parse(stdout.trim().split('\n').at(-1)!)
}

describe('issue 11: a restore never reports success with a wrong result', () => {
  test('a restore killed with SIGKILL right after its first records reach the target resumes exact with the same config', async () => {
    const { topic, storage } = await backedUpTopic('exact-kill-early', 2, 3000, 200)
    const target = `${topic}-restored`
    // The rate limit keeps the run going long after the first records land; it is not part of
    // the restore's identity, so the rerun without it resumes the same restore.
    const child = startCli([
      'restore',
      '--config',
      writeConfig(restoreYaml(topic, target, storage.location, '  rate_limit_bytes_per_sec: 65536\n'))
    ])
    const result = finished(child)
    const landed = async () => {
      try {
        return (await endOffset(target, 0)) + (await endOffset(target, 1)) > 0n
      } catch {
        return false
      }
    }
    const deadline = Date.now() + 60_000
    while (!(await landed()) && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    child.kill('SIGKILL')
    assert.equal((await result).signal, 'SIGKILL')
    const written = (await endOffset(target, 0)) + (await endOffset(target, 1))
    assert.ok(written > 0n && written < 6000n, `killed after ${written} of 6000 records`)

    const rerun = await runCli([
      'restore',
      '--json',
      '--config',
      writeConfig(restoreYaml(topic, target, storage.location))
    ])
    assert.equal(rerun.code, 0, rerun.stderr)
    assert.equal(JSON.parse(rerun.stdout).status, 'complete')
    const restored = await readTopicRecords(cluster, target)
    assert.equal(restored.length, 6000, 'no record lost or duplicated')
    assert.deepEqual(contentOf(restored), contentOf(await readTopicRecords(cluster, topic)))
  })

  test('a rerun after the restored topic was deleted restores it again instead of reporting the old run complete', async () => {
    const { topic, storage } = await backedUpTopic('exact-stale-state', 2, 700)
    const target = `${topic}-restored`
    const options = restoreOptions(cluster, storage, { topicMapping: { [topic]: target } })
    const first = await runRestore(options)
    assert.equal(first.records, 1400)
    const source = contentOf(await readTopicRecords(cluster, topic))

    await deleteTopic(target)
    const warnings: string[] = []
    const again = await runRestore({ ...options, onWarning: message => warnings.push(message) })
    assert.equal(again.restoreId, first.restoreId, 'the same restore, resumed from its state')
    assert.equal(again.status, 'complete')
    assert.deepEqual(again.topicsCreated, [target])
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), source)
    assert.equal(again.records, 1400)
    assert.ok(
      warnings.some(w => w.includes(target) && w.includes('no longer exists')),
      warnings.join('\n')
    )

    // Records it wrote deleted from the target (DeleteRecords, or retention): refused, with the way out.
    await cluster.admin.deleteRecords({ topics: [{ name: target, partitions: [{ partition: 1, offset: 100n }] }] })
    for (const dryRun of [true, false]) {
      await assert.rejects(runRestore({ ...options, dryRun }), error => {
        assert.ok(isBackupError(error, 'KB_TARGET_CHANGED'), String(error))
        assert.match(error.message, new RegExp(`${target}/1 starts at offset 100.*delete topic ${target}`))
        return true
      })
    }

    // Deleted and created again by someone else, empty: same outcome.
    await deleteTopic(target)
    await createTopic(cluster, target, 2)
    await runRestore(options)
    assert.deepEqual(contentOf(await readTopicRecords(cluster, target)), source)

    // Deleted and created again by someone else, with other records in it: refused, not mixed.
    await deleteTopic(target)
    await createTopic(cluster, target, 2)
    await produceNumbered(producer, target, 1, 0, 3)
    await assert.rejects(runRestore(options), error => {
      assert.ok(isBackupError(error, 'KB_TARGET_NOT_EMPTY'), String(error))
      assert.match(error.message, new RegExp(`${target}/1`))
      return true
    })
    assert.equal((await readTopicRecords(cluster, target)).length, 3, 'nothing was written')
  })

  test('a rerun after the backup grew restores the new records after the old ones, and refuses when others wrote to the target since', async () => {
    const { topic, storage } = await backedUpTopic('exact-grown-backup', 2, 300)
    const target = `${topic}-restored`
    const options = restoreOptions(cluster, storage, { topicMapping: { [topic]: target } })
    assert.equal((await runRestore(options)).records, 600)
    await produceNumbered(producer, topic, 0, 300, 50)
    await produceNumbered(producer, topic, 1, 300, 20)
    await runBackup(backupOptions(cluster, storage, [topic]))
    const rerun = await runRestore(options)
    assert.equal(rerun.status, 'complete')
    assert.equal(rerun.records, 670)
    assert.deepEqual(
      contentOf(await readTopicRecords(cluster, target)),
      contentOf(await readTopicRecords(cluster, topic))
    )

    await produceNumbered(producer, target, 1, 0, 1)
    await produceNumbered(producer, topic, 1, 320, 5)
    await runBackup(backupOptions(cluster, storage, [topic]))
    for (const dryRun of [true, false]) {
      await assert.rejects(runRestore({ ...options, dryRun }), error => {
        assert.ok(isBackupError(error, 'KB_TARGET_CHANGED'), String(error))
        assert.match(error.message, new RegExp(`${target}/1 received 1 other records`))
        return true
      })
    }
    assert.equal(await endOffset(target, 1), 321n, 'nothing was written')
  })

  test('restore.consumer_groups naming a group the backup did not capture is refused before anything is written', async () => {
    const topic = uniqueTopic('exact-group-names')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 20)
    await commitGroupOffsets(cluster, `${topic}-billing`, [{ topic, partition: 0, offset: 10n }])
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const target = `${topic}-restored`
    for (const dryRun of [true, false]) {
      await assert.rejects(
        runRestore(
          restoreOptions(cluster, storage, {
            topicMapping: { [topic]: target },
            resetConsumerOffsets: true,
            consumerGroups: [`${topic}-billing`, `${topic}-bliling`],
            dryRun
          })
        ),
        error => {
          assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
          assert.equal(error.path, 'restore.consumer_groups')
          assert.match(error.message, new RegExp(`names ${topic}-bliling, which matches none .*\\(${topic}-billing\\)`))
          return true
        }
      )
    }
    assert.ok(!(await cluster.admin.listTopics({})).includes(target), 'nothing was written')
  })

  test('LogAppendTime: a created target keeps every backed-up timestamp, and an existing LogAppendTime target is refused unless allowed', async () => {
    const topic = uniqueTopic('exact-log-append-time')
    await createTopic(cluster, topic, 2, { 'message.timestamp.type': 'LogAppendTime' })
    for (let from = 0; from < 500; from += 100) {
      await produceNumbered(producer, topic, 0, from, 100)
      await produceNumbered(producer, topic, 1, from, 100)
    }
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const backedUp = await readBackedUpRecords(storage, 'test-backup', topic)
    assert.equal(backedUp.length, 1000)
    // The broker's append times, not the producer's, are what the backup holds.
    assert.ok(backedUp.every(r => r.timestamp > BASE_TIMESTAMP + 1000n))

    const target = `${topic}-restored`
    const options = restoreOptions(cluster, storage, { topicMapping: { [topic]: target } })
    const summary = await runRestore(options)
    const restored = await readTopicRecords(cluster, target)
    assert.deepEqual(contentOf(restored), contentOf(backedUp), 'every timestamp equal')
    assert.equal((await describeTopicConfigs(cluster, [target])).get(target)?.['message.timestamp.type'], 'CreateTime')
    assert.ok(
      summary.notes.some(n => n.includes(target) && n.includes('message.timestamp.type=CreateTime')),
      summary.notes.join('\n')
    )
    const otherTarget = `${topic}-planned`
    const plan = await runRestore({ ...options, topicMapping: { [topic]: otherTarget }, dryRun: true })
    assert.deepEqual(
      plan.notes,
      summary.notes.map(n => n.replace(target, otherTarget)),
      'the plan says so too'
    )

    const existing = uniqueTopic('exact-log-append-time-target')
    await createTopic(cluster, existing, 2, { 'message.timestamp.type': 'LogAppendTime' })
    const intoExisting = restoreOptions(cluster, storage, { topicMapping: { [topic]: existing } })
    for (const dryRun of [true, false]) {
      await assert.rejects(runRestore({ ...intoExisting, dryRun }), error => {
        assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
        assert.match(error.message, new RegExp(`${existing} has message.timestamp.type=LogAppendTime`))
        assert.match(error.message, /restore\.allow_log_append_time_target/)
        return true
      })
    }
    assert.equal((await readTopicRecords(cluster, existing)).length, 0, 'nothing was written')
    const allowed = await runRestore({ ...intoExisting, allowLogAppendTimeTarget: true })
    assert.equal(allowed.records, 1000)
    assert.ok(allowed.notes.some(n => n.includes(existing) && n.includes('time of the restore')))
  })

  test('a backed-up message.timestamp.before.max.ms that would refuse old records is left off created topics and refused on existing ones', async () => {
    const topic = uniqueTopic('exact-before-max')
    await createTopic(cluster, topic, 1)
    const threeDaysAgo = BigInt(Date.now()) - 3n * 86_400_000n
    await producer.send({
      messages: Array.from({ length: 50 }, (_, i) => ({
        topic,
        partition: 0,
        key: Buffer.from(`k${i}`),
        value: Buffer.from(`v${i}`),
        timestamp: threeDaysAgo + BigInt(i)
      }))
    })
    // Set after the old records were written, as an operator tightening a topic would.
    await cluster.admin.alterConfigs({
      resources: [
        {
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: topic,
          configs: [{ name: 'message.timestamp.before.max.ms', value: '86400000' }]
        }
      ]
    })
    const storage = tempStorage()
    await runBackup(backupOptions(cluster, storage, [topic]))
    const target = `${topic}-restored`
    const summary = await runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target } }))
    assert.equal(summary.records, 50)
    assert.deepEqual(
      contentOf(await readTopicRecords(cluster, target)),
      contentOf(await readTopicRecords(cluster, topic))
    )
    assert.ok(
      summary.notes.some(n => n.includes(target) && n.includes('message.timestamp.before.max.ms=86400000')),
      summary.notes.join('\n')
    )
    assert.equal(
      (await describeTopicConfigs(cluster, [target])).get(target)?.['message.timestamp.before.max.ms'],
      undefined
    )

    const existing = uniqueTopic('exact-before-max-target')
    await createTopic(cluster, existing, 1, { 'message.timestamp.before.max.ms': '86400000' })
    for (const dryRun of [true, false]) {
      await assert.rejects(
        runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: existing }, dryRun })),
        error => {
          assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
          assert.match(error.message, new RegExp(`${existing} has message.timestamp.before.max.ms=86400000`))
          return true
        }
      )
    }
    assert.equal(await endOffset(existing, 0), 0n, 'nothing was written')
  })

  test('a read-only backup location is refused before anything is written, also by a dry run; with state_storage elsewhere the restore completes and resumes', async () => {
    const { topic, storage } = await backedUpTopic('exact-read-only', 2, 400)
    makeReadOnly(storage.location)
    const target = `${topic}-restored`
    const run = (extra: { statePath?: string; dryRun?: boolean } = {}) =>
      restoreUnprivileged({ backupPath: storage.location, topic, target, ...extra })
    for (const dryRun of [true, false]) {
      const { error } = run({ dryRun })
      assert.equal(error?.code, 'KB_STORAGE_ACCESS_DENIED', `dryRun=${dryRun}: ${JSON.stringify(error)}`)
      assert.match(error.message, /nothing was restored.*set restore\.state_storage to a writable location/)
    }
    assert.ok(!(await cluster.admin.listTopics({})).includes(target), 'no topic created, no record written')

    const statePath = mkdtempSync(join(tmpdir(), 'kafka-backup-state-'))
    chmodSync(statePath, 0o777)
    const { summary } = run({ statePath })
    assert.equal(summary?.status, 'complete')
    assert.deepEqual(
      contentOf(await readTopicRecords(cluster, target)),
      contentOf(await readTopicRecords(cluster, topic))
    )
    assert.ok(newestRevisionFile(join(statePath, restoreStateBase('test-backup', summary.restoreId))))
    const rerun = run({ statePath }).summary
    assert.equal(rerun?.restoreId, summary.restoreId)
    assert.equal((await readTopicRecords(cluster, target)).length, 800, 'the rerun found its state and wrote nothing')

    // The CLI takes the state location from the config, and offset-map reads it there.
    const cliTarget = `${topic}-cli`
    const cliStatePath = tempStorage().location
    const config = writeConfig(
      restoreYaml(
        topic,
        cliTarget,
        storage.location,
        `  state_storage:\n    backend: filesystem\n    path: ${cliStatePath}\n`
      )
    )
    const cli = await runCli(['restore', '--json', '--config', config])
    assert.equal(cli.code, 0, cli.stderr)
    const { restoreId } = JSON.parse(cli.stdout)
    assert.ok(newestRevisionFile(join(cliStatePath, restoreStateBase('test-backup', restoreId))))
    assert.ok(!readdirSync(join(storage.location, 'test-backup')).includes('restores'), 'nothing written to the backup')
    const offsetMap = await runCli(['offset-map', '--json', '--config', config])
    assert.equal(offsetMap.code, 0, offsetMap.stderr)
    assert.deepEqual(
      JSON.parse(offsetMap.stdout).map((r: { restoreId: string }) => r.restoreId),
      [restoreId]
    )
  })

  test('a dry run refuses what the real run refuses: too few target partitions, records already in the target', async () => {
    const { topic, storage } = await backedUpTopic('exact-dry-run', 3, 10)
    const narrow = uniqueTopic('exact-dry-run-narrow')
    await createTopic(cluster, narrow, 2)
    const full = uniqueTopic('exact-dry-run-full')
    await createTopic(cluster, full, 3)
    await produceNumbered(producer, full, 2, 0, 1)
    for (const [target, code, pattern] of [
      [narrow, 'KB_CONFIG_INVALID', `${narrow} has 2 partitions`],
      [full, 'KB_TARGET_NOT_EMPTY', `${full}/2 already holds 1 records`]
    ] as const) {
      for (const dryRun of [true, false]) {
        await assert.rejects(
          runRestore(restoreOptions(cluster, storage, { topicMapping: { [topic]: target }, dryRun })),
          error => {
            assert.ok(isBackupError(error, code), `${target} dryRun=${dryRun}: ${error}`)
            assert.ok((error as Error).message.includes(pattern), (error as Error).message)
            return true
          }
        )
      }
    }
    const dryRun = await runCli([
      'restore',
      '--dry-run',
      '--config',
      writeConfig(restoreYaml(topic, narrow, storage.location))
    ])
    assert.equal(dryRun.code, 2, dryRun.stderr)
    assert.match(dryRun.stderr, /^kafka-backup: KB_CONFIG_INVALID: target topic .* has 2 partitions/)
  })

  test('mappings and partition lists that name a topic or partition the backup does not hold are refused, not ignored', async () => {
    const { topic, storage } = await backedUpTopic('exact-mapping-names', 2, 10)
    const cases: Array<[Partial<Parameters<typeof restoreOptions>[2]>, string]> = [
      [{ partitionMapping: { 'no-such-topic': { '0': 1 } } }, 'restore.partition_mapping.no-such-topic'],
      [{ partitionMapping: { [topic]: { '5': 1 } } }, `restore.partition_mapping.${topic}.5`],
      [{ sourcePartitions: { 'no-such-topic': [0] } }, 'restore.source_partitions.no-such-topic'],
      [{ topicMapping: { 'no-such-topic': 'x' } }, 'restore.topic_mapping.no-such-topic']
    ]
    for (const [overrides, path] of cases) {
      for (const dryRun of [true, false]) {
        await assert.rejects(runRestore(restoreOptions(cluster, storage, { ...overrides, dryRun })), error => {
          assert.ok(isBackupError(error, 'KB_CONFIG_INVALID'), String(error))
          assert.equal(error.path, path)
          assert.ok(error.message.startsWith(path), error.message)
          return true
        })
      }
    }
    assert.ok(!(await cluster.admin.listTopics({})).includes('x'))
  })

  test('an OSO-style backup config with only segment_max_bytes: 65536 runs, its frames sized to the segments', async () => {
    const topic = uniqueTopic('exact-oso-config')
    await createTopic(cluster, topic, 1)
    await produceNumbered(producer, topic, 0, 0, 500, { valueBytes: 300 })
    const path = tempStorage().location
    const config = writeConfig(backupYaml('oso', topic, path, 'backup:\n  segment_max_bytes: 65536\n'))
    const backup = await runCli(['backup', '--config', config])
    assert.equal(backup.code, 0, backup.stderr)
    const validate = await runCli(['validate', '--path', path, '--backup-id', 'oso', '--deep', '--json'])
    assert.equal(validate.code, 0, validate.stdout)
    const described = JSON.parse((await runCli(['describe', '--path', path, '--backup-id', 'oso', '--json'])).stdout)
    assert.equal(described.records, 500)
  })
})
