import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, mock, test } from 'node:test'
import { isBackupError } from '../../src/errors.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { runUnprivileged } from '../helpers/unprivileged.ts'
import { until } from '../helpers/wait.ts'
import { storageContract } from './contract.ts'

async function temporaryDirectory(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'kb-storage-'))
}

storageContract('filesystem', async () => {
  const path = await temporaryDirectory()
  return { storage: new FilesystemStorage({ path }), cleanup: () => rm(path, { recursive: true, force: true }) }
})

storageContract('filesystem with a prefix in a root that does not exist yet', async () => {
  const path = await temporaryDirectory()
  return {
    storage: new FilesystemStorage({ path: join(path, 'not', 'yet'), prefix: 'backups/prod/' }),
    cleanup: () => rm(path, { recursive: true, force: true })
  }
})

function isCode(code: string, ...mustMention: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isBackupError(error) && error.code === code, `expected ${code}, got ${String(error)}`)
    for (const text of mustMention) {
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`)
    }
    return true
  }
}

/** A source stream that yields `first` and then waits until told to end or fail. */
function stalledStream(first: Buffer) {
  let release!: (error?: Error) => void
  const released = new Promise<Error | undefined>(resolve => {
    release = resolve
  })
  const stream = Readable.from(
    (async function* () {
      yield first
      const error = await released
      if (error) {
        throw error
      }
    })(),
    { objectMode: false }
  )
  return { stream, release }
}

describe('filesystem storage', () => {
  let root: string

  before(async () => {
    root = await temporaryDirectory()
  })

  after(async () => {
    await rm(root, { recursive: true, force: true })
  })

  test('range reads of one object share one open file, and a write or delete of the key is seen by the next read', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'ranges') })
    const openFiles = async () => (await readdir('/proc/self/fd')).length
    await storage.put('b1/a.seg', Buffer.from('0123456789'))
    const before = await openFiles()
    const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => storage.getRange('b1/a.seg', i, 2)))
    assert.deepEqual(
      reads.map(r => r.toString()),
      ['01', '12', '23', '34', '45', '56', '67', '78']
    )
    assert.equal(await openFiles(), before + 1, 'one handle stays open for the next reads')
    await storage.replace('b1/a.seg', Buffer.from('abcdefghij'))
    assert.equal((await storage.getRange('b1/a.seg', 8, 2)).toString(), 'ij')
    await assert.rejects(
      storage.getRange('b1/a.seg', 8, 4),
      (error: unknown) => isBackupError(error, 'KB_STORAGE') && /past the end/.test((error as Error).message)
    )
    await storage.delete('b1/a.seg')
    await assert.rejects(storage.getRange('b1/a.seg', 0, 2), (error: unknown) =>
      isBackupError(error, 'KB_STORAGE_NOT_FOUND')
    )
    await storage.close()
    await until(async () => (await openFiles()) <= before, 'the handle is closed with the storage')
  })

  test('stores each key as a file under path/prefix, with / as directory separators', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'layout'), prefix: 'kb' })
    await storage.put('b1/topics/orders/0/00000000000000000000.seg', Buffer.from('segment'))
    assert.equal(
      await readFile(join(root, 'layout', 'kb', 'b1', 'topics', 'orders', '0', '00000000000000000000.seg'), 'utf8'),
      'segment'
    )
    assert.equal(storage.location, join(root, 'layout', 'kb'))
  })

  test('a temp file left by a crash is invisible to list and get, and the old object stays', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'crash') })
    await storage.put('topics/t/0/index.json', Buffer.from('{"old":true}'))
    const directory = join(root, 'crash', 'topics', 't', '0')
    // What a crash between write and rename leaves behind: a half-written temp beside the key.
    await writeFile(join(directory, '.index.json.0123456789abcdef.tmp'), '{"new":tr')
    await writeFile(join(directory, '.00000000000000000000.seg.fedcba9876543210.tmp'), 'half a segment')

    assert.deepEqual(await storage.list(''), [{ key: 'topics/t/0/index.json', size: 12 }])
    assert.deepEqual(await storage.list('topics/t/0/.'), [])
    assert.equal((await storage.get('topics/t/0/index.json')).toString(), '{"old":true}')
    await assert.rejects(storage.get('topics/t/0/00000000000000000000.seg'), isCode('KB_STORAGE_NOT_FOUND'))
    assert.equal(await storage.head('topics/t/0/00000000000000000000.seg'), undefined)
    // Temp names are reserved, so no caller can read or overwrite a leftover by its name.
    await assert.rejects(storage.get('topics/t/0/.index.json.0123456789abcdef.tmp'), isCode('KB_STORAGE', 'reserved'))
  })

  test('abortIncompleteUploads removes the temp files older than the given time of keys under the prefix, and nothing else', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'sweep') })
    await storage.put('b1/topics/t/0/index.json', Buffer.from('{}'))
    await storage.put('b1/manifest.json', Buffer.from('{}'))
    const partition = join(root, 'sweep', 'b1', 'topics', 't', '0')
    const killed = [
      join(partition, '.00000000000000000000.seg.0123456789abcdef.tmp'),
      join(partition, '.index.json.fedcba9876543210.tmp'),
      join(root, 'sweep', 'b1', '.manifest.json.00112233445566aa.tmp')
    ]
    // Under the backup but not its keys (a restore's), or under another backup: not ours.
    await mkdir(join(root, 'sweep', 'b1', 'restores', 'r1'), { recursive: true })
    const others = [
      join(root, 'sweep', 'b1', 'restores', 'r1', '.restore.json.0123456789abcdef.tmp'),
      join(root, 'sweep', '.b1x.0123456789abcdef.tmp')
    ]
    const old = new Date(Date.now() - 60_000)
    for (const path of [...killed, ...others]) {
      await writeFile(path, 'half')
      await utimes(path, old, old)
    }
    // A write in progress since after the run started stays.
    const current = join(partition, '.00000000000000000100.seg.aaaaaaaaaaaaaaaa.tmp')
    await writeFile(current, 'now')
    const startedAt = new Date(Date.now() - 1000)

    let removed = 0
    for (const prefix of ['b1/topics/', 'b1/manifest.json']) {
      removed += await storage.abortIncompleteUploads(prefix, startedAt)
    }
    assert.equal(removed, 3)
    assert.deepEqual(
      killed.filter(path => existsSync(path)),
      []
    )
    assert.deepEqual(
      [...others, current].filter(path => !existsSync(path)),
      []
    )
    assert.deepEqual(
      (await storage.list('')).map(o => o.key),
      ['b1/manifest.json', 'b1/topics/t/0/index.json']
    )
    assert.equal(await storage.abortIncompleteUploads('missing/', startedAt), 0)
  })

  test('a put in progress shows only as a temp file, and a failed one removes it', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'in-progress') })
    await storage.put('seg', Buffer.from('old'))
    const { stream, release } = stalledStream(Buffer.alloc(100_000, 7))
    const putting = storage.put('seg', stream)
    let names: string[] = []
    await until(async () => {
      names = await readdir(join(root, 'in-progress'))
      return names.some(name => name.endsWith('.tmp'))
    }, 'the put to create its temp file')
    assert.ok(
      names.some(name => /^\.seg\.[0-9a-f]{16}\.tmp$/.test(name)),
      `temp file expected in ${names.join(', ')}`
    )
    assert.deepEqual(await storage.list(''), [{ key: 'seg', size: 3 }])
    assert.equal((await storage.get('seg')).toString(), 'old')

    release(new Error('segment writer crashed'))
    await assert.rejects(putting, isCode('KB_STORAGE', 'segment writer crashed', 'seg'))
    assert.deepEqual(await readdir(join(root, 'in-progress')), ['seg'])
    assert.equal((await storage.get('seg')).toString(), 'old')
  })

  test('invalid keys are refused with a message naming the key, the reason and the location', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'keys') })
    await assert.rejects(storage.put('../outside', Buffer.from('x')), isCode('KB_STORAGE', '"../outside"', '".."'))
    await assert.rejects(storage.put('/etc/passwd', Buffer.from('x')), isCode('KB_STORAGE', 'absolute path'))
    await assert.rejects(storage.put('a//b', Buffer.from('x')), isCode('KB_STORAGE', 'empty path segment'))
    await assert.rejects(storage.put('a\\b', Buffer.from('x')), isCode('KB_STORAGE', 'backslash'))
    await assert.rejects(storage.get(''), isCode('KB_STORAGE', 'empty', storage.location))
    assert.equal(existsSync(join(root, 'outside')), false)
    assert.equal(existsSync(join(root, 'keys')), false, 'nothing is created for a refused key')
    assert.throws(() => new FilesystemStorage({ path: root, prefix: '../up' }), isCode('KB_STORAGE', '..'))
    assert.throws(() => new FilesystemStorage({ path: '' }), isCode('KB_STORAGE', 'storage.path'))
  })

  test('a root below a regular file is a clear KB_STORAGE error naming the path', async () => {
    const file = join(root, 'a-file')
    await writeFile(file, 'not a directory')
    const storage = new FilesystemStorage({ path: join(file, 'backups') })
    await assert.rejects(
      storage.put('b1/manifest.json', Buffer.from('{}')),
      isCode('KB_STORAGE', join(file, 'backups'), 'b1/manifest.json', 'a file where a directory is needed')
    )
    assert.equal(await readFile(file, 'utf8'), 'not a directory')
    // A streamed put that cannot start releases its source rather than leaving it paused forever.
    const source = Readable.from([Buffer.from('segment')], { objectMode: false })
    await assert.rejects(storage.put('b1/0.seg', source), isCode('KB_STORAGE'))
    assert.equal(source.destroyed, true)
    // Reading from it finds nothing rather than failing obscurely.
    assert.deepEqual(await storage.list(''), [])
    assert.equal(await storage.head('b1/manifest.json'), undefined)
  })

  test('an unwritable root is KB_STORAGE_ACCESS_DENIED naming the path', async () => {
    const locked = join(root, 'locked')
    await mkdir(locked)
    await chmod(locked, 0o500)
    await writeFile(join(root, 'secret'), 'x', { mode: 0o600 })
    const script = `
      import { FilesystemStorage } from ${JSON.stringify(new URL('../../src/storage/filesystem.ts', import.meta.url).href)}
      const outcome = async promise => promise.then(() => 'ok', error => ({ code: error.code, message: error.message }))
      const locked = new FilesystemStorage({ path: ${JSON.stringify(locked)} })
      const lockedBelow = new FilesystemStorage({ path: ${JSON.stringify(join(locked, 'below'))} })
      const rootDir = new FilesystemStorage({ path: ${JSON.stringify(root)} })
      console.log(JSON.stringify({
        put: await outcome(locked.put('b1/manifest.json', Buffer.from('{}'))),
        putBelow: await outcome(lockedBelow.put('manifest.json', Buffer.from('{}'))),
        get: await outcome(rootDir.get('secret'))
      }))`
    try {
      const { droppedRoot, stdout } = runUnprivileged(script)
      const result = JSON.parse(stdout)
      assert.equal(result.put.code, 'KB_STORAGE_ACCESS_DENIED')
      assert.match(result.put.message, new RegExp(`permission denied to put b1/manifest.json at ${locked}`))
      assert.match(result.put.message, /can write to/)
      assert.equal(result.putBelow.code, 'KB_STORAGE_ACCESS_DENIED')
      assert.ok(result.putBelow.message.includes(join(locked, 'below')))
      if (droppedRoot) {
        assert.equal(result.get.code, 'KB_STORAGE_ACCESS_DENIED')
        assert.match(result.get.message, /can read/)
      }
      assert.deepEqual(await readdir(locked), [])
    } finally {
      await chmod(locked, 0o700)
    }
  })

  test('put fsyncs the file before the rename and the directory after it', async t => {
    const storage = new FilesystemStorage({ path: join(root, 'fsync') })
    await storage.put('warm/up', Buffer.from('x'))
    const fileHandlePrototype = await fileHandlePrototypeOf(join(root, 'fsync', 'warm', 'up'))
    const target = join(root, 'fsync', 'warm', 'object')
    const targetExistedAtSync: boolean[] = []
    const originalSync: () => Promise<void> = fileHandlePrototype.sync
    const sync = t.mock.method(fileHandlePrototype, 'sync', async function (this: unknown) {
      targetExistedAtSync.push(existsSync(target))
      return originalSync.call(this)
    })
    await storage.put('warm/object', Buffer.from('y'))
    assert.deepEqual(targetExistedAtSync, [false, true], 'file synced before the rename, directory after')

    // A new directory's entry is synced in its parent too.
    sync.mock.resetCalls()
    await storage.put('new/nested/object', Buffer.from('z'))
    assert.ok(sync.mock.callCount() >= 4, `expected file, directory and parent syncs, saw ${sync.mock.callCount()}`)

    sync.mock.resetCalls()
    await storage.delete('warm/object')
    assert.equal(sync.mock.callCount(), 1, 'delete syncs the directory')
  })

  test('creates that end together in one directory share its fsync, and each object is there', async t => {
    const storage = new FilesystemStorage({ path: join(root, 'shared-sync') })
    await storage.put('dir/warm', Buffer.from('x'))
    const fileHandlePrototype = await fileHandlePrototypeOf(join(root, 'shared-sync', 'dir', 'warm'))
    const sync = t.mock.method(fileHandlePrototype, 'sync')
    const keys = Array.from({ length: 20 }, (_, i) => `dir/object-${i}`)
    await Promise.all(keys.map(key => storage.create(key, Buffer.from(key))))
    // One fsync per file, and far fewer than one per file for the directory they share.
    assert.ok(sync.mock.callCount() < keys.length * 2, `expected shared directory syncs, saw ${sync.mock.callCount()}`)
    assert.ok(sync.mock.callCount() > keys.length, 'the directory was synced')
    for (const key of keys) {
      assert.equal((await storage.get(key)).toString(), key)
    }
  })

  test('a failing fsync fails the put and leaves neither object nor temp file', async t => {
    const storage = new FilesystemStorage({ path: join(root, 'fsync-fails') })
    await storage.put('dir/existing', Buffer.from('old'))
    const probe = await open(join(root, 'fsync-fails', 'dir', 'existing'), 'r')
    const fileHandlePrototype = Object.getPrototypeOf(probe)
    await probe.close()
    t.mock.method(fileHandlePrototype, 'sync', async () => {
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', syscall: 'fsync' })
    })
    await assert.rejects(
      storage.put('dir/existing', Buffer.from('new')),
      isCode('KB_STORAGE', 'put of dir/existing', 'EIO')
    )
    await assert.rejects(storage.put('dir/fresh', Readable.from([Buffer.from('new')])), isCode('KB_STORAGE', 'EIO'))
    mock.restoreAll()
    assert.deepEqual(await readdir(join(root, 'fsync-fails', 'dir')), ['existing'])
    assert.equal((await storage.get('dir/existing')).toString(), 'old')
  })

  test('a directory removed behind its back is made again on the next put', async () => {
    const storage = new FilesystemStorage({ path: join(root, 'recreated') })
    await storage.put('a/b/one', Buffer.from('1'))
    await rm(join(root, 'recreated'), { recursive: true })
    await storage.put('a/b/two', Buffer.from('2'))
    assert.deepEqual(await storage.list(''), [{ key: 'a/b/two', size: 1 }])
  })
})

/** FileHandle's prototype (node:fs/promises does not export the class), to mock its `sync`. */
async function fileHandlePrototypeOf(path: string) {
  const probe = await open(path, 'r')
  await probe.close()
  return Object.getPrototypeOf(probe)
}
