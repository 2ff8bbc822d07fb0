import assert from 'node:assert/strict'
import { test } from 'node:test'
import { z } from 'zod'
import { type DocumentKind, readDocument } from '../../src/catalog/document.ts'
import { isBackupError } from '../../src/errors.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'

// Its own schema object: readDocument checks a schema's first documents without compiling zod's
// parser for it and later ones compiled, so both ways are exercised from the first read.
const kind: DocumentKind<{ format: string; formatVersion: number; nextOffset: string }> = {
  name: 'test document',
  format: 'kafka-backup-test',
  formatVersion: 1,
  schema: z.object({
    format: z.string(),
    formatVersion: z.int(),
    nextOffset: z.string().regex(/^\d+$/)
  })
}

test('documents read the same, and damage is found, before and after zod compiles the schema', async () => {
  const storage = new MemoryStorage()
  const good = { format: 'kafka-backup-test', formatVersion: 1, nextOffset: '42' }
  await storage.put('good.json', Buffer.from(JSON.stringify(good)))
  await storage.put('bad.json', Buffer.from(JSON.stringify({ ...good, nextOffset: '-1' })))
  for (let read = 0; read < 40; read++) {
    assert.deepEqual(await readDocument(storage, 'good.json', kind), good, `read ${read}`)
    await assert.rejects(
      readDocument(storage, 'bad.json', kind),
      (error: unknown) =>
        isBackupError(error, 'KB_BACKUP_CORRUPT') &&
        /test document .*bad\.json: nextOffset/.test((error as Error).message),
      `read ${read}`
    )
  }
})
