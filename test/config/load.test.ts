import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  type ConfigWarning,
  loadConfig,
  parseConfig,
  redactConfig,
  storageFromLocation
} from '../../src/config/load.ts'
import type { BackupConfig, RestoreConfig } from '../../src/config/schema.ts'
import { isBackupError } from '../../src/errors.ts'
import { backupOptionsFromConfig } from '../../src/options.ts'

const fixtures = fileURLToPath(new URL('../fixtures/config/', import.meta.url))
const env = {
  KAFKA_PASSWORD: 'kafka-pass-1',
  S3_ACCESS_KEY: 'AKIAEXAMPLE',
  S3_SECRET_KEY: 's3-secret-1'
}

const minimalBackup = `
mode: backup
backup_id: daily
source:
  bootstrap_servers: localhost:9092
storage:
  backend: filesystem
  path: /var/backups/kafka
`

describe('loadConfig', () => {
  test('parses the full backup example to typed values with defaults filled', async () => {
    const warnings: ConfigWarning[] = []
    const config = await loadConfig(join(fixtures, 'backup.yaml'), {}, { env, onWarning: w => warnings.push(w) })
    const expected: BackupConfig = {
      mode: 'backup',
      backup_id: 'orders-nightly',
      source: {
        bootstrap_servers: ['kafka-0.kafka.svc:9092', 'kafka-1.kafka.svc:9092'],
        client_id: 'kafka-backup-orders',
        security: {
          security_protocol: 'SASL_SSL',
          sasl_mechanism: 'SCRAM-SHA-512',
          sasl_username: 'backup',
          sasl_password: 'kafka-pass-1',
          ssl_ca_location: join(fixtures, 'certs/ca.pem')
        },
        unreachable_timeout_secs: 300,
        topics: { include: ['orders', 'payments-*'], exclude: ['*-tmp'] },
        kafka_config: {
          'fetch.max.bytes': 104857600,
          'max.partition.fetch.bytes': 10485760,
          'fetch.min.bytes': 1048576,
          'fetch.max.wait.ms': 500,
          'socket.receive.buffer.bytes': 1048576
        }
      },
      storage: {
        backend: 's3',
        bucket: 'kafka-backups',
        region: 'eu-west-1',
        prefix: 'prod/orders',
        endpoint: 'http://minio.storage.svc:9000',
        access_key: 'AKIAEXAMPLE',
        secret_key: 's3-secret-1',
        force_path_style: true,
        multipart_threshold: 52428800,
        multipart_part_size: 10485760,
        max_concurrent_uploads: 20
      },
      backup: {
        compression: 'zstd',
        compression_level: 1,
        store_records: 'decompressed',
        segment_max_bytes: 134217728,
        segment_max_interval_ms: 60000,
        frame_max_bytes: 4194304,
        continuous: true,
        checkpoint_interval_secs: 60,
        batch_size: 100000,
        max_batch_bytes: 104857600,
        max_bytes_in_flight: 268435456,
        start_offset: 'earliest',
        include_internal_topics: false,
        max_concurrent_partitions: 64,
        rate_limit_bytes_per_sec: 0,
        workers: { enabled: false, session_timeout_ms: 10000, heartbeat_interval_ms: 3000 },
        metadata: []
      },
      metrics: { enabled: true, port: 9090, host: '0.0.0.0', keep_alive_seconds: 30 }
    }
    assert.deepEqual(config, expected)
    assert.deepEqual(
      warnings.map(w => w.path),
      ['backup.batch_size', 'source.kafka_config.socket.receive.buffer.bytes']
    )
  })

  test('parses the full restore example to typed values with defaults filled', async () => {
    const config = await loadConfig(join(fixtures, 'restore.yaml'), {}, { env: {} })
    const expected: RestoreConfig = {
      mode: 'restore',
      backup_id: 'orders-nightly',
      target: {
        bootstrap_servers: ['dr-kafka-0:9092', 'dr-kafka-1:9092'],
        client_id: 'kafka-restore',
        security: { security_protocol: 'PLAINTEXT' },
        unreachable_timeout_secs: 300,
        kafka_config: { 'socket.send.buffer.bytes': 1048576, 'batch.size': 1048576 }
      },
      storage: { backend: 'filesystem', path: join(fixtures, '../backups'), prefix: 'prod' },
      restore: {
        time_window_start: Date.parse('2024-05-01T00:00:00Z'),
        time_window_end: 1714607999999,
        topics: { include: ['orders', 'payments-*'], exclude: ['payments-audit'] },
        source_partitions: { orders: [0, 2] },
        topic_mapping: { orders: 'orders-restored', 'payments-eu': 'payments-eu-restored' },
        partition_mapping: { orders: { '0': 1, '1': 0 } },
        create_topics: true,
        default_replication_factor: 3,
        dry_run: false,
        max_concurrent_partitions: 8,
        rate_limit_bytes_per_sec: 104857600,
        reset_consumer_offsets: true,
        consumer_groups: ['order-processor', 'billing-*'],
        allow_non_empty_target: false,
        allow_log_append_time_target: false,
        checkpoint_interval_secs: 5,
        produce_max_in_flight: 5,
        repartition: { enabled: false, partitions: {} },
        workers: { enabled: false, session_timeout_ms: 10_000, heartbeat_interval_ms: 3000 },
        metadata: []
      },
      metrics: { enabled: true, port: 9464, host: '127.0.0.1', keep_alive_seconds: 0 }
    }
    assert.deepEqual(config, expected)
  })

  test('reports a missing file with KB_CONFIG_NOT_FOUND naming the file', async () => {
    const file = join(fixtures, 'no-such-config.yaml')
    await assert.rejects(loadConfig(file), error => {
      assert.ok(isBackupError(error, 'KB_CONFIG_NOT_FOUND'))
      assert.equal(error.file, file)
      assert.match(error.message, /no-such-config\.yaml does not exist/)
      return true
    })
  })

  test('reports a folder given as the config file with KB_CONFIG_NOT_FOUND', async () => {
    await assert.rejects(loadConfig(fixtures), error => {
      assert.ok(isBackupError(error, 'KB_CONFIG_NOT_FOUND'))
      assert.match(error.message, /is a folder, not a file/)
      return true
    })
  })

  test('reads a file written to disk and resolves its relative storage path against its folder', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'kb-config-'))
    try {
      const file = join(folder, 'backup.yaml')
      await writeFile(file, minimalBackup.replace('/var/backups/kafka', './data'))
      const config = await loadConfig(file, {}, { env: {} })
      assert.equal(config.storage.backend === 'filesystem' && config.storage.path, join(folder, 'data'))
    } finally {
      await rm(folder, { recursive: true })
    }
  })
})

describe('encryption keyring path', () => {
  test('a relative backup.encryption.keyring_file is resolved against the config file', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'kb-config-'))
    try {
      const file = join(folder, 'backup.yaml')
      await writeFile(file, `${minimalBackup}backup:\n  encryption:\n    keyring_file: keys/keyring\n`)
      const config = await loadConfig(file, {}, { env: {} })
      assert.equal(config.mode === 'backup' && config.backup.encryption?.keyring_file, join(folder, 'keys/keyring'))
    } finally {
      await rm(folder, { recursive: true })
    }
  })
})

describe('parseConfig', () => {
  test('fills every default of a minimal backup config', () => {
    const config = parseConfig(minimalBackup, 'backup.yaml', {})
    assert.equal(config.mode, 'backup')
    assert.deepEqual(config, {
      mode: 'backup',
      backup_id: 'daily',
      source: {
        bootstrap_servers: ['localhost:9092'],
        client_id: 'kafka-backup',
        security: { security_protocol: 'PLAINTEXT' },
        unreachable_timeout_secs: 300,
        topics: { include: ['*'], exclude: [] },
        kafka_config: {
          'fetch.max.bytes': 8388608,
          'max.partition.fetch.bytes': 2097152,
          'fetch.min.bytes': 1,
          'fetch.max.wait.ms': 500
        }
      },
      storage: { backend: 'filesystem', path: '/var/backups/kafka', prefix: '' },
      backup: {
        compression: 'zstd',
        compression_level: 3,
        store_records: 'decompressed',
        segment_max_bytes: 128 * 1024 * 1024,
        segment_max_interval_ms: 60000,
        frame_max_bytes: 4 * 1024 * 1024,
        continuous: false,
        checkpoint_interval_secs: 5,
        max_bytes_in_flight: 16 * 1024 * 1024,
        start_offset: 'earliest',
        include_internal_topics: false,
        rate_limit_bytes_per_sec: 0,
        workers: { enabled: false, session_timeout_ms: 10000, heartbeat_interval_ms: 3000 },
        metadata: []
      },
      metrics: { enabled: false, port: 9090, host: '0.0.0.0', keep_alive_seconds: 0 }
    })
  })

  test('fills every default of a minimal restore config', () => {
    const config = parseConfig(
      'mode: restore\nbackup_id: daily\ntarget: { bootstrap_servers: "localhost:9092" }\nstorage: { backend: memory }\n',
      'restore.yaml',
      {}
    )
    assert.ok(config.mode === 'restore')
    assert.deepEqual(config.restore, {
      topics: { include: ['*'], exclude: [] },
      topic_mapping: {},
      partition_mapping: {},
      create_topics: true,
      dry_run: false,
      max_concurrent_partitions: 128,
      rate_limit_bytes_per_sec: 0,
      reset_consumer_offsets: false,
      consumer_groups: [],
      allow_non_empty_target: false,
      allow_log_append_time_target: false,
      checkpoint_interval_secs: 5,
      produce_max_in_flight: 5,
      repartition: { enabled: false, partitions: {} },
      workers: { enabled: false, session_timeout_ms: 10_000, heartbeat_interval_ms: 3000 },
      metadata: []
    })
    assert.deepEqual(config.target.kafka_config, { 'batch.size': 512 * 1024 })
  })

  test('normalises a comma-separated bootstrap_servers string to a list', () => {
    const config = parseConfig(minimalBackup.replace('localhost:9092', '"a:9092, b:9093,[::1]:9094,"'), 'b.yaml', {})
    assert.ok(config.mode === 'backup')
    assert.deepEqual(config.source.bootstrap_servers, ['a:9092', 'b:9093', '[::1]:9094'])
  })

  test('normalises a source_partitions list to the "*" key that stands for every topic', () => {
    const config = parseConfig(
      'mode: restore\nbackup_id: d\ntarget: { bootstrap_servers: "k:9092" }\nstorage: { backend: memory }\nrestore: { source_partitions: [3, 1, 3] }\n',
      'r.yaml',
      {}
    )
    assert.ok(config.mode === 'restore')
    assert.deepEqual(config.restore.source_partitions, { '*': [1, 3] })
  })

  test('accepts zstd level 19 and gzip level 9, the top of each range', () => {
    for (const [codec, level] of [
      ['zstd', 19],
      ['gzip', 9]
    ] as const) {
      const config = parseConfig(
        `${minimalBackup}backup: { compression: ${codec}, compression_level: ${level} }\n`,
        'b.yaml',
        {}
      )
      assert.ok(config.mode === 'backup')
      assert.equal(config.backup.compression_level, level)
    }
  })

  test('ignores compression_level for lz4 with a warning instead of an error', () => {
    const warnings: ConfigWarning[] = []
    const config = parseConfig(
      `${minimalBackup}backup: { compression: lz4, compression_level: 99 }\n`,
      'b.yaml',
      {},
      {},
      {
        onWarning: w => warnings.push(w)
      }
    )
    assert.ok(config.mode === 'backup')
    assert.equal(config.backup.compression, 'lz4')
    assert.deepEqual(
      warnings.map(w => w.path),
      ['backup.compression_level']
    )
  })

  test("backup.retention.keep_within becomes the engine's retention in ms, and a duration in words is refused naming the key", () => {
    const config = parseConfig(`${minimalBackup}backup: { retention: { keep_within: 30d } }\n`, 'b.yaml', {})
    assert.ok(config.mode === 'backup')
    const options = backupOptionsFromConfig(config, { storage: undefined as never, cluster: undefined as never })
    assert.deepEqual(options.retention, { keepWithinMs: 30 * 86_400_000 })
    assert.throws(
      () => parseConfig(`${minimalBackup}backup: { retention: { keep_within: 30 days } }\n`, 'b.yaml', {}),
      error =>
        isBackupError(error, 'KB_CONFIG_INVALID') &&
        /backup\.retention\.keep_within/.test(error.message) &&
        /expected a positive duration such as 30d/.test(error.message)
    )
  })

  test('warns that target.kafka_config.linger.ms has no effect', () => {
    const warnings: ConfigWarning[] = []
    parseConfig(
      'mode: restore\nbackup_id: d\ntarget: { bootstrap_servers: "k:9092", kafka_config: { linger.ms: 100 } }\nstorage: { backend: memory }\n',
      'r.yaml',
      {},
      {},
      { onWarning: w => warnings.push(w) }
    )
    assert.deepEqual(
      warnings.map(w => w.path),
      ['target.kafka_config.linger.ms']
    )
  })
})

describe('CLI overrides', () => {
  test('backup_id, bootstrap_servers, topics and path replace the file values in backup mode', () => {
    const config = parseConfig(
      minimalBackup,
      '/etc/kb/backup.yaml',
      {},
      {
        backup_id: 'adhoc-1',
        bootstrap_servers: 'x:1,y:2',
        topics: 'orders,pay*',
        path: 'local-backups'
      },
      { cwd: '/home/op' }
    )
    assert.ok(config.mode === 'backup')
    assert.equal(config.backup_id, 'adhoc-1')
    assert.deepEqual(config.source.bootstrap_servers, ['x:1', 'y:2'])
    assert.deepEqual(config.source.topics.include, ['orders', 'pay*'])
    assert.deepEqual(config.storage, { backend: 'filesystem', path: '/home/op/local-backups', prefix: '' })
  })

  test('bootstrap_servers, topics and the time window go to target and restore in restore mode', () => {
    const config = parseConfig(
      'mode: restore\nbackup_id: d\ntarget: { bootstrap_servers: "k:9092" }\nstorage: { backend: filesystem, path: /b }\n',
      'r.yaml',
      {},
      {
        bootstrap_servers: ['dr:9092'],
        topics: ['orders'],
        time_window_start: '1714521600000',
        time_window_end: '2024-05-02T00:00:00Z',
        dry_run: true
      }
    )
    assert.ok(config.mode === 'restore')
    assert.deepEqual(config.target.bootstrap_servers, ['dr:9092'])
    assert.deepEqual(config.restore.topics.include, ['orders'])
    assert.equal(config.restore.time_window_start, 1714521600000)
    assert.equal(config.restore.time_window_end, 1714608000000)
    assert.equal(config.restore.dry_run, true)
  })

  test('an s3:// path keeps the file credentials of the same backend and sets bucket and prefix', () => {
    const text =
      'mode: backup\nbackup_id: d\nsource: { bootstrap_servers: "k:9092" }\nstorage: { backend: s3, bucket: old-bucket, region: eu-west-1, prefix: old }\n'
    const config = parseConfig(text, 'b.yaml', {}, { path: 's3://new-bucket/team/a/' })
    assert.deepEqual(config.storage, {
      backend: 's3',
      bucket: 'new-bucket',
      region: 'eu-west-1',
      prefix: 'team/a',
      force_path_style: false,
      multipart_threshold: 100 * 1024 * 1024,
      multipart_part_size: 10 * 1024 * 1024,
      max_concurrent_uploads: 10
    })
  })

  test('a service_account_json file is relative to the config file; a key given inline stays as written', () => {
    const head = 'mode: backup\nbackup_id: d\nsource: { bootstrap_servers: "k:9092" }\n'
    const fromFile = parseConfig(
      `${head}storage: { backend: gcs, bucket: bkt, service_account_json: keys/sa.json }\n`,
      '/etc/kb/b.yaml'
    )
    assert.ok(fromFile.storage.backend === 'gcs')
    assert.equal(fromFile.storage.service_account_json, '/etc/kb/keys/sa.json')
    const inline = parseConfig(
      `${head}storage:\n  backend: gcs\n  bucket: bkt\n  service_account_json: '{"type": "service_account"}'\n`,
      '/etc/kb/b.yaml'
    )
    assert.ok(inline.storage.backend === 'gcs')
    assert.equal(inline.storage.service_account_json, '{"type": "service_account"}')
  })

  test('S3 profile and session_token, Azure sas_token: accepted where they belong, refused with the key that conflicts', () => {
    const head = 'mode: backup\nbackup_id: d\nsource: { bootstrap_servers: "k:9092" }\n'
    const parse = (storage: string) => parseConfig(`${head}storage: ${storage}\n`, 'b.yaml')
    const s3 = parse('{ backend: s3, bucket: bkt, access_key: a, secret_key: s, session_token: t }')
    assert.ok(s3.storage.backend === 's3' && s3.storage.session_token === 't')
    const profile = parse('{ backend: s3, bucket: bkt, profile: backups }')
    assert.ok(profile.storage.backend === 's3' && profile.storage.profile === 'backups')
    const sas = parse('{ backend: azure, container: box, account_name: acct, sas_token: "sv=1&sig=x" }')
    assert.ok(sas.storage.backend === 'azure' && sas.storage.sas_token === 'sv=1&sig=x')
    for (const [storage, mention] of [
      ['{ backend: s3, bucket: bkt, session_token: t }', 'storage.session_token'],
      ['{ backend: s3, bucket: bkt, access_key: a, secret_key: s, profile: p }', 'storage.profile'],
      ['{ backend: azure, container: box, account_name: acct, account_key: k, sas_token: t }', 'storage.sas_token'],
      ['{ backend: azure, container: box, connection_string: c, sas_token: t }', 'storage.sas_token']
    ] as const) {
      assert.throws(
        () => parse(storage),
        (error: unknown) => isBackupError(error, 'KB_CONFIG_INVALID') && error.message.includes(mention),
        storage
      )
    }
  })

  test('storageFromLocation reads folders, s3://, az:// and gs:// locations', () => {
    assert.deepEqual(storageFromLocation('backups', '/srv'), { backend: 'filesystem', path: '/srv/backups' })
    assert.deepEqual(storageFromLocation('az://box/p'), { backend: 'azure', container: 'box', prefix: 'p' })
    assert.deepEqual(storageFromLocation('gs://bkt'), { backend: 'gcs', bucket: 'bkt', prefix: '' })
    assert.throws(
      () => storageFromLocation('ftp://host/x'),
      error => isBackupError(error, 'KB_CONFIG_INVALID')
    )
  })
})

describe('redactConfig', () => {
  test('replaces every secret with *** and leaves the rest and the original untouched', async () => {
    const config = await loadConfig(join(fixtures, 'backup.yaml'), {}, { env })
    const redacted = redactConfig(config)
    const printed = JSON.stringify(redacted)
    for (const secret of Object.values(env)) assert.ok(!printed.includes(secret), `${secret} is printed`)
    assert.ok(redacted.mode === 'backup' && redacted.storage.backend === 's3')
    assert.equal(redacted.source.security.sasl_password, '***')
    assert.equal(redacted.storage.secret_key, '***')
    assert.equal(redacted.storage.access_key, '***')
    assert.equal(redacted.source.security.sasl_username, 'backup')
    assert.ok(config.mode === 'backup')
    assert.equal(config.source.security.sasl_password, 'kafka-pass-1')
  })
})
