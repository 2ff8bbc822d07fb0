/** The erase list: its file format and matching, without a broker. */
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import { KeyEraser } from '../../src/restore/erase.ts'

function keysFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kb-erase-')), 'keys.txt')
  writeFileSync(file, text)
  return file
}

test('a keys file names text keys, base64 keys (binary, empty), skips comments and blank lines, drops a CR', async () => {
  const binary = Buffer.from([0xff, 0x00, 0x0a, 0x80])
  const eraser = (await KeyEraser.load({
    keysFile: keysFile(
      `# request 7\nalice\r\nbase64:${binary.toString('base64')}\n\nbase64:\nbase64:${Buffer.from('#tag').toString('base64')}\n`
    ),
    keys: ['bob'],
    patterns: ['user-?-*.eu']
  }))!
  for (const key of ['alice', 'bob', '', '#tag', 'user-1-x.eu', 'user-2-.eu']) {
    assert.ok(eraser.matches(Buffer.from(key)), key)
  }
  assert.ok(eraser.matches(binary))
  for (const key of ['alice ', 'ALICE', 'user-12-x.eu', 'user-1-x.eux', 'request 7', '# request 7']) {
    assert.ok(!eraser.matches(Buffer.from(key)), key)
  }
  assert.ok(!eraser.matches(null), 'a record without a key is never erased')
  assert.ok(!eraser.matches(Buffer.from([0xff, 0x00, 0x0a])))
})

test('patterns escape regular-expression characters: only * and ? are wildcards', async () => {
  const eraser = (await KeyEraser.load({ keys: [], patterns: ['a.b(c)+[d]'] }))!
  assert.ok(eraser.matches(Buffer.from('a.b(c)+[d]')))
  assert.ok(!eraser.matches(Buffer.from('axb(c)+[d]')))
  assert.ok(!eraser.matches(Buffer.from('a.bcc[d]')))
})

test('the fingerprint depends on what is erased, not on the order it is written in', () => {
  const a = new KeyEraser([Buffer.from('x'), Buffer.from('y')], ['p*'])
  const b = new KeyEraser([Buffer.from('y'), Buffer.from('x')], ['p*'])
  const c = new KeyEraser([Buffer.from('x')], ['p*'])
  assert.equal(a.fingerprint, b.fingerprint)
  assert.notEqual(a.fingerprint, c.fingerprint)
})

test('nothing named: no eraser; a missing file or bad base64 is refused naming the file and line', async () => {
  assert.equal(await KeyEraser.load({ keys: [], patterns: [] }), undefined)
  await assert.rejects(
    KeyEraser.load({ keysFile: '/nonexistent/keys.txt', keys: [], patterns: [] }),
    error => isBackupError(error, 'KB_CONFIG_INVALID') && error.message.includes('/nonexistent/keys.txt cannot be read')
  )
  await assert.rejects(
    KeyEraser.load({ keysFile: keysFile('ok\nbase64:abc\n'), keys: [], patterns: [] }),
    error => isBackupError(error, 'KB_CONFIG_INVALID') && /keys\.txt line 2: expected base64/.test(error.message)
  )
})
