import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryStorage } from '../../src/storage/memory.ts'
import { storageContract } from './contract.ts'

storageContract('memory', async () => ({ storage: new MemoryStorage({ name: 'contract' }), cleanup: async () => {} }))

test('memory storage names itself memory://<name> in messages', async () => {
  const storage = new MemoryStorage({ name: 'dry-run' })
  assert.equal(storage.location, 'memory://dry-run')
  await assert.rejects(storage.get('x'), /no object x at memory:\/\/dry-run/)
})

test('memory storage instances do not share objects', async () => {
  const first = new MemoryStorage()
  const second = new MemoryStorage()
  await first.put('k', Buffer.from('v'))
  assert.equal(await second.head('k'), undefined)
})
