/**
 * The storage contract every backend must pass (filesystem, in-memory, and later S3, Azure and
 * GCS): call storageContract() from the backend's test file. It relies only on the Storage
 * interface, never on how a backend stores objects.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import type { Storage } from '../../src/storage/storage.ts'

export interface StorageUnderTest {
  storage: Storage
  cleanup(): Promise<void>
}

const MiB = 1024 * 1024

/**
 * A pseudo-random pattern whose length (a prime) shares no factor with the 5 MiB part size, so a
 * range served from the wrong offset or part never matches by accident.
 */
const patternLength = 65_521
const pattern = Buffer.alloc(patternLength)
{
  let state = 0x2545f491
  for (let i = 0; i < patternLength; i++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    pattern[i] = state & 0xff
  }
}

/** The bytes [offset, offset + length) of the endless pattern. */
function patternBytes(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length)
  let written = 0
  while (written < length) {
    const at = (offset + written) % patternLength
    written += pattern.copy(out, written, at, Math.min(patternLength, at + length - written))
  }
  return out
}

/** Streams `size` bytes of the pattern in chunks of an odd size, computed as they are pulled. */
function patternStream(size: number, chunkSize = MiB + 7): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < size; offset += chunkSize) {
        yield patternBytes(offset, Math.min(chunkSize, size - offset))
      }
    })(),
    { objectMode: false }
  )
}

/** A stream that yields `chunks` then fails, like a segment writer that crashes midway. */
function failingStream(chunks: Buffer[], message: string): Readable {
  return Readable.from(
    (async function* () {
      for (const chunk of chunks) {
        yield chunk
        await new Promise(resolve => setImmediate(resolve))
      }
      throw new Error(message)
    })(),
    { objectMode: false }
  )
}

function sha256(...buffers: Buffer[]): string {
  const hash = createHash('sha256')
  for (const buffer of buffers) {
    hash.update(buffer)
  }
  return hash.digest('hex')
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function isCode(code: 'KB_STORAGE' | 'KB_STORAGE_NOT_FOUND' | 'KB_STORAGE_EXISTS', ...mustMention: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isBackupError(error, code), `expected ${code}, got ${String(error)}`)
    for (const text of mustMention) {
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`)
    }
    return true
  }
}

export function storageContract(name: string, create: () => Promise<StorageUnderTest>): void {
  describe(`storage contract: ${name}`, () => {
    let storage: Storage
    let cleanup: () => Promise<void>
    let run = 0
    /** A fresh key space per test, so tests never see each other's objects. */
    const space = () => `contract-${++run}`

    before(async () => {
      ;({ storage, cleanup } = await create())
    })

    after(async () => {
      await storage.close()
      await cleanup()
    })

    test('has a location to name in messages', () => {
      assert.equal(typeof storage.location, 'string')
      assert.notEqual(storage.location, '')
    })

    test('put of a Buffer then get, head and stream return the same bytes', async () => {
      const key = `${space()}/a/b/object.seg`
      const body = patternBytes(3, 100_000)
      await storage.put(key, body)
      assert.deepEqual(await storage.get(key), body)
      assert.deepEqual(await storage.head(key), { key, size: body.length })
      assert.deepEqual(await readAll(await storage.stream(key)), body)
    })

    test('put of a stream stores every chunk in order', async () => {
      const key = `${space()}/streamed.seg`
      await storage.put(key, patternStream(300_001, 4096 + 1))
      assert.deepEqual(await storage.get(key), patternBytes(0, 300_001))
    })

    test('a Buffer changed after put does not change the stored object', async () => {
      const key = `${space()}/copied`
      const body = Buffer.from('original')
      await storage.put(key, body)
      body.fill(0)
      assert.equal((await storage.get(key)).toString(), 'original')
    })

    test('put over an existing key replaces the whole object', async () => {
      const key = `${space()}/overwritten`
      await storage.put(key, patternBytes(0, 50_000))
      await storage.put(key, Buffer.from('short'))
      assert.equal((await storage.get(key)).toString(), 'short')
      assert.equal((await storage.head(key))?.size, 5)
    })

    test('getRange returns exactly the requested bytes at the start, middle and end', async () => {
      const key = `${space()}/ranged`
      const body = patternBytes(11, 10_000)
      await storage.put(key, body)
      assert.deepEqual(await storage.getRange(key, 0, 1), body.subarray(0, 1))
      assert.deepEqual(await storage.getRange(key, 1234, 4321), body.subarray(1234, 1234 + 4321))
      assert.deepEqual(await storage.getRange(key, 9_990, 10), body.subarray(9_990))
      assert.deepEqual(await storage.getRange(key, 0, 10_000), body)
      assert.equal((await storage.getRange(key, 5_000, 0)).length, 0)
      assert.equal((await storage.getRange(key, 10_000, 0)).length, 0)
    })

    test('getRange past the end of the object is a KB_STORAGE error naming the key', async () => {
      const key = `${space()}/short`
      await storage.put(key, Buffer.alloc(100, 1))
      await assert.rejects(storage.getRange(key, 90, 11), isCode('KB_STORAGE', key))
      await assert.rejects(storage.getRange(key, 100, 1), isCode('KB_STORAGE', key))
      await assert.rejects(storage.getRange(key, 5_000, 10), isCode('KB_STORAGE', key))
    })

    test('getRange with a negative or fractional offset or length is a KB_STORAGE error', async () => {
      const key = `${space()}/short`
      await storage.put(key, Buffer.alloc(100, 1))
      await assert.rejects(storage.getRange(key, -1, 10), isCode('KB_STORAGE'))
      await assert.rejects(storage.getRange(key, 0, -1), isCode('KB_STORAGE'))
      await assert.rejects(storage.getRange(key, 1.5, 10), isCode('KB_STORAGE'))
    })

    test('a missing key is KB_STORAGE_NOT_FOUND for get, getRange and stream, and undefined for head', async () => {
      const key = `${space()}/missing.seg`
      await assert.rejects(storage.get(key), isCode('KB_STORAGE_NOT_FOUND', key, storage.location))
      await assert.rejects(storage.getRange(key, 0, 1), isCode('KB_STORAGE_NOT_FOUND', key, storage.location))
      await assert.rejects(storage.stream(key), isCode('KB_STORAGE_NOT_FOUND', key, storage.location))
      assert.equal(await storage.head(key), undefined)
    })

    test('a key that is only a prefix of other keys is not an object', async () => {
      const base = space()
      await storage.put(`${base}/dir/child`, Buffer.from('x'))
      await assert.rejects(storage.get(`${base}/dir`), isCode('KB_STORAGE_NOT_FOUND'))
      assert.equal(await storage.head(`${base}/dir`), undefined)
      await storage.delete(`${base}/dir`)
      assert.equal((await storage.get(`${base}/dir/child`)).toString(), 'x')
    })

    test('an empty object is stored, listed and read back as empty', async () => {
      const base = space()
      await storage.put(`${base}/empty-buffer`, Buffer.alloc(0))
      await storage.put(`${base}/empty-stream`, Readable.from([], { objectMode: false }))
      for (const key of [`${base}/empty-buffer`, `${base}/empty-stream`]) {
        assert.equal((await storage.get(key)).length, 0)
        assert.deepEqual(await storage.head(key), { key, size: 0 })
        assert.equal((await storage.getRange(key, 0, 0)).length, 0)
        assert.equal((await readAll(await storage.stream(key))).length, 0)
        await assert.rejects(storage.getRange(key, 0, 1), isCode('KB_STORAGE'))
      }
      assert.deepEqual(await storage.list(`${base}/`), [
        { key: `${base}/empty-buffer`, size: 0 },
        { key: `${base}/empty-stream`, size: 0 }
      ])
    })

    test('list returns nested keys under a prefix, sorted, with sizes', async () => {
      const base = space()
      const keys = [
        `${base}/topics/orders/1/00000000000000000000.seg`,
        `${base}/topics/orders/0/00000000000000000100.seg`,
        `${base}/manifest.json`,
        `${base}/topics/orders/0/00000000000000000000.seg`,
        `${base}/topics/orders/0/index.json`,
        `${base}/topics/orders-eu/0/00000000000000000000.seg`,
        `${base}/topics/payments/0/00000000000000000000.seg`
      ]
      await Promise.all(keys.map((key, i) => storage.put(key, Buffer.alloc(i + 1))))
      const sizeOf = (key: string) => keys.indexOf(key) + 1
      const expect = (...selected: string[]) => selected.sort().map(key => ({ key, size: sizeOf(key) }))

      assert.deepEqual(await storage.list(`${base}/`), expect(...keys))
      assert.deepEqual(await storage.list(base), expect(...keys))
      assert.deepEqual(
        await storage.list(`${base}/topics/orders/`),
        expect(...keys.filter(key => key.includes('/orders/')))
      )
      // A prefix that ends inside a name matches by string, as object stores do.
      assert.deepEqual(
        await storage.list(`${base}/topics/orders`),
        expect(...keys.filter(key => key.includes('/orders')))
      )
      assert.deepEqual(
        await storage.list(`${base}/topics/orders/0/0000`),
        expect(`${base}/topics/orders/0/00000000000000000000.seg`, `${base}/topics/orders/0/00000000000000000100.seg`)
      )
      assert.deepEqual(await storage.list(`${base}/manifest.json`), expect(`${base}/manifest.json`))
      assert.deepEqual(await storage.list(`${base}/nothing-here/`), [])
      assert.deepEqual(await storage.list(`${base}/topics/none`), [])
      const all = await storage.list('')
      assert.deepEqual(
        all.filter(info => info.key.startsWith(`${base}/`)),
        expect(...keys)
      )
      assert.deepEqual(
        all.map(info => info.key),
        all.map(info => info.key).sort()
      )
    })

    test('replace creates and then atomically replaces a small object', async () => {
      const key = `${space()}/topics/t/0/index.json`
      await storage.replace(key, Buffer.from('{"v":1}'))
      assert.equal((await storage.get(key)).toString(), '{"v":1}')
      await storage.replace(key, Buffer.from('{"v":2,"more":true}'))
      assert.equal((await storage.get(key)).toString(), '{"v":2,"more":true}')
      assert.deepEqual(await storage.list(`${key}`), [{ key, size: 19 }])
    })

    test('create stores a new key from a Buffer or a stream, and refuses a taken key with KB_STORAGE_EXISTS', async () => {
      const base = space()
      const key = `${base}/topics/t/0/index/000000000001.json`
      await storage.create(key, Buffer.from('{"revision":1}'))
      await storage.create(`${base}/streamed`, patternStream(300_000, 65_536))
      assert.deepEqual(await storage.get(`${base}/streamed`), patternBytes(0, 300_000))
      await assert.rejects(
        storage.create(key, Buffer.from('{"revision":"other writer"}')),
        isCode('KB_STORAGE_EXISTS', key)
      )
      await assert.rejects(storage.create(key, patternStream(100_000)), isCode('KB_STORAGE_EXISTS', key))
      assert.equal((await storage.get(key)).toString(), '{"revision":1}')
      assert.deepEqual(await storage.list(`${base}/topics/`), [{ key, size: 14 }])
    })

    test('a streamed create larger than an upload part is refused on a taken key and leaves it whole', async () => {
      const key = `${space()}/segment.seg`
      const first = patternBytes(3, 1000)
      await storage.put(key, first)
      // 11 MiB: more than the 5 MiB parts of the multipart variants, so the precondition is the commit's.
      await assert.rejects(storage.create(key, patternStream(11 * MiB)), isCode('KB_STORAGE_EXISTS', key))
      assert.deepEqual(await storage.get(key), first)
      assert.deepEqual(await storage.list(key), [{ key, size: first.length }])
    })

    test('of concurrent creates of one key exactly one wins and the others get KB_STORAGE_EXISTS', async () => {
      const key = `${space()}/index/000000000002.json`
      const values = Array.from({ length: 6 }, (_, i) => Buffer.alloc(20_000 + i, 97 + i))
      const results = await Promise.allSettled(values.map(value => storage.create(key, value)))
      const won = results.flatMap((result, i) => (result.status === 'fulfilled' ? [i] : []))
      assert.equal(won.length, 1, `${won.length} creates of ${key} succeeded`)
      for (const result of results) {
        if (result.status === 'rejected') {
          assert.ok(isBackupError(result.reason, 'KB_STORAGE_EXISTS'), String(result.reason))
        }
      }
      assert.deepEqual(await storage.get(key), values[won[0]!])
    })

    test('a reader racing replace always sees a complete old or new value', async () => {
      const key = `${space()}/checkpoint.json`
      // Different sizes and fill bytes: a torn read shows up as a wrong size or mixed bytes.
      const values = [Buffer.alloc(200_000, 'a'), Buffer.alloc(300_000, 'b'), Buffer.alloc(100_000, 'c')]
      await storage.replace(key, values[0]!)
      let writing = true
      const writer = (async () => {
        for (let i = 1; i <= 60; i++) {
          await storage.replace(key, values[i % values.length]!)
        }
        writing = false
      })()
      const seen = new Set<string>()
      const reader = async () => {
        while (writing) {
          const value = await storage.get(key)
          const match = values.find(candidate => candidate.equals(value))
          assert.ok(match, `read a torn value of ${value.length} bytes`)
          seen.add(String.fromCharCode(match[0]!))
        }
      }
      await Promise.all([writer, reader(), reader(), reader()])
      // Reads that all landed between the same two replacements would prove nothing about tearing.
      assert.ok(seen.size >= 2, `the readers saw only ${[...seen]}: they did not overlap the replacements`)
    })

    test('concurrent puts to different keys all land intact', async () => {
      const base = space()
      const count = 16
      const sizeOf = (i: number) => 100_000 + i * 7_919
      await Promise.all(
        Array.from({ length: count }, (_, i) => storage.put(`${base}/p${i}`, patternStream(sizeOf(i), 8192 + i)))
      )
      const listed = await storage.list(`${base}/`)
      assert.equal(listed.length, count)
      for (let i = 0; i < count; i++) {
        assert.deepEqual(await storage.get(`${base}/p${i}`), patternBytes(0, sizeOf(i)))
      }
    })

    test('concurrent puts to the same key leave one whole value, never a mix', async () => {
      const key = `${space()}/contended`
      const values = Array.from({ length: 6 }, (_, i) => Buffer.alloc(150_000 + i * 1000, 65 + i))
      await Promise.all(
        values.map(value =>
          storage.put(
            key,
            Readable.from(
              (function* () {
                for (let at = 0; at < value.length; at += 10_000) {
                  yield value.subarray(at, at + 10_000)
                }
              })(),
              { objectMode: false }
            )
          )
        )
      )
      const stored = await storage.get(key)
      assert.ok(
        values.some(value => value.equals(stored)),
        `stored ${stored.length} bytes that match no writer`
      )
      assert.deepEqual(await storage.list(key), [{ key, size: stored.length }])
    })

    test('a put whose source stream fails stores nothing and leaves nothing listed', async () => {
      const base = space()
      const key = `${base}/topics/t/0/00000000000000000000.seg`
      await assert.rejects(
        storage.put(key, failingStream([patternBytes(0, 64 * 1024), patternBytes(1, 64 * 1024)], 'writer crashed')),
        (error: unknown) => isBackupError(error) && String(error.message).includes('writer crashed')
      )
      assert.equal(await storage.head(key), undefined)
      await assert.rejects(storage.get(key), isCode('KB_STORAGE_NOT_FOUND'))
      assert.deepEqual(await storage.list(`${base}/`), [])
      assert.deepEqual(
        (await storage.list('')).filter(info => info.key.startsWith(`${base}/`)),
        []
      )
    })

    test('a put whose source stream fails keeps the previous object intact', async () => {
      const key = `${space()}/kept`
      const previous = patternBytes(5, 70_000)
      await storage.put(key, previous)
      await assert.rejects(storage.put(key, failingStream([Buffer.alloc(200_000, 9)], 'writer crashed')))
      assert.deepEqual(await storage.get(key), previous)
      assert.deepEqual(await storage.list(key), [{ key, size: previous.length }])
    })

    test('delete removes the object; deleting a missing key is not an error', async () => {
      const base = space()
      await storage.put(`${base}/a`, Buffer.from('a'))
      await storage.put(`${base}/b`, Buffer.from('b'))
      await storage.delete(`${base}/a`)
      assert.equal(await storage.head(`${base}/a`), undefined)
      await assert.rejects(storage.get(`${base}/a`), isCode('KB_STORAGE_NOT_FOUND'))
      assert.deepEqual(await storage.list(`${base}/`), [{ key: `${base}/b`, size: 1 }])
      await storage.delete(`${base}/a`)
      await storage.delete(`${base}/never/existed`)
    })

    test('keys that are not relative /-separated paths are refused with KB_STORAGE', async () => {
      const bad = ['', '/abs/key', '../escape', 'a/../../escape', 'a//b', 'a/', './a', 'a/./b', 'a\\b', 'a/b\u0000']
      for (const key of bad) {
        await assert.rejects(storage.put(key, Buffer.from('x')), isCode('KB_STORAGE'), `put(${JSON.stringify(key)})`)
        await assert.rejects(storage.get(key), isCode('KB_STORAGE'), `get(${JSON.stringify(key)})`)
        await assert.rejects(storage.head(key), isCode('KB_STORAGE'), `head(${JSON.stringify(key)})`)
        await assert.rejects(storage.delete(key), isCode('KB_STORAGE'), `delete(${JSON.stringify(key)})`)
      }
      await assert.rejects(storage.list('../'), isCode('KB_STORAGE'))
      await assert.rejects(storage.list('/abs'), isCode('KB_STORAGE'))
    })

    test('a 24 MiB streamed object reads back by ranges across 5 MiB part boundaries', async () => {
      const key = `${space()}/topics/big/0/00000000000000000000.seg`
      const size = 24 * MiB
      const partSize = 5 * MiB
      await storage.put(key, patternStream(size))
      assert.deepEqual(await storage.head(key), { key, size })

      // Whole object through ranges that never line up with the parts, checked by hash.
      const ranges: Buffer[] = []
      const step = 3 * MiB + 12_345
      for (let offset = 0; offset < size; offset += step) {
        ranges.push(await storage.getRange(key, offset, Math.min(step, size - offset)))
      }
      const expectedHash = sha256(patternBytes(0, size))
      assert.equal(sha256(...ranges), expectedHash)
      assert.equal(sha256(await readAll(await storage.stream(key))), expectedHash)

      // Ranges straddling each part boundary, and the last byte.
      for (let boundary = partSize; boundary < size; boundary += partSize) {
        const offset = boundary - 1_000
        assert.deepEqual(await storage.getRange(key, offset, 2_000), patternBytes(offset, 2_000), `at ${boundary}`)
      }
      assert.deepEqual(await storage.getRange(key, size - 1, 1), patternBytes(size - 1, 1))
      await assert.rejects(storage.getRange(key, size - 1, 2), isCode('KB_STORAGE'))
    })
  })
}
