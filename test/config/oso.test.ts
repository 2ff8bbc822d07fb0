import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type ConfigWarning, loadConfig, parseConfig } from '../../src/config/load.ts'
import { isBackupError } from '../../src/errors.ts'

const fixtures = fileURLToPath(new URL('../fixtures/config/oso/', import.meta.url))
const env = {
  BACKUP_ID: 'oso-nightly',
  KAFKA_BOOTSTRAP_SERVERS: '127.0.0.1:9092',
  BACKUP_PATH: '/var/backups/kafka',
  KAFKA_PASSWORD: 'kafka-pass-1',
  AZURE_KEY: 'azure-key-1'
}

async function load(name: string) {
  const warnings: ConfigWarning[] = []
  const config = await loadConfig(`${fixtures}${name}`, {}, { env, onWarning: warning => warnings.push(warning) })
  return { config, warnings: warnings.map(warning => warning.path) }
}

const restoreBase = `mode: restore
backup_id: b
target:
  bootstrap_servers: localhost:9092
storage:
  backend: filesystem
  path: /backups
`
const backupBase = `mode: backup
backup_id: b
source:
  bootstrap_servers: localhost:9092
storage:
  backend: filesystem
  path: /backups
`

function refusal(yaml: string): string {
  try {
    parseConfig(yaml, 'oso.yaml', {})
  } catch (error) {
    assert.ok(isBackupError(error))
    assert.equal(error.code, 'KB_CONFIG_INVALID')
    return error.message
  }
  assert.fail('the config was accepted')
}

describe('configs in OSO kafka-backup layout', () => {
  test('the OSO backup layout loads: aliases honoured, one warning per key without effect', async () => {
    const { config, warnings } = await load('backup.yaml')
    assert.equal(config.mode, 'backup')
    if (config.mode !== 'backup') return
    assert.equal(config.source.kafka_config['fetch.max.bytes'], 16777216)
    assert.equal(config.backup.include_internal_topics, false)
    assert.equal(config.backup.continuous, false)
    assert.deepEqual([config.metrics.host, config.metrics.port], ['127.0.0.1', 9464])
    assert.deepEqual(warnings.sort(), [
      'backup.batch_size',
      'backup.consumer_group_snapshot',
      'backup.include_offset_headers',
      'backup.poll_interval_ms',
      'backup.segment_max_records',
      'backup.source_cluster_id',
      'backup.sync_interval_secs',
      'logging',
      'metrics.max_partition_labels',
      'metrics.update_interval_ms',
      'offset_storage',
      'source.connection',
      'source.kafka_config.socket.receive.buffer.bytes'
    ])
  })

  test('the OSO restore layout loads: target.topics, flat partition_mapping, keys that match what restore does', async () => {
    const { config, warnings } = await load('restore.yaml')
    assert.equal(config.mode, 'restore')
    if (config.mode !== 'restore') return
    assert.deepEqual(config.restore.topics, { include: ['orders'], exclude: [] })
    assert.deepEqual(config.restore.partition_mapping, { '*': { '0': 1, '1': 0 } })
    assert.deepEqual(config.restore.topic_mapping, { orders: 'orders-restored' })
    assert.equal(config.restore.reset_consumer_offsets, false)
    assert.equal(config.metrics.host, '0.0.0.0')
    assert.equal(config.restore.checkpoint_interval_secs, 10)
    assert.deepEqual(warnings.sort(), [
      'restore.checkpoint_state',
      'restore.offset_report',
      'restore.produce_batch_size',
      'restore.produce_timeout_ms',
      'target.connection',
      'target.kafka_config.linger.ms',
      'target.kafka_config.socket.send.buffer.bytes'
    ])
  })

  test('OSO storage aliases: path_style on S3, container_name on Azure; an empty topic_mapping', async () => {
    const s3 = await load('s3-backup.yaml')
    assert.equal(s3.config.storage.backend, 's3')
    assert.equal(s3.config.storage.backend === 's3' && s3.config.storage.force_path_style, true)
    assert.deepEqual(s3.warnings, ['storage.allow_http'])
    const azure = await load('azure-restore.yaml')
    assert.equal(azure.config.storage.backend === 'azure' && azure.config.storage.container, 'kafka-backups')
    assert.equal(azure.config.mode, 'restore')
    if (azure.config.mode !== 'restore') return
    assert.deepEqual(azure.config.restore.topic_mapping, {})
    assert.equal(azure.config.restore.reset_consumer_offsets, true, 'auto_consumer_groups: true')
    assert.deepEqual(azure.config.restore.consumer_groups, ['*'])
  })

  test('OSO values that ask for something restore does another way are accepted with one warning that says how', () => {
    const warningsOf = (yaml: string) => {
      const warnings: ConfigWarning[] = []
      parseConfig(yaml, 'oso.yaml', {}, {}, { onWarning: warning => warnings.push(warning) })
      return warnings.map(warning => warning.message)
    }
    assert.deepEqual(warningsOf(`${restoreBase}restore:\n  consumer_group_strategy: header-based\n`), [
      'restore.consumer_group_strategy has no effect: offsets are translated exactly from produce acknowledgements; they are committed when restore.reset_consumer_offsets is true, or later with kafka-backup offsets'
    ])
    assert.deepEqual(warningsOf(`${restoreBase}restore:\n  produce_acks: 1\n`), [
      'restore.produce_acks has no effect: restore always produces with acks=all, because its idempotent producer and exact offset translation need it'
    ])
    assert.deepEqual(warningsOf(`${restoreBase}restore:\n  produce_acks: all\n  consumer_group_strategy: skip\n`), [])
    assert.match(
      warningsOf(`${backupBase}backup:\n  stop_at_current_offsets: false\n`).join('\n'),
      /^backup\.stop_at_current_offsets: false has no effect in a one-shot backup/
    )
  })

  test('OSO repartitioning enabled turns on restore.repartition; disabled or empty changes nothing', () => {
    for (const value of ['\n    enabled: true', ' true']) {
      const config = parseConfig(`${restoreBase}restore:\n  repartitioning:${value}\n`, 'oso.yaml', {})
      assert.ok(config.mode === 'restore' && config.restore.repartition.enabled, value)
    }
    for (const value of ['\n    enabled: false', ' false', ' {}']) {
      const config = parseConfig(`${restoreBase}restore:\n  repartitioning:${value}\n`, 'oso.yaml', {})
      assert.ok(config.mode === 'restore' && !config.restore.repartition.enabled, value)
    }
  })

  test('OSO keys that would change the restored data are refused with what to do instead', () => {
    assert.match(
      refusal(`${restoreBase}restore:\n  include_original_offset_header: true\n`),
      /^oso\.yaml:\d+: restore\.include_original_offset_header: kafka-backup does not add headers/
    )
    assert.match(
      refusal(`${restoreBase}restore:\n  rate_limit_records_per_sec: 1000\n`),
      /restore\.rate_limit_records_per_sec: .*set restore\.rate_limit_bytes_per_sec instead/
    )
    assert.match(
      refusal(`${restoreBase}restore:\n  repartitioning:\n    enabled: true\n    strategy: round_robin\n`),
      /restore\.repartitioning: only enabled is understood here, found strategy/
    )
    assert.match(
      refusal(`${restoreBase}restore:\n  purge_topics: true\n`),
      /restore\.purge_topics: kafka-backup never deletes records on the target/
    )
    assert.match(
      refusal(
        `${restoreBase}restore:\n  consumer_group_strategy: skip\n  reset_consumer_offsets: true\n  consumer_groups: [g]\n`
      ),
      /restore\.consumer_group_strategy: skip asks to commit no offsets/
    )
    assert.match(
      refusal(`${backupBase}backup:\n  continuous: true\n  stop_at_current_offsets: true\n`),
      /backup\.stop_at_current_offsets: true asks to stop/
    )
    assert.match(refusal(`${backupBase}metrics:\n  path: /prom\n`), /metrics\.path: metrics are served on \/metrics/)
  })

  test('an OSO alias and our key with different values are refused; equal values are fine', () => {
    assert.match(
      refusal(
        `${restoreBase.replace('  path: /backups\n', '  path: /backups\n')}metrics:\n  bind_address: 127.0.0.1\n  host: 0.0.0.0\n`
      ),
      /metrics\.bind_address: sets the same thing as metrics\.host/
    )
    for (const [bind, host, port] of [
      ['"[::1]:9464"', '::1', 9464],
      ['"::"', '::', 9090],
      ['10.0.0.5:8080', '10.0.0.5', 8080]
    ] as const) {
      const metrics = parseConfig(`${backupBase}metrics:\n  bind_address: ${bind}\n`, 'oso.yaml', {}).metrics
      assert.deepEqual([metrics.host, metrics.port], [host, port], bind)
    }
    const config = parseConfig(
      `${backupBase}backup:\n  internal_topics: true\n  include_internal_topics: true\n`,
      'oso.yaml',
      {}
    )
    assert.equal(config.mode === 'backup' && config.backup.include_internal_topics, true)
  })

  test('Kerberos keys are refused: GSSAPI is not supported', () => {
    for (const key of ['sasl_kerberos_service_name', 'sasl_keytab_path', 'sasl_krb5_config_path']) {
      assert.match(
        refusal(
          `${backupBase.replace('  bootstrap_servers: localhost:9092\n', `  bootstrap_servers: localhost:9092\n  security:\n    ${key}: kafka\n`)}`
        ),
        new RegExp(`^oso\\.yaml:\\d+: source\\.security\\.${key}: Kerberos \\(GSSAPI\\) is not supported`)
      )
    }
  })
})
