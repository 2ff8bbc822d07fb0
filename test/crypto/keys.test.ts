import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadKeyring, parseKeyring } from '../../src/crypto/keys.ts'
import { isBackupError } from '../../src/errors.ts'

const hexKey = randomBytes(32).toString('hex')
const base64Key = randomBytes(32).toString('base64')

function isKeyringInvalid(field: string, ...secrets: string[]) {
  return (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_KEYRING_INVALID'), String(error))
    assert.ok(error.message.includes('keyring file /k'), error.message)
    assert.ok(String(error.field).startsWith(field), `field ${String(error.field)}`)
    for (const secret of secrets) {
      assert.ok(!JSON.stringify({ ...error, message: error.message }).includes(secret), 'no key material')
    }
    return true
  }
}

test('a keyring takes hex and base64 keys, ignores comments, and the last key is the active one', async () => {
  const keys = parseKeyring(
    `# rotated monthly\n2026-10 ${hexKey}\n\n2026-11 ${base64Key}  # current\n`,
    'keyring file /k'
  )
  assert.equal(keys.activeKeyId, '2026-11')
  const dataKey = randomBytes(32)
  for (const id of ['2026-10', '2026-11']) {
    const context = Buffer.from(`orders/3/${id}`)
    const wrapped = await keys.wrap(id, dataKey, context)
    assert.equal(wrapped.length, 60)
    assert.deepEqual(await keys.unwrap(id, wrapped, context, 'segment s'), dataKey)
    await assert.rejects(keys.unwrap(id, wrapped, Buffer.from('orders/4'), 'segment s'), (error: unknown) => {
      assert.ok(isBackupError(error, 'KB_DECRYPT_FAILED'))
      assert.ok(error.message.includes(`key ${id}`) && error.message.includes('segment s'), error.message)
      return true
    })
  }
})

test('a bad keyring line is refused naming the file, the line and the field, never the key', () => {
  assert.throws(
    () => parseKeyring(`k1 ${hexKey.slice(2)}\n`, 'keyring file /k'),
    isKeyringInvalid('line 1 key', hexKey.slice(2))
  )
  assert.throws(
    () => parseKeyring(`k1 ${hexKey}\nk1 ${base64Key}\n`, 'keyring file /k'),
    isKeyringInvalid('line 2 key id', hexKey, base64Key)
  )
  assert.throws(() => parseKeyring(`k/1 ${hexKey}\n`, 'keyring file /k'), isKeyringInvalid('line 1 key id', hexKey))
  assert.throws(() => parseKeyring(`k1 ${hexKey} extra\n`, 'keyring file /k'), isKeyringInvalid('line 1', hexKey))
  assert.throws(() => parseKeyring('# nothing here\n', 'keyring file /k'), isKeyringInvalid('keys'))
})

test('a keyring loads from a file (warning when others may read it) or from an environment variable', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kb-keyring-'))
  const file = join(dir, 'keyring')
  await writeFile(file, `k1 ${hexKey}\n`)
  await chmod(file, 0o644)
  const warnings: string[] = []
  const keys = await loadKeyring({ keyring_file: file }, message => warnings.push(message))
  assert.equal(keys.activeKeyId, 'k1')
  assert.equal(keys.description, `keyring file ${file}`)
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /can be read by other users \(mode 644\)/)
  await chmod(file, 0o600)
  warnings.length = 0
  await loadKeyring({ keyring_file: file }, message => warnings.push(message))
  assert.deepEqual(warnings, [])

  await assert.rejects(loadKeyring({ keyring_file: join(dir, 'missing') }), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_KEYRING_INVALID'))
    assert.match(error.message, /keyring file .*missing: cannot be read \(ENOENT\)/)
    return true
  })

  process.env.KB_TEST_KEYRING = `env-key ${base64Key}`
  assert.equal((await loadKeyring({ keyring_env: 'KB_TEST_KEYRING' })).activeKeyId, 'env-key')
  delete process.env.KB_TEST_KEYRING
  await assert.rejects(loadKeyring({ keyring_env: 'KB_TEST_KEYRING' }), (error: unknown) => {
    assert.ok(isBackupError(error, 'KB_KEYRING_INVALID'))
    assert.equal(error.message, 'keyring in environment variable KB_TEST_KEYRING: the variable is unset or empty')
    return true
  })
})
