/**
 * ACLs, client quotas and SCRAM users carried by a backup to a second, empty cluster. Both
 * clusters are real brokers with StandardAuthorizer on (scripts/broker.ts, `authorizer`); the
 * source is set up with Kafka's own tools (kafka-acls, kafka-configs), so that what the backup
 * captures is checked against the broker and not against our own writer; the target is read
 * with @platformatic/kafka's admin and a consumer that logs in as a restored SCRAM user.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, test } from 'node:test'
import { Consumer, Producer } from '@platformatic/kafka'
import { type RunningBroker, runKafkaTool, startBroker, stopBroker } from '../../scripts/broker.ts'
import { clusterMetadataBase, readClusterMetadata } from '../../src/catalog/cluster-metadata.ts'
import type { ClusterMetadataKind } from '../../src/config/schema-parts.ts'
import { KafkaCluster } from '../../src/kafka/cluster.ts'
import { describeAcls, describeScramCredentials } from '../../src/kafka/cluster-metadata.ts'
import { listRestoreStates } from '../../src/restore/state.ts'
import type { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { backupOptions, runBackup, tempStorage } from '../helpers/backup.ts'
import { runCli, writeConfig } from '../helpers/cli.ts'
import { type AdminCluster, createTopic, testCluster, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'

let source: RunningBroker
let target: RunningBroker
let sourceCluster: AdminCluster
let targetCluster: AdminCluster

before(async () => {
  ;[source, target] = await Promise.all([
    startBroker('metadata-source', { authorizer: true }),
    startBroker('metadata-target', { authorizer: true })
  ])
  sourceCluster = testCluster([source.bootstrapServers])
  targetCluster = testCluster([target.bootstrapServers])
})

after(async () => {
  await Promise.allSettled([sourceCluster?.close(), targetCluster?.close()])
  await Promise.allSettled([
    source && stopBroker(source, { keepLog: true }),
    target && stopBroker(target, { keepLog: true })
  ])
})

/** kafka-acls.sh / kafka-configs.sh (the source by default), as an operator would set it up. */
function kafkaAcls(args: string[], broker = source): void {
  runKafkaTool('org.apache.kafka.tools.AclCommand', ['--bootstrap-server', broker.bootstrapServers, ...args])
}
function kafkaConfigs(args: string[], broker = source): void {
  runKafkaTool('kafka.admin.ConfigCommand', ['--bootstrap-server', broker.bootstrapServers, '--alter', ...args])
}

/** A backup `test-backup` of `topic` on the source, capturing the cluster metadata `kinds`, in a new folder. */
async function backUpSource(topic: string, kinds: ClusterMetadataKind[]): Promise<FilesystemStorage> {
  const storage = tempStorage()
  await runBackup(
    backupOptions(sourceCluster, storage, [topic], {
      bootstrapServers: [source.bootstrapServers],
      clusterMetadata: kinds
    })
  )
  return storage
}

/** kafka-configs.sh --entity-type users: a SCRAM credential or quotas of `user`. */
function userConfig(user: string, config: string, broker = source): void {
  kafkaConfigs(['--entity-type', 'users', '--entity-name', user, '--add-config', config], broker)
}

/** Our cluster client on the SASL listener of `broker`, logged in as a SCRAM-SHA-256 user. */
function scramClient(broker: RunningBroker, username: string, password: string): KafkaCluster {
  return new KafkaCluster({
    bootstrapServers: [broker.saslBootstrapServers!],
    clientId: 'kafka-backup-test',
    sasl: { mechanism: 'SCRAM-SHA-256', username, password }
  })
}

/** ACLs other than those of the restore's own principal. */
const notRestorer = <T extends { principal: string }>(acls: T[]) => acls.filter(a => a.principal !== 'User:restorer')

async function produce(bootstrap: string, topic: string, count: number): Promise<void> {
  const producer = new Producer({ clientId: 'kafka-backup-test', bootstrapBrokers: [bootstrap], idempotent: true })
  try {
    await producer.send({
      messages: Array.from({ length: count }, (_, i) => ({
        topic,
        key: Buffer.from(`k${i}`),
        value: Buffer.from(`v${i}`)
      }))
    })
  } finally {
    await producer.close()
  }
}

/** Reads `count` values of `topic` as a SCRAM user, in a consumer group (needs Read on topic and group). */
async function consumeAs(user: string, password: string, topic: string, groupId: string, count: number) {
  const consumer = new Consumer({
    clientId: 'kafka-backup-test',
    groupId,
    bootstrapBrokers: [target.saslBootstrapServers!],
    sasl: { mechanism: 'SCRAM-SHA-256', username: user, password }
  })
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest' })
    const values: string[] = []
    for await (const message of stream) {
      values.push(String(message.value))
      if (values.length === count) {
        break
      }
    }
    return values
  } finally {
    await consumer.close(true)
  }
}

test('backs up ACLs, quotas and SCRAM users and restores them to an empty cluster, where the restored user reads the restored topic', async () => {
  const topic = uniqueTopic('acl-orders')
  const restored = `${topic}-restored`
  const group = uniqueTopic('acl-group')
  await createTopic(sourceCluster, topic, 1)
  await produce(source.bootstrapServers, topic, 20)
  userConfig('alice', 'SCRAM-SHA-256=[iterations=8192,password=alice-on-source]')
  userConfig('bob', 'SCRAM-SHA-512=[iterations=4096,password=bob-on-source]')
  userConfig('alice', 'producer_byte_rate=1048576,consumer_byte_rate=2097152')
  kafkaConfigs(['--entity-type', 'clients', '--entity-default', '--add-config', 'request_percentage=50'])
  kafkaAcls([
    '--add',
    '--allow-principal',
    'User:alice',
    '--operation',
    'Read',
    '--operation',
    'Describe',
    '--topic',
    topic
  ])
  kafkaAcls(['--add', '--allow-principal', 'User:alice', '--operation', 'Read', '--group', group])
  kafkaAcls([
    '--add',
    '--allow-principal',
    'User:bob',
    '--operation',
    'Write',
    '--topic',
    'payments-',
    '--resource-pattern-type',
    'prefixed'
  ])

  const storage = await backUpSource(topic, ['acls', 'quotas', 'scram_users'])
  assert.deepEqual(
    (await storage.list('test-backup/metadata/')).map(o => o.key),
    [`${clusterMetadataBase('test-backup')}/000000000001.json`],
    'captured as the first revision'
  )
  const captured = await readClusterMetadata(storage, 'test-backup')
  assert.ok(captured?.acls && captured.quotas)
  assert.equal(captured.acls.authorizer, true)
  assert.equal(captured.acls.bindings.length, 4)
  assert.deepEqual(captured.scramUsers, [
    { user: 'alice', mechanism: 'SCRAM-SHA-256', iterations: 8192 },
    { user: 'bob', mechanism: 'SCRAM-SHA-512', iterations: 4096 }
  ])
  assert.deepEqual(
    captured.quotas.map(q => q.values),
    [{ request_percentage: 50 }, { producer_byte_rate: 1048576, consumer_byte_rate: 2097152 }]
  )
  assert.doesNotMatch(JSON.stringify(captured), /on-source/, 'no password is in the backup')

  const passwords = join(mkdtempSync(join(tmpdir(), 'kafka-backup-scram-')), 'scram-users.yaml')
  writeFileSync(passwords, 'alice: alice-on-target\nbob: bob-on-target\n')
  // The restore runs as a principal with only the rights README.md lists for it.
  userConfig('restorer', 'SCRAM-SHA-256=[password=restorer-secret]', target)
  const rights = (...operations: string[]) => operations.flatMap(operation => ['--operation', operation])
  kafkaAcls(
    [
      '--add',
      '--allow-principal',
      'User:restorer',
      ...rights('Describe', 'Alter', 'DescribeConfigs', 'AlterConfigs'),
      '--cluster'
    ],
    target
  )
  kafkaAcls(
    [
      '--add',
      '--allow-principal',
      'User:restorer',
      ...rights('Describe', 'Write', 'DescribeConfigs', 'Create'),
      '--topic',
      restored
    ],
    target
  )
  const restorer = scramClient(target, 'restorer', 'restorer-secret')
  after(() => restorer.close())
  const options = restoreOptions(restorer, storage, {
    bootstrapServers: [target.saslBootstrapServers!],
    topicMapping: { [topic]: restored },
    clusterMetadata: ['acls', 'quotas', 'scram_users'],
    scramUsersFile: passwords
  })

  // The CLI's dry run: config keys to options, and one line per entry it would create.
  const config = writeConfig(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${target.bootstrapServers}
restore:
  dry_run: true
  topic_mapping:
    ${topic}: ${restored}
  metadata: [acls, quotas, scram_users]
  scram_users_file: ${passwords}
storage:
  backend: filesystem
  path: ${storage.location}
`)
  const cli = await runCli(['restore', '--config', config])
  assert.equal(cli.code, 0, cli.stderr)
  for (const line of [
    `would create ACL: ALLOW User:alice READ on TOPIC ${restored} (LITERAL) from *`,
    'would create ACL: ALLOW User:bob WRITE on TOPIC payments- (PREFIXED) from *',
    `would create ACL: ALLOW User:alice READ on GROUP ${group} (LITERAL) from *`,
    'would create quota: client-id=<default> request_percentage=50',
    'would create SCRAM credential: alice SCRAM-SHA-256 (8192 iterations)',
    'would create SCRAM credential: bob SCRAM-SHA-512 (4096 iterations)'
  ]) {
    assert.ok(cli.stdout.includes(line), `${line} in:\n${cli.stdout}`)
  }
  assert.doesNotMatch(cli.stdout, /on-target/, 'passwords are not printed')

  const plan = await runRestore({ ...options, dryRun: true })
  assert.deepEqual(
    plan.metadata?.acls
      .filter(acl => acl.resourceType === 'TOPIC' && acl.patternType === 'LITERAL')
      .map(acl => acl.resourceName),
    [restored, restored],
    'topic ACLs follow topic_mapping'
  )
  assert.equal(plan.metadata?.acls.length, 4)
  assert.equal(plan.metadata?.quotas.length, 2)
  assert.equal(plan.metadata?.scramUsers.length, 2)
  assert.deepEqual(notRestorer((await describeAcls(targetCluster)) ?? []), [], 'the dry run created no ACL')
  assert.deepEqual(
    (await describeScramCredentials(targetCluster)).filter(c => c.user !== 'restorer'),
    [],
    'the dry run created no SCRAM user'
  )

  const summary = await runRestore(options)
  assert.equal(summary.records, 20)
  assert.equal(summary.metadata?.acls.length, 4)
  // Read back with the library's own admin client, not our parser.
  const acls = await targetCluster.admin.describeAcls({
    filter: {
      resourceType: 1,
      resourceName: null,
      resourcePatternType: 1,
      principal: null,
      host: null,
      operation: 1,
      permissionType: 1
    }
  })
  assert.deepEqual(
    acls
      .filter(r => notRestorer(r.acls).length > 0)
      .map(
        r =>
          `${r.resourceType}/${r.resourceName}/${r.resourcePatternType}: ${notRestorer(r.acls)
            .map(a => `${a.principal} ${a.operation}`)
            .sort()
            .join(', ')}`
      )
      .sort(),
    [`2/${restored}/3: User:alice 3, User:alice 8`, '2/payments-/4: User:bob 4', `3/${group}/3: User:alice 3`].sort()
  )
  const quotas = await targetCluster.admin.describeClientQuotas({ components: [], strict: false })
  assert.deepEqual(
    quotas
      .map(
        q =>
          `${q.entity.map(e => `${e.entityType}=${e.entityName}`).join()}: ${q.values
            .map(v => `${v.key}=${v.value}`)
            .sort()
            .join()}`
      )
      .sort(),
    ['client-id=null: request_percentage=50', 'user=alice: consumer_byte_rate=2097152,producer_byte_rate=1048576']
  )
  const values = await consumeAs('alice', 'alice-on-target', restored, group, 20)
  assert.deepEqual(
    values,
    Array.from({ length: 20 }, (_, i) => `v${i}`),
    'alice logs in with the supplied password and reads through the restored ACLs'
  )

  const again = await runRestore({ ...options, allowNonEmptyTarget: true, dryRun: true })
  assert.deepEqual(
    {
      acls: again.metadata?.acls.length,
      quotas: again.metadata?.quotas.length,
      scramUsers: again.metadata?.scramUsers.length
    },
    { acls: 0, quotas: 0, scramUsers: 0 },
    'a second restore has nothing left to create'
  )
  assert.deepEqual(again.metadata?.unchanged, { acls: 4, quotas: 3, scramUsers: 2 })
})

test('refuses to restore SCRAM users without a password for each, before it writes anything', async () => {
  const topic = uniqueTopic('scram-refused')
  await createTopic(sourceCluster, topic, 1)
  await produce(source.bootstrapServers, topic, 3)
  userConfig('carol', 'SCRAM-SHA-512=[iterations=4096,password=carol-on-source]')
  const storage = await backUpSource(topic, ['scram_users'])
  // A relative scram_users_file is found next to the config file.
  const config = writeConfig(`mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${target.bootstrapServers}
restore:
  metadata: [scram_users]
  scram_users_file: scram-users.yaml
storage:
  backend: filesystem
  path: ${storage.location}
`)
  writeFileSync(join(dirname(config), 'scram-users.yaml'), 'alice: alice-on-target\nbob: bob-on-target\n')
  for (const dryRun of [[], ['--dry-run']]) {
    const refused = await runCli(['restore', '--config', config, ...dryRun])
    assert.equal(refused.code, 2, refused.stderr)
    assert.match(
      refused.stderr,
      /KB_CONFIG_INVALID: restore\.scram_users_file: \S+scram-users\.yaml has no password \(a non-empty string\) for the SCRAM users carol\n/
    )
  }
  const options = restoreOptions(targetCluster, storage, {
    bootstrapServers: [target.bootstrapServers],
    clusterMetadata: ['scram_users']
  })
  const topics = await targetCluster.admin.listTopics({ includeInternals: true })
  assert.equal(topics.includes(topic), false, 'the refused restore created no topic')
  assert.equal(
    (await describeScramCredentials(targetCluster)).some(c => c.user === 'carol'),
    false,
    'nor the SCRAM user'
  )
  await assert.rejects(
    runRestore({ ...options, clusterMetadata: ['acls'] }),
    /restore\.metadata asks for acls, which backup test-backup did not capture/
  )
})

test('a backup whose principal may not describe the ACLs fails naming the right it needs', async () => {
  const topic = uniqueTopic('acl-denied')
  await createTopic(sourceCluster, topic, 1)
  userConfig('dave', 'SCRAM-SHA-256=[iterations=4096,password=dave-secret]')
  kafkaAcls([
    '--add',
    '--allow-principal',
    'User:dave',
    '--operation',
    'Read',
    '--operation',
    'Describe',
    '--operation',
    'DescribeConfigs',
    '--topic',
    topic
  ])
  const dave = scramClient(source, 'dave', 'dave-secret')
  try {
    const storage = tempStorage()
    await assert.rejects(
      runBackup(
        backupOptions(dave, storage, [topic], {
          bootstrapServers: [source.saslBootstrapServers!],
          clusterMetadata: ['acls']
        })
      ),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'KB_KAFKA_AUTHORIZATION')
        assert.match(
          error.message,
          /describing ACLs failed: CLUSTER_AUTHORIZATION_FAILED.*the principal needs Describe on the cluster/
        )
        return true
      }
    )
    assert.deepEqual(await storage.list('test-backup/metadata/'), [], 'nothing was captured')
  } finally {
    await dave.close()
  }
})

test('a restore whose cluster metadata fails to apply ends its state as failed with the error, which status reports; once the cause is gone a rerun completes', async () => {
  const topic = uniqueTopic('metadata-fails')
  await createTopic(sourceCluster, topic, 1)
  await produce(source.bootstrapServers, topic, 5)
  kafkaAcls(['--add', '--allow-principal', 'User:erin', '--operation', 'Read', '--topic', topic])
  const storage = await backUpSource(topic, ['acls'])
  // A binding the target's controller refuses when it is created (a principal must read
  // `Type:name`), though it can be planned: the apply fails after the restore is on record.
  const file = join(storage.location, `${clusterMetadataBase('test-backup')}/000000000001.json`)
  const captured = readFileSync(file, 'utf8')
  const document = JSON.parse(captured)
  const erin = document.acls.bindings.find((b: { principal: string }) => b.principal === 'User:erin')
  document.acls.bindings.push({ ...erin, principal: 'erin-without-type' })
  writeFileSync(file, JSON.stringify(document))

  const restoredTopic = `${topic}-restored`
  const options = restoreOptions(targetCluster, storage, {
    bootstrapServers: [target.bootstrapServers],
    topicMapping: { [topic]: restoredTopic },
    clusterMetadata: ['acls']
  })
  const failure = await runRestore(options).then(
    () => assert.fail('the restore succeeded'),
    (error: Error) => error
  )
  const [state] = await listRestoreStates(storage, 'test-backup')
  assert.equal(state?.status, 'failed', 'the state says failed, not running')
  assert.equal(state?.error, failure.message)
  const status = await runCli(['status', '--path', storage.location, '--backup-id', 'test-backup', '--json'])
  assert.equal(status.code, 1, status.stderr)
  assert.deepEqual(
    JSON.parse(status.stdout).restores.map((r: { status: string; error: string }) => [r.status, r.error]),
    [['failed', failure.message]]
  )

  writeFileSync(file, captured)
  const rerun = await runRestore(options)
  assert.equal(rerun.status, 'complete')
  assert.equal(rerun.restoreId, state?.restoreId, 'the rerun continued the failed restore')
  assert.equal(rerun.records, 5)
  const [after] = await listRestoreStates(storage, 'test-backup')
  assert.equal(after?.status, 'complete')
  assert.ok(
    (await describeAcls(targetCluster))?.some(
      acl => acl.principal === 'User:erin' && acl.resourceName === restoredTopic
    ),
    'the ACL is on the target, for the restored topic'
  )
})
