import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { loadConfig } from '../../src/config/load.ts'

const examples = resolve(import.meta.dirname, '../../examples')

test('every example config in examples/ is valid', async () => {
  const files = readdirSync(examples).filter(name => name.endsWith('.yaml'))
  assert.ok(files.length >= 3)
  for (const name of files) {
    const config = await loadConfig(
      join(examples, name),
      {},
      {
        env: { KAFKA_BOOTSTRAP_SERVERS: '127.0.0.1:9092', KAFKA_BACKUP_PASSWORD: 'x' }
      }
    )
    assert.ok(config.backup_id, name)
  }
})
