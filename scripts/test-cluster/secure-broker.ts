/**
 * One single-node Kafka broker with every kind of secured listener, for the security tests:
 * one broker with several listeners costs far less than one broker per kind.
 *
 *   PLAINTEXT       127.0.0.1   setup by the tests (ANONYMOUS is a super user), broker-internal
 *   SSL             localhost   TLS with a CA made at test time, host name verified
 *   MTLS            localhost   TLS with ssl.client.auth=required
 *   SASL_PLAINTEXT  127.0.0.1   PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
 *   SASL_SSL        localhost   PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 over TLS
 *   SCRAM512_ONLY   127.0.0.1   SASL_PLAINTEXT with only SCRAM-SHA-512 (a mechanism not enabled)
 *   OAUTH           127.0.0.1   SASL_PLAINTEXT with OAUTHBEARER: JWTs checked against a JWKS URL
 *                               (scripts/test-cluster/oauth-server.ts); connections must
 *                               re-authenticate every 2 s (connections.max.reauth.ms)
 *
 * Authorization is on (StandardAuthorizer): `admin`, ANONYMOUS and the mutual-TLS client
 * certificate's principal (CN=backup-client) and the OAuth client `oauth-admin` are super users, `backup`,
 * `restore` and `nobody` get what the tests grant them. Every SASL user has its password for
 * each mechanism: `{user}-secret`.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  freePort,
  kafkaCacheDir,
  newClusterId,
  runKafkaTool,
  singleNodeProperties,
  spawnBroker,
  stopBroker,
  writeLog4jConfig
} from '../broker.ts'
import { type Certificates, makeCertificates } from './certificates.ts'

export const saslUsers = ['admin', 'backup', 'restore', 'nobody'] as const
export const saslMechanisms = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const

export const passwordOf = (user: string) => `${user}-secret`

export interface SecureBroker {
  pid: number
  runDir: string
  logFile: string
  certificates: Certificates
  /** host:port of each listener, by listener name. */
  listeners: {
    PLAINTEXT: string
    SSL: string
    MTLS: string
    SASL_PLAINTEXT: string
    SASL_SSL: string
    SCRAM512_ONLY: string
    OAUTH: string
  }
}

export interface SecureBrokerOptions {
  /** The JWKS the OAUTH listener validates tokens against (it must answer before the broker starts). */
  jwksUrl: string
  issuer: string
  audience: string
}

function plainJaas(): string {
  const users = saslUsers.map(user => `user_${user}="${passwordOf(user)}"`).join(' ')
  return `org.apache.kafka.common.security.plain.PlainLoginModule required ${users};`
}

const scramJaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required;'

/** The server.properties lines that enable `mechanisms` on a SASL listener. */
function saslListener(name: string, mechanisms: readonly string[]): string[] {
  const prefix = `listener.name.${name.toLowerCase()}`
  return [
    `${prefix}.sasl.enabled.mechanisms=${mechanisms.join(',')}`,
    ...mechanisms.map(
      mechanism =>
        `${prefix}.${mechanism.toLowerCase()}.sasl.jaas.config=${mechanism === 'PLAIN' ? plainJaas() : scramJaas}`
    )
  ]
}

function tlsListener(name: string, certificates: Certificates, clientAuth: 'none' | 'required'): string[] {
  const prefix = `listener.name.${name.toLowerCase()}`
  return [
    `${prefix}.ssl.keystore.type=PEM`,
    `${prefix}.ssl.keystore.location=${certificates.brokerKeystoreFile}`,
    `${prefix}.ssl.truststore.type=PEM`,
    `${prefix}.ssl.truststore.location=${certificates.caFile}`,
    `${prefix}.ssl.client.auth=${clientAuth}`
  ]
}

export async function startSecureBroker(oauth: SecureBrokerOptions): Promise<SecureBroker> {
  const runDir = join(kafkaCacheDir, 'runs', `secure-${Date.now()}-${process.pid}`)
  const logFile = join(runDir, 'broker.log')
  mkdirSync(runDir, { recursive: true })
  const certificates = makeCertificates(join(runDir, 'certs'))
  const names = ['PLAINTEXT', 'SSL', 'MTLS', 'SASL_PLAINTEXT', 'SASL_SSL', 'SCRAM512_ONLY', 'OAUTH'] as const
  const ports = Object.fromEntries(await Promise.all(names.map(async name => [name, await freePort()]))) as Record<
    (typeof names)[number],
    number
  >
  const controllerPort = await freePort()
  // TLS listeners are advertised as localhost, the only name in the broker certificate.
  const advertisedHost = (name: string) =>
    name === 'SSL' || name === 'MTLS' || name === 'SASL_SSL' ? 'localhost' : '127.0.0.1'
  const listeners = Object.fromEntries(
    names.map(name => [name, `${advertisedHost(name)}:${ports[name]}`])
  ) as SecureBroker['listeners']
  const propertiesFile = join(runDir, 'server.properties')
  writeFileSync(
    propertiesFile,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=${names.map(name => `${name}://127.0.0.1:${ports[name]}`).join(',')},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=${names.map(name => `${name}://${listeners[name]}`).join(',')}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SCRAM512_ONLY:SASL_PLAINTEXT,OAUTH:SASL_PLAINTEXT',
      ...tlsListener('SSL', certificates, 'none'),
      ...tlsListener('MTLS', certificates, 'required'),
      ...tlsListener('SASL_SSL', certificates, 'none'),
      ...saslListener('SASL_PLAINTEXT', saslMechanisms),
      ...saslListener('SASL_SSL', saslMechanisms),
      ...saslListener('SCRAM512_ONLY', ['SCRAM-SHA-512']),
      'listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER',
      'listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;',
      'listener.name.oauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler',
      'listener.name.oauth.oauthbearer.connections.max.reauth.ms=2000',
      `sasl.oauthbearer.jwks.endpoint.url=${oauth.jwksUrl}`,
      `sasl.oauthbearer.expected.issuer=${oauth.issuer}`,
      `sasl.oauthbearer.expected.audience=${oauth.audience}`,
      'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
      'super.users=User:ANONYMOUS;User:admin;User:CN=backup-client;User:oauth-admin',
      `log.dirs=${join(runDir, 'data')}`,
      ...singleNodeProperties,
      'log.retention.ms=-1',
      ''
    ].join('\n')
  )
  const log4jFile = writeLog4jConfig(runDir)
  // SCRAM credentials live in the cluster metadata: format writes them with the storage.
  const scram = saslUsers.flatMap(user =>
    ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap(mechanism => [
      '--add-scram',
      `${mechanism}=[name=${user},password=${passwordOf(user)}]`
    ])
  )
  const clusterId = newClusterId()
  runKafkaTool('kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', propertiesFile, ...scram])

  const pid = await spawnBroker({
    what: 'secured Kafka broker',
    runDir,
    logFile,
    propertiesFile,
    jvmOptions: [
      '-Xms256m',
      '-Xmx1g',
      `-Dlog4j2.configurationFile=${log4jFile}`,
      // Kafka 4 fetches only JWKS and token URLs it is allowed to.
      `-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=${oauth.jwksUrl}`
    ],
    bootstrapServers: listeners.PLAINTEXT,
    timeoutMs: 90_000
  })
  return { pid, runDir, logFile, certificates, listeners }
}

export async function stopSecureBroker(broker: SecureBroker, options: { keepLog?: boolean } = {}): Promise<void> {
  await stopBroker({ ...broker, bootstrapServers: broker.listeners.PLAINTEXT }, options)
}
