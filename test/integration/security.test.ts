/**
 * Backup and restore over secured listeners of a real broker (scripts/test-cluster): TLS with a
 * CA made at test time and host name verification, mutual TLS, SASL PLAIN and SCRAM over plain
 * TCP and TLS; and each way a secured connection can fail gives its own code and message. This
 * file starts its own broker, with all those listeners.
 */
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  AclOperations,
  type AclOperationValue,
  AclPermissionTypes,
  Producer,
  ResourcePatternTypes,
  ResourceTypes,
  type ResourceTypeValue
} from '@platformatic/kafka'
import { decodeJwt } from 'jose'
import {
  type OAuthServer,
  oauthAudience,
  oauthIssuer,
  startOAuthServer
} from '../../scripts/test-cluster/oauth-server.ts'
import {
  passwordOf,
  type SecureBroker,
  saslMechanisms,
  startSecureBroker,
  stopSecureBroker
} from '../../scripts/test-cluster/secure-broker.ts'
import { type SecurityConfig, sourceSchema } from '../../src/config/schema.ts'
import type { KafkaCluster } from '../../src/kafka/cluster.ts'
import { connectCluster } from '../../src/kafka/connect.ts'
import { clientCredentialsTokens } from '../../src/kafka/oauth.ts'
import { IsolationLevel, rawFetch } from '../../src/kafka/raw-fetch.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { backupOptions, runBackup } from '../helpers/backup.ts'
import { runCli, writeConfig } from '../helpers/cli.ts'
import { type AdminCluster, createTopic, testCluster, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

let broker: SecureBroker
let oauth: OAuthServer
/** OAuth tokens live 6 s. */
const tokenLifetimeSecs = 6
/** The PLAINTEXT listener, where the tests set up topics and data (ANONYMOUS is a super user). */
let setup: AdminCluster

before(async () => {
  oauth = await startOAuthServer({
    clients: {
      'oauth-admin': { secret: 'oauth-admin-secret' },
      'oauth-wrong-audience': { secret: 'oauth-wrong-audience-secret', audience: 'not-kafka' }
    },
    tokenLifetimeSecs
  })
  broker = await startSecureBroker({
    jwksUrl: oauth.jwksUrl,
    issuer: oauthIssuer,
    audience: oauthAudience
  })
  setup = testCluster([broker.listeners.PLAINTEXT])
})
after(async () => {
  await setup?.close()
  if (broker) {
    await stopSecureBroker(broker, { keepLog: true })
  }
  await oauth?.close()
})

/** 500 records over two partitions, in `sends` produce requests (a batch per partition each). */
async function topicWithRecords(label: string, sends = 1): Promise<string> {
  const topic = uniqueTopic(label)
  await createTopic(setup, topic, 2)
  // Idempotent: a retried request on the loaded test machine must not duplicate records.
  const producer = new Producer({
    clientId: 'kafka-backup-test',
    bootstrapBrokers: [broker.listeners.PLAINTEXT],
    idempotent: true
  })
  const perSend = 500 / sends
  for (let send = 0; send < sends; send++) {
    await producer.send({
      messages: Array.from({ length: perSend }, (_, j) => {
        const i = send * perSend + j
        return {
          topic,
          partition: i % 2,
          key: Buffer.from(`key-${i}`),
          value: Buffer.from(`value-${i}`),
          headers: new Map([[Buffer.from('h'), Buffer.from(String(i))]])
        }
      })
    })
  }
  await producer.close()
  return topic
}

/** A cluster as the CLI builds it from a `source` section. */
function securedCluster(bootstrap: string, security: Partial<SecurityConfig>): KafkaCluster {
  return connectCluster(sourceSchema.parse({ bootstrap_servers: [bootstrap], security }))
}

function oauthSecurity(clientId: string, secret = `${clientId}-secret`): Partial<SecurityConfig> {
  return {
    security_protocol: 'SASL_PLAINTEXT',
    sasl_mechanism: 'OAUTHBEARER',
    sasl_oauthbearer_token_endpoint_url: oauth.tokenUrl,
    sasl_oauthbearer_client_id: clientId,
    sasl_oauthbearer_client_secret: secret,
    sasl_oauthbearer_scope: 'kafka'
  }
}

function listenerCases(): Array<{ name: string; bootstrap: string; security: Partial<SecurityConfig> }> {
  const { listeners, certificates } = broker
  const tls = { ssl_ca_location: certificates.caFile }
  const sasl = (mechanism: (typeof saslMechanisms)[number]) => ({
    sasl_mechanism: mechanism,
    sasl_username: 'admin',
    sasl_password: passwordOf('admin')
  })
  return [
    { name: 'SSL with a custom CA file', bootstrap: listeners.SSL, security: { security_protocol: 'SSL', ...tls } },
    {
      name: 'mutual TLS with a client certificate',
      bootstrap: listeners.MTLS,
      security: {
        security_protocol: 'SSL',
        ...tls,
        ssl_certificate_location: certificates.clientCertificateFile,
        ssl_key_location: certificates.clientKeyFile
      }
    },
    ...saslMechanisms.map(mechanism => ({
      name: `SASL_PLAINTEXT ${mechanism}`,
      bootstrap: listeners.SASL_PLAINTEXT,
      security: { security_protocol: 'SASL_PLAINTEXT' as const, ...sasl(mechanism) }
    })),
    ...saslMechanisms.map(mechanism => ({
      name: `SASL_SSL ${mechanism}`,
      bootstrap: listeners.SASL_SSL,
      security: { security_protocol: 'SASL_SSL' as const, ...tls, ...sasl(mechanism) }
    })),
    {
      name: 'SASL_PLAINTEXT OAUTHBEARER with client-credentials tokens',
      bootstrap: listeners.OAUTH,
      security: oauthSecurity('oauth-admin')
    }
  ]
}

describe('backup and restore round-trip exactly over each secured listener', () => {
  // Built in a test, because the listeners are known only once the broker runs.
  test('every listener kind', async t => {
    for (const { name, bootstrap, security } of listenerCases()) {
      await t.test(name, async () => {
        const topic = await topicWithRecords('secured')
        const cluster = securedCluster(bootstrap, security)
        try {
          const storage = new FilesystemStorage({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-secured-')) })
          const backup = await runBackup(backupOptions(cluster, storage, [topic], { bootstrapServers: [bootstrap] }))
          assert.equal(backup.records, 500)
          const target = `${topic}-restored`
          const restore = await runRestore(
            restoreOptions(cluster, storage, { bootstrapServers: [bootstrap], topicMapping: { [topic]: target } })
          )
          assert.equal(restore.records, 500)
          assert.deepEqual(
            contentOf(await readTopicRecords(setup, target)),
            contentOf(await readTopicRecords(setup, topic))
          )
        } finally {
          await cluster.close()
        }
      })
    }
  })
})

/** Runs `kafka-backup backup` against a secured listener and returns its exit code and stderr. */
async function backupWith(bootstrap: string, security: Record<string, string>) {
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-secured-'))
  const config = writeConfig(`mode: backup
backup_id: secured
source:
  bootstrap_servers: ${bootstrap}
  security: ${JSON.stringify(security)}
storage: { backend: filesystem, path: ${path} }
`)
  const { code, stderr } = await runCli(['backup', '--config', config])
  return { code, error: stderr.trim().split('\n').at(-1) ?? '' }
}

describe('each way a secured connection fails has its own code and says what failed', { concurrency: true }, () => {
  const sasl = (mechanism: string, username: string, password: string) => ({
    security_protocol: 'SASL_PLAINTEXT',
    sasl_mechanism: mechanism,
    sasl_username: username,
    sasl_password: password
  })

  test('wrong password', async () => {
    const { code, error } = await backupWith(broker.listeners.SASL_PLAINTEXT, sasl('SCRAM-SHA-512', 'backup', 'wrong'))
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_AUTHENTICATION: .*SASL SCRAM-SHA-512 authentication as backup failed: Authentication failed .*invalid credentials.*source\.security\.sasl_username, sasl_password/
    )
    assert.doesNotMatch(error, /wrong/, 'the password is not shown')
  })

  test('unknown user', async () => {
    const { code, error } = await backupWith(broker.listeners.SASL_PLAINTEXT, sasl('PLAIN', 'ghost', 'secret'))
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_AUTHENTICATION: .*SASL PLAIN authentication as ghost failed: Authentication failed: Invalid username or password/
    )
  })

  test('mechanism not enabled on the listener', async () => {
    const { code, error } = await backupWith(
      broker.listeners.SCRAM512_ONLY,
      sasl('PLAIN', 'backup', passwordOf('backup'))
    )
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_AUTHENTICATION: .*the broker does not enable PLAIN on this listener: set source\.security\.sasl_mechanism/
    )
  })

  test('untrusted CA', async () => {
    const { code, error } = await backupWith(broker.listeners.SSL, {
      security_protocol: 'SSL',
      ssl_ca_location: broker.certificates.otherCaFile
    })
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_TLS: .*the broker's TLS certificate is not signed by a CA this tool trusts \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): set source\.security\.ssl_ca_location/
    )
  })

  test('host name not in the broker certificate', async () => {
    const { code, error } = await backupWith(broker.listeners.SSL.replace('localhost', '127.0.0.1'), {
      security_protocol: 'SSL',
      ssl_ca_location: broker.certificates.caFile
    })
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_TLS: .*the broker's TLS certificate is not valid for host 127\.0\.0\.1 \(it names DNS:localhost\)/
    )
  })

  test('no client certificate for a listener that requires one', async () => {
    const { code, error } = await backupWith(broker.listeners.MTLS, {
      security_protocol: 'SSL',
      ssl_ca_location: broker.certificates.caFile
    })
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_TLS: .*the broker refused this client's TLS certificate .*source\.security\.ssl_certificate_location/
    )
  })

  test('OAuth client secret refused by the token endpoint', async () => {
    const { code, error } = await backupWith(
      broker.listeners.OAUTH,
      oauthSecurity('oauth-admin', 'wrong') as Record<string, string>
    )
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_AUTHENTICATION: getting an OAuth token for client oauth-admin from http:\/\/127\.0\.0\.1:\d+\/token failed: HTTP 401 .*: check source\.security\.sasl_oauthbearer_token_endpoint_url, sasl_oauthbearer_client_id and sasl_oauthbearer_client_secret$/
    )
    assert.doesNotMatch(error, /wrong/, 'the secret is not shown')
  })

  test('OAuth token rejected by the broker (wrong audience)', async () => {
    const { code, error } = await backupWith(
      broker.listeners.OAUTH,
      oauthSecurity('oauth-wrong-audience') as Record<string, string>
    )
    assert.equal(code, 1)
    assert.match(
      error,
      /^kafka-backup: KB_KAFKA_AUTHENTICATION: .*SASL OAUTHBEARER authentication failed: .*check the token from source\.security\.sasl_oauthbearer_token_endpoint_url/
    )
  })

  test('TLS against a plaintext listener', async () => {
    const { code, error } = await backupWith(broker.listeners.PLAINTEXT, {
      security_protocol: 'SSL',
      ssl_ca_location: broker.certificates.caFile
    })
    assert.equal(code, 1)
    assert.match(error, /^kafka-backup: KB_KAFKA_TLS: .*does not speak TLS on this port/)
  })
})

/** Allows `user` the operations on one resource (a literal name; `*` is every name). */
async function grant(
  user: string,
  resourceType: ResourceTypeValue,
  resourceName: string,
  operations: AclOperationValue[]
): Promise<void> {
  await setup.admin.createAcls({
    creations: operations.map(operation => ({
      resourceType,
      resourceName,
      resourcePatternType: ResourcePatternTypes.LITERAL,
      principal: `User:${user}`,
      host: '*',
      operation,
      permissionType: AclPermissionTypes.ALLOW
    }))
  })
}

function saslUser(user: string): KafkaCluster {
  return securedCluster(broker.listeners.SASL_PLAINTEXT, {
    security_protocol: 'SASL_PLAINTEXT',
    sasl_mechanism: 'SCRAM-SHA-512',
    sasl_username: user,
    sasl_password: passwordOf(user)
  })
}

/** The ACLs the README lists as the minimum for a backup and for a restore (without consumer-group reset). */
const backupAcls = [AclOperations.DESCRIBE, AclOperations.READ, AclOperations.DESCRIBE_CONFIGS]
const restoreAcls = [AclOperations.CREATE, AclOperations.WRITE, AclOperations.DESCRIBE, AclOperations.DESCRIBE_CONFIGS]

describe('authorization (StandardAuthorizer)', () => {
  test('a backup principal with only the backup ACLs and a restore principal with only the restore ACLs round-trip exactly', async () => {
    const topic = await topicWithRecords('acl')
    const target = `${topic}-restored`
    await grant('backup', ResourceTypes.TOPIC, topic, backupAcls)
    await grant('backup', ResourceTypes.GROUP, '*', [AclOperations.DESCRIBE])
    await grant('restore', ResourceTypes.TOPIC, target, restoreAcls)
    const storage = new FilesystemStorage({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-acl-')) })
    const backupCluster = saslUser('backup')
    const restoreCluster = saslUser('restore')
    try {
      const bootstrapServers = [broker.listeners.SASL_PLAINTEXT]
      assert.equal((await runBackup(backupOptions(backupCluster, storage, [topic], { bootstrapServers }))).records, 500)
      const restore = await runRestore(
        restoreOptions(restoreCluster, storage, { bootstrapServers, topicMapping: { [topic]: target } })
      )
      assert.equal(restore.records, 500)
      assert.deepEqual(
        contentOf(await readTopicRecords(setup, target)),
        contentOf(await readTopicRecords(setup, topic))
      )
    } finally {
      await backupCluster.close()
      await restoreCluster.close()
    }
  })

  test('a backup principal without Read on the topic: KB_KAFKA_AUTHORIZATION names Read on that topic', async () => {
    const topic = await topicWithRecords('acl-no-read')
    await grant('nobody', ResourceTypes.TOPIC, topic, [AclOperations.DESCRIBE, AclOperations.DESCRIBE_CONFIGS])
    const cluster = saslUser('nobody')
    try {
      const storage = new FilesystemStorage({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-acl-')) })
      await assert.rejects(
        runBackup(backupOptions(cluster, storage, [topic], { bootstrapServers: [broker.listeners.SASL_PLAINTEXT] })),
        {
          code: 'KB_KAFKA_AUTHORIZATION',
          message: new RegExp(
            `^fetching ${topic}/\\d failed: not authorized \\(TOPIC_AUTHORIZATION_FAILED\\): the principal needs Read on topic ${topic}$`
          )
        }
      )
    } finally {
      await cluster.close()
    }
  })

  test('a restore principal without Write on the target topic: KB_KAFKA_AUTHORIZATION names the Write it lacks', async () => {
    const topic = await topicWithRecords('acl-no-write')
    const storage = new FilesystemStorage({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-acl-')) })
    await runBackup(backupOptions(setup, storage, [topic], { bootstrapServers: [broker.listeners.PLAINTEXT] }))
    const target = `${topic}-restored`
    await grant('nobody', ResourceTypes.TOPIC, target, [
      AclOperations.CREATE,
      AclOperations.DESCRIBE,
      AclOperations.DESCRIBE_CONFIGS
    ])
    const cluster = saslUser('nobody')
    try {
      await assert.rejects(
        runRestore(
          restoreOptions(cluster, storage, {
            bootstrapServers: [broker.listeners.SASL_PLAINTEXT],
            topicMapping: { [topic]: target }
          })
        ),
        {
          code: 'KB_KAFKA_AUTHORIZATION',
          message:
            /^initializing the idempotent producer \(InitProducerId\) on .* failed: not authorized \(CLUSTER_AUTHORIZATION_FAILED\): the principal needs IdempotentWrite on the cluster or Write on a target topic$/
        }
      )
    } finally {
      await cluster.close()
    }
  })
})

test('the OAuth token provider reuses a token until half its lifetime, then takes a fresh one before it expires', async () => {
  const tokens = clientCredentialsTokens({
    tokenEndpointUrl: oauth.tokenUrl,
    clientId: 'oauth-admin',
    clientSecret: 'oauth-admin-secret',
    configKey: 'source.security'
  })
  const issuedBefore = oauth.issued.get('oauth-admin') ?? 0
  const first = await tokens()
  const firstAt = Date.now()
  assert.equal(await tokens(), first, 'a young token is reused')
  const expiresAt = (decodeJwt(first).exp ?? 0) * 1000
  // Half of the lifetime: the provider must not hand out this token any more.
  while (Date.now() < firstAt + (tokenLifetimeSecs * 1000) / 2 + 100) {
    await sleep(100)
  }
  const second = await tokens()
  assert.notEqual(second, first)
  assert.ok(Date.now() < expiresAt, 'the fresh token came before the first one expired')
  assert.equal((oauth.issued.get('oauth-admin') ?? 0) - issuedBefore, 2)
})

test('a connection re-authenticates with a fresh token when the broker limits its session (connections.max.reauth.ms), with fetches in flight', async () => {
  const topic = await topicWithRecords('reauth')
  const cluster = securedCluster(broker.listeners.OAUTH, oauthSecurity('oauth-admin'))
  try {
    const metadata = await cluster.metadata([topic])
    const found = metadata.topics.get(topic)!
    // One connection for the whole test: the broker closes it if a session outlives its limit.
    const connection = await cluster.connection(metadata, found.partitions[0]!.leader)
    const issuedBefore = oauth.issued.get('oauth-admin') ?? 0
    const fetch = () =>
      rawFetch(connection, {
        maxWaitMs: 200,
        minBytes: 1_000_000,
        maxBytes: 1_000_000,
        isolationLevel: IsolationLevel.READ_COMMITTED,
        topics: [
          {
            topicId: found.id,
            partitions: [{ partition: 0, fetchOffset: 0n, currentLeaderEpoch: -1, partitionMaxBytes: 1_000_000 }]
          }
        ]
      })
    const deadline = Date.now() + (tokenLifetimeSecs + 2) * 1000
    let fetches = 0
    while (Date.now() < deadline) {
      // Two in flight at a time, as the backup pipelines them.
      const responses = await Promise.all([fetch(), fetch()])
      for (const response of responses) {
        const partition = response.topics[0]!.partitions[0]!
        assert.equal(partition.errorCode, 0)
        assert.ok((partition.records?.length ?? 0) > 0)
      }
      fetches += 2
    }
    assert.equal(connection.closed, false, 'the same connection served every fetch')
    assert.ok(fetches > 10, `${fetches} fetches`)
    assert.ok(
      (oauth.issued.get('oauth-admin') ?? 0) - issuedBefore >= 1,
      'a token younger than half its lifetime was taken for a re-authentication'
    )
  } finally {
    await cluster.close()
  }
})
