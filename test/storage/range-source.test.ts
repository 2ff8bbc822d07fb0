import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import type { RangeSource as SegmentRangeSource } from '../../src/segment/reader.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'
import { openRangeSource } from '../../src/storage/range-source.ts'
import type { Storage } from '../../src/storage/storage.ts'

/** `inner` with some methods replaced (a plain delegate: the backends keep #private state). */
function wrap(inner: Storage, overrides: Partial<Storage>): Storage {
  return {
    location: inner.location,
    put: (key, body) => inner.put(key, body),
    create: (key, body) => inner.create(key, body),
    replace: (key, body) => inner.replace(key, body),
    get: key => inner.get(key),
    getRange: (key, offset, length) => inner.getRange(key, offset, length),
    stream: key => inner.stream(key),
    head: key => inner.head(key),
    list: prefix => inner.list(prefix),
    delete: key => inner.delete(key),
    close: () => inner.close(),
    ...overrides
  }
}

/**
 * The in-memory storage, with every getRange recorded and held until released, so a test can
 * see which reads are in flight while the reader is elsewhere.
 */
function gatedStorage(inner: Storage) {
  const started: string[] = []
  const gates: Array<() => void> = []
  let open = false
  const storage = wrap(inner, {
    getRange: async (key, offset, length) => {
      started.push(`${offset}+${length}`)
      if (!open) {
        await new Promise<void>(resolve => gates.push(resolve))
      }
      return inner.getRange(key, offset, length)
    }
  })
  return {
    storage,
    started,
    releaseAll() {
      for (const release of gates.splice(0)) {
        release()
      }
    },
    openGate() {
      open = true
      this.releaseAll()
    }
  }
}

const object = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
const frames = [0, 100, 200, 300, 400, 500, 600].map(offset => ({ offset, length: 100 }))

async function setup() {
  const memory = new MemoryStorage()
  await memory.put('topics/t/0/0.seg', object)
  return memory
}

describe('storage range source', () => {
  test('reads ranges of the object and knows its size from head', async () => {
    const source = await openRangeSource(await setup(), 'topics/t/0/0.seg')
    assert.equal(source.size, 1000)
    assert.deepEqual(await source.read(990, 10), object.subarray(990))
    assert.deepEqual(await source.read(0, 0), Buffer.alloc(0))
  })

  test('is the RangeSource the segment reader consumes', async () => {
    // Checked by tsc: the two interfaces are declared apart (segment/ imports nothing from
    // storage/) and must stay the same shape.
    const source: SegmentRangeSource = await openRangeSource(await setup(), 'topics/t/0/0.seg')
    assert.deepEqual(await source.read(0, 3), object.subarray(0, 3))
  })

  test('takes a known size without asking storage', async () => {
    const memory = await setup()
    let heads = 0
    const counting = wrap(memory, {
      head: async key => {
        heads++
        return memory.head(key)
      }
    })
    const source = await openRangeSource(counting, 'topics/t/0/0.seg', { size: 1000 })
    assert.equal(source.size, 1000)
    assert.equal(heads, 0)
  })

  test('a missing object is KB_STORAGE_NOT_FOUND naming the key', async () => {
    await assert.rejects(
      openRangeSource(await setup(), 'topics/t/0/missing.seg'),
      (error: unknown) => isBackupError(error, 'KB_STORAGE_NOT_FOUND') && error.message.includes('missing.seg')
    )
  })

  test('a read past the size is a KB_STORAGE error before any storage request', async () => {
    const gated = gatedStorage(await setup())
    const source = await openRangeSource(gated.storage, 'topics/t/0/0.seg')
    await assert.rejects(source.read(999, 2), (error: unknown) => isBackupError(error, 'KB_STORAGE'))
    assert.throws(
      () => source.prefetch([{ offset: 1000, length: 1 }]),
      (error: unknown) => isBackupError(error)
    )
    assert.deepEqual(gated.started, [])
  })

  test('prefetch keeps readAhead planned ranges in flight while the reader works', async () => {
    const gated = gatedStorage(await setup())
    const source = await openRangeSource(gated.storage, 'topics/t/0/0.seg', { readAhead: 2 })
    source.prefetch(frames)
    assert.deepEqual(gated.started, ['0+100', '100+100'], 'two fetched before any read')

    const first = source.read(0, 100)
    assert.deepEqual(gated.started, ['0+100', '100+100', '200+100'], 'reading one starts the next')
    gated.releaseAll()
    assert.deepEqual(await first, object.subarray(0, 100))

    gated.openGate()
    for (const { offset, length } of frames.slice(1)) {
      assert.deepEqual(await source.read(offset, length), object.subarray(offset, offset + length))
    }
    assert.equal(gated.started.length, frames.length, 'each planned range fetched exactly once')
    assert.equal(source.prefetchedCount, 0)
  })

  test('reads outside the plan go straight to storage and leave the plan alone', async () => {
    const gated = gatedStorage(await setup())
    gated.openGate()
    const source = await openRangeSource(gated.storage, 'topics/t/0/0.seg', { readAhead: 1 })
    source.prefetch(frames.slice(0, 3))
    assert.deepEqual(await source.read(980, 20), object.subarray(980))
    assert.deepEqual(gated.started, ['0+100', '980+20'])
    assert.equal(source.prefetchedCount, 1)
    assert.deepEqual(await source.read(0, 100), object.subarray(0, 100))
    assert.deepEqual(gated.started, ['0+100', '980+20', '100+100'])
  })

  test('planned ranges the reader skips free their slots', async () => {
    const gated = gatedStorage(await setup())
    gated.openGate()
    const source = await openRangeSource(gated.storage, 'topics/t/0/0.seg', { readAhead: 2 })
    source.prefetch(frames)
    // The window filter decided frames 0 to 2 are not needed after all.
    assert.deepEqual(await source.read(300, 100), object.subarray(300, 400))
    assert.deepEqual(gated.started, ['0+100', '100+100', '300+100', '400+100', '500+100'])
    assert.equal(source.prefetchedCount, 2)
  })

  test('a failed prefetch surfaces on the read of that range, and a dropped one stays silent', async () => {
    const memory = await setup()
    const failing = wrap(memory, {
      getRange: async (key, offset, length) => {
        if (offset === 100) {
          throw new Error('connection reset')
        }
        return memory.getRange(key, offset, length)
      }
    })
    const source = await openRangeSource(failing, 'topics/t/0/0.seg', { readAhead: 3 })
    source.prefetch(frames)
    assert.deepEqual(await source.read(0, 100), object.subarray(0, 100))
    await assert.rejects(source.read(100, 100), /connection reset/)

    source.prefetch(frames.slice(1))
    // A new plan drops the failed prefetch unread; an unhandled rejection would fail this file.
    source.prefetch([])
    assert.equal(source.prefetchedCount, 0)
    await new Promise(resolve => setImmediate(resolve))
  })

  test('readAhead 0 turns prefetch off', async () => {
    const gated = gatedStorage(await setup())
    gated.openGate()
    const source = await openRangeSource(gated.storage, 'topics/t/0/0.seg', { readAhead: 0 })
    source.prefetch(frames)
    assert.deepEqual(gated.started, [])
    assert.deepEqual(await source.read(0, 100), object.subarray(0, 100))
    assert.deepEqual(gated.started, ['0+100'])
  })
})
