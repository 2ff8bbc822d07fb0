/**
 * One partition's writes, without a broker: batches handed to a PartitionTask go into segments
 * in the in-memory storage, and the checkpoint (the index) moves only when a segment is durable.
 */
import assert from 'node:assert/strict'
import type { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { PartitionTask, type PartitionTaskOptions } from '../../src/backup/partition-task.ts'
import type { RecordBatchView } from '../../src/batch/header.ts'
import { FORMAT, FORMAT_VERSION, type PartitionIndex, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { readPartitionBatches } from '../../src/restore/source.ts'
import { Slots } from '../../src/slots.ts'
import { MemoryStorage } from '../../src/storage/memory.ts'
import { until } from '../helpers/wait.ts'
import { makeBatch, makeBatches } from '../segment/batches.ts'

function newIndex(nextOffset = 0n): PartitionIndex {
  return {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    topic: 'orders',
    partition: 2,
    startOffset: nextOffset.toString(),
    nextOffset: nextOffset.toString(),
    segments: [],
    gaps: [],
    updatedAt: new Date().toISOString()
  }
}

function newTask(storage: MemoryStorage, overrides: Partial<PartitionTaskOptions> = {}): PartitionTask {
  return new PartitionTask({
    storage,
    backupId: 'b',
    index: newIndex(),
    topicId: 'AAAAAAAAAAAAAAAAAAAAAA',
    codec: 'zstd',
    compressionLevel: 3,
    frameMaxBytes: 4096,
    storeRecords: 'decompressed',
    segmentMaxBytes: 1024 * 1024,
    segmentMaxIntervalMs: 60_000,
    ...overrides
  })
}

/** Hands batches over as the fetcher does and counts the bytes released back to the budget. */
function handOver(task: PartitionTask, batches: RecordBatchView[], positionAfter?: bigint) {
  const released = { count: 0 }
  task.enqueue(batches, positionAfter ?? batches.at(-1)!.nextOffset, () => released.count++)
  return released
}

async function storedBatches(storage: MemoryStorage, index: PartitionIndex): Promise<Buffer[]> {
  const batches: Buffer[] = []
  for await (const batch of readPartitionBatches(storage, 'b', index)) {
    batches.push(Buffer.from(batch.bytes))
  }
  return batches
}

/** In-memory storage whose segment puts wait until `open()` is called. */
class GatedStorage extends MemoryStorage {
  readonly #gate = Promise.withResolvers<void>()

  open(): void {
    this.#gate.resolve()
  }

  override async create(key: string, body: Readable | Buffer): Promise<void> {
    if (key.endsWith('.seg')) {
      await this.#gate.promise
    }
    return super.create(key, body)
  }
}

/** In-memory storage that notes when each segment's upload starts and how many run at once. */
class WatchedStorage extends MemoryStorage {
  readonly started: string[] = []
  uploading = 0
  mostUploading = 0

  override async create(key: string, body: Readable | Buffer): Promise<void> {
    if (!key.endsWith('.seg')) {
      return super.create(key, body)
    }
    this.started.push(key)
    this.mostUploading = Math.max(this.mostUploading, ++this.uploading)
    try {
      // A turn of the event loop, so that uploads that could overlap do.
      await new Promise(resolve => setImmediate(resolve))
      return await super.create(key, body)
    } finally {
      this.uploading--
    }
  }
}

describe('PartitionTask', () => {
  test('batches handed over become one segment holding exactly their bytes, and the index checkpoint moves to their end', async () => {
    const storage = new MemoryStorage()
    const task = newTask(storage)
    const batches = makeBatches(5, 10)
    const released = handOver(task, batches)
    await task.flush()
    assert.equal(released.count, 1)
    assert.equal(task.checkpoint, 50n)
    assert.equal(task.recordsWritten, 50)
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.equal(index?.nextOffset, '50')
    assert.deepEqual(
      index?.segments.map(s => [s.key, s.firstOffset, s.lastOffset, s.recordCount]),
      [['topics/orders/2/00000000000000000000.seg', '0', '49', 50]]
    )
    assert.deepEqual(
      await storedBatches(storage, index!),
      batches.map(b => Buffer.from(b.bytes))
    )
  })

  test('a segment becomes durable segmentMaxIntervalMs after it opened, by its own timer (no tick needed)', async () => {
    const storage = new MemoryStorage()
    const task = newTask(storage, { segmentMaxIntervalMs: 300 })
    const openedAt = performance.now()
    handOver(task, makeBatches(3, 10))
    await until(async () => task.checkpoint === 30n, 'the segment to close on time', {
      timeoutMs: 30_000,
      intervalMs: 10
    })
    assert.ok(performance.now() - openedAt >= 300, 'not before the interval')
    assert.equal((await readPartitionIndex(storage, 'b', 'orders', 2))?.segments.length, 1)
  })

  test('the checkpoint stays where it was until the segment upload is complete', async () => {
    const storage = new GatedStorage()
    const task = newTask(storage)
    handOver(task, makeBatches(3, 10))
    const flushed = task.flush()
    await new Promise(resolve => setTimeout(resolve, 20))
    assert.equal(task.checkpoint, 0n, 'not durable yet')
    assert.equal(await readPartitionIndex(storage, 'b', 'orders', 2), undefined)
    storage.open()
    await flushed
    assert.equal(task.checkpoint, 30n)
    assert.equal((await readPartitionIndex(storage, 'b', 'orders', 2))?.nextOffset, '30')
  })

  test('segments close at segmentMaxBytes, each named by its first offset, and continue without gap or overlap', async () => {
    const storage = new MemoryStorage()
    const batches = makeBatches(6, 10, 100n, 400)
    const task = newTask(storage, {
      index: newIndex(100n),
      codec: 'none',
      segmentMaxBytes: batches[0]!.bytes.length * 2
    })
    handOver(task, batches)
    await task.flush()
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.deepEqual(
      index?.segments.map(s => [s.firstOffset, s.nextOffset]),
      [
        ['100', '120'],
        ['120', '140'],
        ['140', '160']
      ]
    )
    assert.equal(index?.nextOffset, '160')
  })

  test('a position past the last batch (dropped control or aborted batches) moves the checkpoint with no segment', async () => {
    const storage = new MemoryStorage()
    const task = newTask(storage)
    handOver(task, makeBatches(1, 10))
    await task.flush()
    handOver(task, [], 13n)
    await task.flush()
    assert.equal(task.checkpoint, 13n)
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.equal(index?.nextOffset, '13')
    assert.equal(index?.segments.length, 1)
  })

  test('offsets lost to retention are recorded as a gap and the checkpoint continues after them', async () => {
    const storage = new MemoryStorage()
    const task = newTask(storage)
    handOver(task, makeBatches(2, 10))
    task.recordGap(20n, 70n)
    handOver(task, makeBatches(1, 10, 70n))
    await task.flush()
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.deepEqual(
      index?.gaps.map(g => [g.fromOffset, g.toOffset, g.reason]),
      [['20', '70', 'log-start-moved']]
    )
    assert.deepEqual(
      index?.segments.map(s => [s.firstOffset, s.nextOffset]),
      [
        ['0', '20'],
        ['70', '80']
      ]
    )
    assert.equal(index?.nextOffset, '80')
  })

  test('an object already at the next segment key is never written over: the task fails with KB_BACKUP_CORRUPT naming it, and keeps releasing handed-over bytes', async () => {
    const storage = new MemoryStorage()
    const key = 'b/topics/orders/2/00000000000000000000.seg'
    await storage.put(key, Buffer.from('someone else'))
    const task = newTask(storage)
    const first = handOver(task, makeBatches(1, 10))
    await assert.rejects(task.flush(), error => {
      assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT'), String(error))
      assert.equal(error.key, key)
      assert.equal(error.partition, 2)
      assert.equal(error.offset, '0')
      return true
    })
    assert.equal((await storage.get(key)).toString(), 'someone else')
    assert.equal(task.checkpoint, 0n)
    assert.equal(first.count, 1)
    const later = handOver(task, makeBatches(1, 10, 10n))
    await assert.rejects(task.flush())
    assert.equal(later.count, 1, 'a failed task still gives the bytes back to the budget')
  })

  test('a batch starting inside the last indexed segment is refused with KB_BACKUP_CORRUPT instead of a second copy', async () => {
    const storage = new MemoryStorage()
    const task = newTask(storage)
    handOver(task, makeBatches(2, 10))
    await task.flush()
    handOver(task, makeBatches(1, 10, 15n))
    await assert.rejects(task.flush(), error => isBackupError(error, 'KB_BACKUP_CORRUPT') && error.offset === '15')
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.equal(index?.segments.length, 1)
    assert.equal(index?.nextOffset, '20')
  })

  test('a failed upload fails the task with KB_STORAGE naming the segment, and the checkpoint does not move', async () => {
    class FailingStorage extends MemoryStorage {
      override async create(key: string, body: Readable | Buffer): Promise<void> {
        if (key.endsWith('.seg')) {
          if (!Buffer.isBuffer(body)) {
            body.resume()
          }
          throw new Error('disk full')
        }
        return super.create(key, body)
      }
    }
    const storage = new FailingStorage()
    const task = newTask(storage)
    handOver(task, makeBatches(2, 10))
    await assert.rejects(task.flush(), error => {
      assert.ok(isBackupError(error, 'KB_STORAGE'), String(error))
      assert.match(error.message, /00000000000000000000\.seg.*disk full/)
      return true
    })
    assert.equal(task.checkpoint, 0n)
    assert.equal(task.failed, true)
  })

  test('a segment that stays within its first frame is uploaded when it closes, in full', async () => {
    const storage = new WatchedStorage()
    const task = newTask(storage, { frameMaxBytes: 64 * 1024 })
    const batches = makeBatches(3, 10)
    const released = handOver(task, batches)
    await until(async () => released.count === 1, 'the batches to be appended', { timeoutMs: 30_000, intervalMs: 5 })
    assert.deepEqual(storage.started, [], 'no upload while the segment is open')
    await task.flush()
    assert.deepEqual(storage.started, ['b/topics/orders/2/00000000000000000000.seg'])
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.deepEqual(
      await storedBatches(storage, index!),
      batches.map(b => Buffer.from(b.bytes))
    )
  })

  test('a segment whose batches fill frames streams to storage before it closes, also incompressible frames larger than the stream buffer', async () => {
    const storage = new WatchedStorage()
    // codec none: every stored frame is as large as the writer's readable holds, so a writer
    // whose upload had not started would wait for it forever.
    const task = newTask(storage, { codec: 'none', frameMaxBytes: 4096, storeRecords: 'as_fetched' })
    const batches = makeBatches(12, 10, 0n, 400)
    const released = handOver(task, batches)
    await until(async () => released.count === 1, 'the batches to be appended', { timeoutMs: 30_000, intervalMs: 5 })
    assert.equal(storage.started.length, 1, 'the upload started before the segment closed')
    await task.flush()
    const index = await readPartitionIndex(storage, 'b', 'orders', 2)
    assert.equal(index?.nextOffset, '120')
    assert.deepEqual(
      await storedBatches(storage, index!),
      batches.map(b => Buffer.from(b.bytes))
    )
  })

  test('a compressed batch stored decompressed starts the upload before it is appended (its stored size is not known before)', async () => {
    const storage = new WatchedStorage()
    const task = newTask(storage, { frameMaxBytes: 64 * 1024, storeRecords: 'decompressed' })
    const batch = makeBatch({ baseOffset: 0n, recordCount: 10, compression: 'gzip' })
    const released = handOver(task, [batch])
    await until(async () => released.count === 1, 'the batch to be appended', { timeoutMs: 30_000, intervalMs: 5 })
    assert.equal(storage.started.length, 1)
    await task.flush()
    assert.equal((await readPartitionIndex(storage, 'b', 'orders', 2))?.nextOffset, '10')
  })

  test('tasks sharing closeSlots close one segment at a time per slot, and every task segment is closed and indexed', async () => {
    const storage = new WatchedStorage()
    const closeSlots = new Slots(2)
    const tasks = Array.from({ length: 12 }, (_, partition) =>
      newTask(storage, { closeSlots, index: { ...newIndex(), partition } })
    )
    for (const task of tasks) {
      handOver(task, makeBatches(2, 5))
    }
    await Promise.all(tasks.map(task => task.flush()))
    assert.equal(storage.started.length, 12)
    assert.ok(storage.mostUploading <= 2, `at most 2 uploads at once, saw ${storage.mostUploading}`)
    for (const task of tasks) {
      const index = await readPartitionIndex(storage, 'b', 'orders', task.partition)
      assert.equal(index?.nextOffset, '10', `partition ${task.partition}`)
      assert.equal(index?.segments.length, 1)
    }
  })
})
