import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { stringify } from 'yaml'
import { type ConfigOverrides, type Env, parseConfig } from '../../src/config/load.ts'
import { type BackupError, type ErrorCode, isBackupError } from '../../src/errors.ts'

const password = 'Sup3r-S3cret-Pw'
const secretKey = 'wJalrXUtnFEMI-K7MDENG'

// biome-ignore lint/suspicious/noExplicitAny: drafts are free-form YAML trees that each case reshapes
type Draft = Record<string, any>

/** A valid backup config with SASL credentials; each case breaks one thing. */
function backupConfig(): Draft {
  return {
    mode: 'backup',
    backup_id: 'daily',
    source: {
      bootstrap_servers: ['broker-1:9092'],
      security: {
        security_protocol: 'SASL_SSL',
        sasl_mechanism: 'SCRAM-SHA-512',
        sasl_username: 'backup',
        sasl_password: password
      }
    },
    storage: { backend: 'filesystem', path: '/backups' }
  }
}

function restoreConfig(): Draft {
  return {
    mode: 'restore',
    backup_id: 'daily',
    target: { bootstrap_servers: 'broker-1:9092' },
    storage: { backend: 's3', bucket: 'kafka-backups', access_key: 'AKIAEXAMPLE', secret_key: secretKey }
  }
}

function edit(base: Draft, change: (config: Draft) => void): string {
  change(base)
  return stringify(base)
}

interface Case {
  name: string
  text: string
  code: ErrorCode
  /** The key path the error must name (context `path` and message). */
  path?: string
  message: RegExp
  env?: Env
  overrides?: ConfigOverrides
}

const cases: Case[] = [
  {
    name: 'bad YAML is KB_CONFIG_PARSE with file, line and column',
    text: 'mode: backup\nbackup_id: daily\nsource: { bootstrap_servers: [a:1 }\n',
    code: 'KB_CONFIG_PARSE',
    message: /^cfg\.yaml:3:\d+: not valid YAML: /
  },
  {
    name: 'bad YAML on a password line does not echo the password',
    text: `mode: backup\nsource:\n  security:\n    sasl_password: "${password}\n`,
    code: 'KB_CONFIG_PARSE',
    message: /^cfg\.yaml:\d+:\d+: not valid YAML/
  },
  {
    name: 'a duplicated key is KB_CONFIG_PARSE',
    text: 'mode: backup\nmode: restore\n',
    code: 'KB_CONFIG_PARSE',
    message: /^cfg\.yaml:2:1: not valid YAML: Map keys must be unique/
  },
  {
    name: 'an empty file names what a config needs',
    text: '# nothing yet\n',
    code: 'KB_CONFIG_INVALID',
    path: '(top level)',
    message: /the config file is empty; expected a mapping with mode, backup_id, storage/
  },
  {
    name: 'a list at the top level is refused',
    text: '- mode: backup\n',
    code: 'KB_CONFIG_INVALID',
    path: '(top level)',
    message: /\(top level\): expected a mapping, found a list/
  },
  {
    name: 'missing mode',
    text: edit(backupConfig(), c => delete c.mode),
    code: 'KB_CONFIG_INVALID',
    path: 'mode',
    message: /mode: required key is missing \(expected one of backup, restore\)/
  },
  {
    name: 'an unknown mode',
    text: edit(backupConfig(), c => (c.mode = 'archive')),
    code: 'KB_CONFIG_INVALID',
    path: 'mode',
    message: /mode: expected one of backup, restore, found "archive"/
  },
  {
    name: 'an encryption block with both keyring_file and keyring_env',
    text: edit(backupConfig(), c => {
      c.backup = { encryption: { keyring_file: '/etc/kb/keyring', keyring_env: 'KB_KEYRING' } }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.encryption',
    message: /backup\.encryption: expected exactly one of keyring_file and keyring_env/
  },
  {
    name: 'restore workers with a re-partitioned restore are refused',
    text: edit(restoreConfig(), c => {
      c.restore = { workers: { enabled: true }, repartition: { enabled: true } }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.workers.enabled',
    message: /restore\.workers\.enabled: cannot be true with repartition\.enabled/
  },
  {
    name: 'restore workers heartbeating no more often than the session timeout',
    text: edit(restoreConfig(), c => {
      c.restore = { workers: { enabled: true, session_timeout_ms: 6000, heartbeat_interval_ms: 6000 } }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.workers.heartbeat_interval_ms',
    message: /restore\.workers\.heartbeat_interval_ms: expected less than session_timeout_ms \(6000\)/
  },
  {
    name: 'an encryption block with neither',
    text: edit(restoreConfig(), c => {
      c.restore = { encryption: {} }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.encryption',
    message: /restore\.encryption: expected exactly one of keyring_file and keyring_env/
  },
  {
    name: 'missing backup_id',
    text: edit(backupConfig(), c => delete c.backup_id),
    code: 'KB_CONFIG_INVALID',
    path: 'backup_id',
    message: /backup_id: required key is missing/
  },
  {
    name: 'a backup_id that climbs out of the storage folder',
    text: edit(backupConfig(), c => (c.backup_id = '../x')),
    code: 'KB_CONFIG_INVALID',
    path: 'backup_id',
    message: /backup_id: expected a backup id of .* starting with a letter or digit .*, found "\.\.\/x"/
  },
  {
    name: 'missing source.bootstrap_servers',
    text: edit(backupConfig(), c => delete c.source.bootstrap_servers),
    code: 'KB_CONFIG_INVALID',
    path: 'source.bootstrap_servers',
    message:
      /source\.bootstrap_servers: required key is missing \(expected a list of host:port or one comma-separated string\)/
  },
  {
    name: 'a bootstrap server without a port names its list index',
    text: edit(backupConfig(), c => (c.source.bootstrap_servers = ['broker-1:9092', 'broker-2'])),
    code: 'KB_CONFIG_INVALID',
    path: 'source.bootstrap_servers[1]',
    message: /source\.bootstrap_servers\[1\]: expected host:port .*, found "broker-2"/
  },
  {
    name: 'missing source section in backup mode',
    text: edit(backupConfig(), c => delete c.source),
    code: 'KB_CONFIG_INVALID',
    path: 'source',
    message: /source: required key is missing \(expected a mapping\)/
  },
  {
    name: 'missing storage.path for the filesystem backend',
    text: edit(backupConfig(), c => delete c.storage.path),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.path',
    message: /storage\.path: required key is missing \(expected a string\)/
  },
  {
    name: 'an unknown storage backend lists the known ones',
    text: edit(backupConfig(), c => (c.storage.backend = 'ftp')),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.backend',
    message: /storage\.backend: expected one of filesystem, s3, azure, gcs, memory, found "ftp"/
  },
  {
    name: 'an unknown top-level key',
    text: edit(backupConfig(), c => (c.retention_days = 7)),
    code: 'KB_CONFIG_INVALID',
    path: 'retention_days',
    message: /retention_days: unknown key$/
  },
  {
    name: 'an unknown nested key with a did-you-mean suggestion',
    text: edit(backupConfig(), c => (c.backup = { compresion: 'zstd' })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.compresion',
    message: /backup\.compresion: unknown key \(did you mean backup\.compression\?\)/
  },
  {
    name: 'a kafka_config key spelt with underscores suggests the dotted Kafka name',
    text: edit(backupConfig(), c => (c.source.kafka_config = { fetch_max_bytes: 1048576 })),
    code: 'KB_CONFIG_INVALID',
    path: 'source.kafka_config.fetch_max_bytes',
    message: /unknown key \(did you mean source\.kafka_config\.fetch\.max\.bytes\?\)/
  },
  {
    name: 'an unknown kafka_config key is an error too',
    text: edit(backupConfig(), c => (c.source.kafka_config = { 'auto.offset.reset': 'earliest' })),
    code: 'KB_CONFIG_INVALID',
    path: 'source.kafka_config.auto.offset.reset',
    message: /source\.kafka_config\.auto\.offset\.reset: unknown key/
  },
  {
    name: 'a key put in the wrong section points to the right one',
    text: edit(backupConfig(), c => (c.backup = { multipart_part_size: 10485760 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.multipart_part_size',
    message: /unknown key \(did you mean storage\.multipart_part_size\?\)/
  },
  {
    name: 'a key of another storage backend says which backend takes it',
    text: edit(backupConfig(), c => (c.storage.multipart_part_size = 10485760)),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.multipart_part_size',
    message: /storage\.multipart_part_size: unknown key \(only with backend: s3\)/
  },
  {
    name: "OSO's target.topics and restore.topics naming different topics",
    text: edit(restoreConfig(), c => {
      c.target.topics = ['orders']
      c.restore = { topics: { include: ['payments'] } }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'target.topics',
    message: /target\.topics: sets the same thing as restore\.topics, which this file sets to another value/
  },
  {
    name: 'an empty bootstrap_servers list',
    text: edit(backupConfig(), c => (c.source.bootstrap_servers = [])),
    code: 'KB_CONFIG_INVALID',
    path: 'source.bootstrap_servers',
    message: /source\.bootstrap_servers: expected at least 1 entry, found an empty list/
  },
  {
    name: 'a restore section in a backup config',
    text: edit(backupConfig(), c => (c.restore = { dry_run: true })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore',
    message: /restore: only allowed with mode: restore \(this file has mode: backup\)/
  },
  {
    name: 'a source section in a restore config',
    text: edit(restoreConfig(), c => (c.source = { bootstrap_servers: 'a:1' })),
    code: 'KB_CONFIG_INVALID',
    path: 'source',
    message: /source: only allowed with mode: backup \(this file has mode: restore\)/
  },
  {
    name: 'a string where a boolean belongs',
    text: edit(backupConfig(), c => (c.backup = { continuous: 'yes' })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.continuous',
    message: /backup\.continuous: expected true or false, found "yes"/
  },
  {
    name: 'a size with a unit suffix where bytes belong',
    text: edit(backupConfig(), c => (c.backup = { segment_max_bytes: '128MB' })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.segment_max_bytes',
    message: /backup\.segment_max_bytes: expected an integer, found "128MB"/
  },
  {
    name: 'a negative segment size',
    text: edit(backupConfig(), c => (c.backup = { segment_max_bytes: -1 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.segment_max_bytes',
    message: /backup\.segment_max_bytes: expected a number of at least 1, found -1/
  },
  {
    name: 'a negative fetch size',
    text: edit(backupConfig(), c => (c.source.kafka_config = { 'fetch.max.bytes': -5 })),
    code: 'KB_CONFIG_INVALID',
    path: 'source.kafka_config.fetch.max.bytes',
    message: /expected a number of at least 1, found -5/
  },
  {
    name: 'a fractional byte count',
    text: edit(backupConfig(), c => (c.backup = { max_bytes_in_flight: 1.5 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.max_bytes_in_flight',
    message: /expected an integer, found 1\.5/
  },
  {
    name: 'an unknown codec',
    text: edit(backupConfig(), c => (c.backup = { compression: 'brotli' })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.compression',
    message: /backup\.compression: expected one of zstd, lz4, gzip, none, found "brotli"/
  },
  {
    name: 'a zstd level out of range',
    text: edit(backupConfig(), c => (c.backup = { compression_level: 25 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.compression_level',
    message: /backup\.compression_level: expected an integer from 1 to 19 for zstd, found 25/
  },
  {
    name: 'a gzip level out of range',
    text: edit(backupConfig(), c => (c.backup = { compression: 'gzip', compression_level: 12 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.compression_level',
    message: /expected an integer from 1 to 9 for gzip, found 12/
  },
  {
    name: 'an S3 part size below 5 MiB',
    text: edit(restoreConfig(), c => (c.storage.multipart_part_size = 1048576)),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.multipart_part_size',
    message: /storage\.multipart_part_size: expected a number of at least 5242880 \(5 MiB\), found 1048576/
  },
  {
    name: 'an S3 access_key without its secret_key',
    text: edit(restoreConfig(), c => delete c.storage.secret_key),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.secret_key',
    message: /storage\.secret_key: required key is missing \(expected access_key and secret_key to be set together/
  },
  {
    name: 'a reversed time window',
    text: edit(restoreConfig(), c => (c.restore = { time_window_start: 2000, time_window_end: 1000 })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.time_window_end',
    message: /restore\.time_window_end: expected a time at or after time_window_start \(2000\), found 1000/
  },
  {
    name: 'a time window date without a time zone',
    text: edit(restoreConfig(), c => (c.restore = { time_window_start: '2024-05-01 10:00' })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.time_window_start',
    message: /expected epoch milliseconds or an ISO-8601 date-time with a time zone/
  },
  {
    name: 'two topics mapped onto one target topic',
    text: edit(restoreConfig(), c => (c.restore = { topic_mapping: { a: 'merged', b: 'merged' } })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.topic_mapping.b',
    message: /restore\.topic_mapping\.b: maps to merged like a; two topics cannot be restored into one/
  },
  {
    name: 'a partition_mapping key that is not a partition number',
    text: edit(restoreConfig(), c => (c.restore = { partition_mapping: { orders: { first: 1 } } })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.partition_mapping.orders.first',
    message: /expected a partition number as the key, found the key "first"/
  },
  {
    name: 'produce_max_in_flight above the idempotent producer limit',
    text: edit(restoreConfig(), c => (c.restore = { produce_max_in_flight: 6 })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.produce_max_in_flight',
    message: /expected a number of at most 5, found 6/
  },
  {
    name: 'reset_consumer_offsets without consumer_groups',
    text: edit(restoreConfig(), c => (c.restore = { reset_consumer_offsets: true })),
    code: 'KB_CONFIG_INVALID',
    path: 'restore.consumer_groups',
    message: /restore\.consumer_groups: required key is missing \(expected at least one group/
  },
  {
    name: 'a regular expression where a * pattern belongs',
    text: edit(backupConfig(), c => (c.source.topics = { include: ['orders.+'] })),
    code: 'KB_CONFIG_INVALID',
    path: 'source.topics.include[0]',
    message: /expected a topic name or a pattern with \* wildcards/
  },
  {
    name: 'SASL without a password',
    text: edit(backupConfig(), c => delete c.source.security.sasl_password),
    code: 'KB_CONFIG_INVALID',
    path: 'source.security.sasl_password',
    message:
      /source\.security\.sasl_password: required key is missing \(expected a value because security_protocol is SASL_SSL\)/
  },
  {
    name: 'OAUTHBEARER without its token endpoint',
    text: edit(backupConfig(), c => {
      c.source.security = {
        security_protocol: 'SASL_SSL',
        sasl_mechanism: 'OAUTHBEARER',
        sasl_oauthbearer_client_id: 'backup',
        sasl_oauthbearer_client_secret: password
      }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'source.security.sasl_oauthbearer_token_endpoint_url',
    message:
      /sasl_oauthbearer_token_endpoint_url: required key is missing \(expected a value because security_protocol is SASL_SSL and sasl_mechanism is OAUTHBEARER\)/
  },
  {
    name: 'a SASL password with OAUTHBEARER',
    text: edit(backupConfig(), c => {
      c.source.security = {
        security_protocol: 'SASL_SSL',
        sasl_mechanism: 'OAUTHBEARER',
        sasl_password: password,
        sasl_oauthbearer_token_endpoint_url: 'https://auth.example/token',
        sasl_oauthbearer_client_id: 'backup',
        sasl_oauthbearer_client_secret: password
      }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'source.security.sasl_password',
    message: /sasl_password: not used with sasl_mechanism OAUTHBEARER/
  },
  {
    name: 'a TLS key for a PLAINTEXT connection',
    text: edit(backupConfig(), c => (c.source.security = { ssl_ca_location: '/ca.pem' })),
    code: 'KB_CONFIG_INVALID',
    path: 'source.security.ssl_ca_location',
    message: /ssl_ca_location: only used with security_protocol SSL or SASL_SSL \(found PLAINTEXT\)/
  },
  {
    name: 'azure with both a connection string and an account key',
    text: edit(restoreConfig(), c => {
      c.storage = {
        backend: 'azure',
        container: 'backups',
        connection_string: 'UseDevelopmentStorage=true',
        account_key: secretKey
      }
    }),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.account_key',
    message: /storage\.account_key: not allowed together with connection_string/
  },
  {
    name: 'max_bytes_in_flight below fetch.max.bytes says the default was in use',
    text: edit(backupConfig(), c => (c.source.kafka_config = { 'fetch.max.bytes': 104857600 })),
    code: 'KB_CONFIG_INVALID',
    path: 'backup.max_bytes_in_flight',
    message:
      /backup\.max_bytes_in_flight: expected at least source\.kafka_config\.fetch\.max\.bytes \(104857600\) .*, found 16777216 \(the default\)/
  },
  {
    name: 'a password of the wrong type is not echoed',
    text: edit(backupConfig(), c => (c.source.security.sasl_password = 987654321)),
    code: 'KB_CONFIG_INVALID',
    path: 'source.security.sasl_password',
    message: /sasl_password: expected a string, found an integer \(not shown: secret\)$/
  },
  {
    name: 'an empty secret_key says so without echoing anything',
    text: edit(restoreConfig(), c => (c.storage.secret_key = '')),
    code: 'KB_CONFIG_INVALID',
    path: 'storage.secret_key',
    message: /storage\.secret_key: expected a non-empty string, found a string \(not shown: secret\)/
  },
  {
    name: 'an unset environment variable names the variable and the key',
    text: `mode: backup\nbackup_id: daily\nsource:\n  bootstrap_servers: \${KAFKA_BROKERS}\n`,
    code: 'KB_CONFIG_ENV',
    path: 'source.bootstrap_servers',
    message: /^cfg\.yaml:4: source\.bootstrap_servers: environment variable KAFKA_BROKERS is not set/
  },
  {
    name: 'a malformed variable reference',
    text: `mode: backup\nbackup_id: daily\nsource:\n  security:\n    sasl_password: "${password}\${"\n`,
    code: 'KB_CONFIG_ENV',
    path: 'source.security.sasl_password',
    message: /malformed variable reference/
  },
  {
    name: 'an invalid --backup-id names the flag, not a line of the file',
    text: edit(backupConfig(), () => {}),
    overrides: { backup_id: 'a/b' },
    code: 'KB_CONFIG_INVALID',
    path: 'backup_id',
    message: /^cfg\.yaml: backup_id: expected a backup id .* found "a\/b" \(from --backup-id\)$/
  }
]

function failure(entry: Pick<Case, 'text' | 'env' | 'overrides'>): BackupError {
  try {
    parseConfig(entry.text, 'cfg.yaml', entry.env ?? {}, entry.overrides ?? {})
  } catch (error) {
    assert.ok(isBackupError(error), `not a BackupError: ${String(error)}`)
    return error
  }
  assert.fail('the config was accepted')
}

describe('malformed configs', () => {
  for (const entry of cases) {
    test(`${entry.name}: ${entry.code}${entry.path === undefined ? '' : ` at ${entry.path}`}`, () => {
      const error = failure(entry)
      assert.equal(error.code, entry.code, error.message)
      assert.match(error.message, entry.message)
      assert.equal(error.file, 'cfg.yaml')
      if (entry.path !== undefined) {
        assert.equal(error.path, entry.path, error.message)
        if (entry.path !== '(top level)') assert.ok(error.message.includes(entry.path), error.message)
      }
      assert.ok(!error.message.includes('\n'), 'the message is one line')
      const everything = `${error.message} ${JSON.stringify(error)}`
      assert.ok(!everything.includes(password), 'the SASL password leaked')
      assert.ok(!everything.includes(secretKey), 'the S3 secret key leaked')
    })
  }

  test('covers at least 20 malformed inputs', () => {
    assert.ok(cases.length >= 20)
  })

  test('reports the line of the offending key and counts the other problems', () => {
    const text = [
      'mode: backup',
      'backup_id: daily',
      'source:',
      '  bootstrap_servers: broker-1:9092',
      'storage:',
      '  backend: filesystem',
      '  path: /backups',
      'backup:',
      '  compression: zstd',
      '  segment_max_bytes: -10',
      '  checkpont_interval_secs: 5'
    ].join('\n')
    const error = failure({ text })
    assert.equal(
      error.message,
      'cfg.yaml:11: backup.checkpont_interval_secs: unknown key (did you mean backup.checkpoint_interval_secs?) (and 1 more problem)'
    )
    assert.equal(error.line, 11)
    assert.deepEqual(error.issues, [
      'cfg.yaml:11: backup.checkpont_interval_secs: unknown key (did you mean backup.checkpoint_interval_secs?)',
      'cfg.yaml:10: backup.segment_max_bytes: expected a number of at least 1, found -10'
    ])
  })

  test('context carries expected and found for tools reading --json output', () => {
    const error = failure({ text: edit(backupConfig(), c => (c.backup = { compression: 'brotli' })) })
    assert.equal(error.expected, 'one of zstd, lz4, gzip, none')
    assert.equal(error.found, '"brotli"')
  })
})
