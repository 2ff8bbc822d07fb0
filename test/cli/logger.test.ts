import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import { createLogger } from '../../src/cli/logger.ts'

const load = createRequire(import.meta.url)
const pinoLoaded = () => Object.hasOwn(load.cache, load.resolve('pino'))

/** What `write` sends to stderr, and nothing of it to the terminal. */
function stderrOf(write: () => void): string {
  const original = process.stderr.write
  let written = ''
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written += chunk.toString()
    return true
  }) as typeof process.stderr.write
  try {
    write()
  } finally {
    process.stderr.write = original
  }
  return written
}

// In this order: the first test needs a process that has not loaded pino yet.
test('a logger loads no pino and writes nothing until a line reaches its level', () => {
  const log = createLogger('warn', true)
  assert.equal(
    stderrOf(() => {
      log.debug('not shown')
      log.info({ key: 'x' }, 'not shown either')
    }),
    ''
  )
  assert.equal(pinoLoaded(), false, 'pino is not loaded by lines below the level')
})

test('the first line at its level loads pino and is written, with its context', () => {
  const log = createLogger('warn', true)
  const written = stderrOf(() => {
    log.warn({ key: 'backup.batch_size' }, 'has no effect')
    log.error('stopped')
  })
  assert.equal(written, 'warn  has no effect  key=backup.batch_size\nerror stopped\n')
  assert.equal(pinoLoaded(), true)
})
