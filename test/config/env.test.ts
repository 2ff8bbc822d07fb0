// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are config text that holds ${VAR} references
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { substituteEnv } from '../../src/config/env.ts'
import { parseConfig } from '../../src/config/load.ts'
import { isBackupError } from '../../src/errors.ts'

describe('substituteEnv', () => {
  const env = { HOST: 'broker-1', PORT: '9092', EMPTY: '' }

  test('replaces ${NAME} with the variable, several times in one value', () => {
    assert.deepEqual(substituteEnv('${HOST}:${PORT}', env), { ok: true, value: 'broker-1:9092', substituted: true })
  })

  test('uses the default of ${NAME:-default} when the variable is unset or empty', () => {
    assert.deepEqual(substituteEnv('${MISSING:-localhost}', env), { ok: true, value: 'localhost', substituted: true })
    assert.deepEqual(substituteEnv('${EMPTY:-fallback}', env), { ok: true, value: 'fallback', substituted: true })
    assert.deepEqual(substituteEnv('${HOST:-ignored}', env), { ok: true, value: 'broker-1', substituted: true })
    assert.deepEqual(substituteEnv('${MISSING:-}', env), { ok: true, value: '', substituted: true })
  })

  test('keeps a set but empty variable without a default as the empty string', () => {
    assert.deepEqual(substituteEnv('x${EMPTY}y', env), { ok: true, value: 'xy', substituted: true })
  })

  test('writes $${ as a literal ${ and substitutes nothing in it', () => {
    assert.deepEqual(substituteEnv('pa$${HOST}ss', env), { ok: true, value: 'pa${HOST}ss', substituted: false })
  })

  test('leaves text without references, and lone dollars, untouched', () => {
    assert.deepEqual(substituteEnv('cost $5 {x}', env), { ok: true, value: 'cost $5 {x}', substituted: false })
  })

  test('reports an unset variable by name', () => {
    assert.deepEqual(substituteEnv('${HOST}:${NOPE}', env), { ok: false, problem: 'unset', variable: 'NOPE' })
  })

  test('reports unterminated and invalid references as malformed', () => {
    for (const text of ['${HOST', '${1ABC}', '${}', '${A B}']) {
      assert.deepEqual(substituteEnv(text, env), { ok: false, problem: 'malformed' }, text)
    }
  })
})

describe('${VAR} in config files', () => {
  const base = (lines: string): string =>
    `mode: backup\nbackup_id: daily\nsource:\n  bootstrap_servers: \${BROKERS:-localhost:9092}\n${lines}storage:\n  backend: filesystem\n  path: /b\n`

  test('types a substituted number or boolean where the key takes one, quoted or not', () => {
    const config = parseConfig(
      `${base('')}metrics:\n  enabled: \${METRICS}\n  port: "\${PORT}"\n  keep_alive_seconds: \${KEEP:-2.5}\n`,
      'b.yaml',
      { METRICS: 'true', PORT: '9464' }
    )
    assert.deepEqual(config.metrics, { enabled: true, port: 9464, host: '0.0.0.0', keep_alive_seconds: 2.5 })
  })

  test('keeps a password of digits as text', () => {
    const config = parseConfig(
      base(
        '  security:\n    security_protocol: SASL_PLAINTEXT\n    sasl_mechanism: PLAIN\n    sasl_username: u\n    sasl_password: ${PW}\n'
      ),
      'b.yaml',
      { PW: '12345' }
    )
    assert.ok(config.mode === 'backup')
    assert.equal(config.source.security.sasl_password, '12345')
  })

  test('a value with YAML syntax in it stays one string and cannot add keys', () => {
    const tricky = 'p#ss: word\n  extra: 1'
    const config = parseConfig(
      base(
        '  security:\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: u\n    sasl_password: ${PW}\n'
      ),
      'b.yaml',
      { PW: tricky }
    )
    assert.ok(config.mode === 'backup')
    assert.equal(config.source.security.sasl_password, tricky)
  })

  test('substitutes a comma-separated list into a list key', () => {
    const config = parseConfig(base('  topics:\n    include: ${TOPICS}\n'), 'b.yaml', { TOPICS: 'orders, payments-*' })
    assert.ok(config.mode === 'backup')
    assert.deepEqual(config.source.topics.include, ['orders', 'payments-*'])
  })

  test('the default applies when the variable is unset, the variable wins when set', () => {
    const unset = parseConfig(base(''), 'b.yaml', {})
    const set = parseConfig(base(''), 'b.yaml', { BROKERS: 'k1:1,k2:2' })
    assert.ok(unset.mode === 'backup' && set.mode === 'backup')
    assert.deepEqual(unset.source.bootstrap_servers, ['localhost:9092'])
    assert.deepEqual(set.source.bootstrap_servers, ['k1:1', 'k2:2'])
  })

  test('$${ in a value gives a literal ${ in the config', () => {
    const config = parseConfig(base('  client_id: "kb-$${NOT_A_VAR}"\n'), 'b.yaml', {})
    assert.ok(config.mode === 'backup')
    assert.equal(config.source.client_id, 'kb-${NOT_A_VAR}')
  })

  test('keys are never substituted: ${X} as a key is an unknown key', () => {
    assert.throws(
      () => parseConfig(base('  ${X}: 1\n'), 'b.yaml', { X: 'client_id' }),
      error => isBackupError(error, 'KB_CONFIG_INVALID') && error.path === 'source.${X}'
    )
  })

  test('a variable that is substituted but still invalid is reported as the value it became', () => {
    assert.throws(
      () => parseConfig(`${base('')}metrics:\n  port: \${PORT}\n`, 'b.yaml', { PORT: 'ninety' }),
      error =>
        isBackupError(error, 'KB_CONFIG_INVALID') &&
        error.message === 'b.yaml:9: metrics.port: expected an integer, found "ninety"'
    )
  })
})
