import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { describe, test } from 'node:test'
import { renderConfigReference } from '../../src/config/reference.ts'
import { allKeyPaths } from '../../src/config/schema-paths.ts'

describe('config reference', () => {
  test('docs/config.md is up to date with the schema (run node scripts/config-reference.ts)', async () => {
    const committed = await readFile(new URL('../../docs/config.md', import.meta.url), 'utf8')
    assert.equal(committed, renderConfigReference())
  })

  test('every key of the schema has a description', () => {
    const undescribed = allKeyPaths()
      .filter(entry => !entry.node.description)
      .map(entry => entry.path.join('.'))
    assert.deepEqual(undescribed, [])
  })

  test('every key of the schema has a row in the reference', () => {
    const reference = renderConfigReference()
    const missing = allKeyPaths()
      .map(entry => entry.path.join('.'))
      .filter(path => !reference.includes(`| \`${path}\` `))
    assert.deepEqual(missing, [])
  })

  test('documents the keys named in issues 4, 5, 6 and 8 and the seed', () => {
    const reference = renderConfigReference()
    for (const key of [
      'source.kafka_config.fetch.max.bytes',
      'source.kafka_config.socket.receive.buffer.bytes',
      'target.kafka_config.linger.ms',
      'storage.multipart_threshold',
      'storage.max_concurrent_uploads',
      'storage.connection_string',
      'storage.service_account_json',
      'backup.batch_size',
      'backup.max_batch_bytes',
      'backup.max_bytes_in_flight',
      'restore.source_partitions',
      'restore.rate_limit_bytes_per_sec',
      'restore.allow_non_empty_target',
      'metrics.keep_alive_seconds'
    ]) {
      assert.ok(reference.includes(`| \`${key}\` `), key)
    }
  })
})
