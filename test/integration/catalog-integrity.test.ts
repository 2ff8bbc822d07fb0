/**
 * A backup whose catalogue or segments were damaged after it was written must never restore
 * or validate as if nothing happened. One backup is made in `before`; each test damages its own
 * copy (lost index, lost or reordered entries, a foreign segment, a batch altered with its
 * frame checksum made to match, documents with wrong types or absurd bounds) and checks that
 * validate fails and restore refuses with a KB_ code naming the file, and writes nothing.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { crc32c } from '../../src/batch/crc.ts'
import { validateBackup } from '../../src/catalog/inspect.ts'
import {
  indexBase,
  type Manifest,
  manifestBase,
  type PartitionIndex,
  partitionDir
} from '../../src/catalog/manifest.ts'
import { isBackupError } from '../../src/errors.ts'
import { listOffsets, listTopics, partitionKey } from '../../src/kafka/admin.ts'
import type { RestoreOptions } from '../../src/restore/engine.ts'
import { type RestoreState, restoreStateBase } from '../../src/restore/state.ts'
import { FOOTER_SUMMARY_SIZE, RowField, TRAILER_SIZE, TrailerField } from '../../src/segment/format.ts'
import { bufferSource, readSegmentIndex } from '../../src/segment/reader.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import { backupOptions, newestRevisionFile, runBackup, tempStorage } from '../helpers/backup.ts'
import { BASE_TIMESTAMP } from '../helpers/cases.ts'
import { runCli } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { restoreOptions, runRestore } from '../helpers/restore.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const BACKUP = 'test-backup'
/** Three partitions of 300 records in 6 batches each, so 3 segments per partition. */
const orders = uniqueTopic('integrity-orders')
/** One partition with other records, to file its segment under orders. */
const payments = uniqueTopic('integrity-payments')
const { cluster, producer } = clusterAndProducer()
let pristine: string

before(async () => {
  await createTopic(cluster, orders, 3)
  await createTopic(cluster, payments, 1)
  for (let round = 0; round < 6; round++) {
    for (const [topic, partitions] of [
      [orders, 3],
      [payments, 1]
    ] as const) {
      for (let partition = 0; partition < partitions; partition++) {
        await producer.send({
          messages: Array.from({ length: 50 }, (_, i) => {
            const n = round * 50 + i
            return {
              topic,
              partition,
              key: Buffer.from(`k${n}`),
              value: Buffer.from(`${topic}-p${partition}-value-${String(n).padStart(4, '0')}-${'x'.repeat(60)}`),
              timestamp: BASE_TIMESTAMP + BigInt(n)
            }
          })
        })
      }
    }
  }
  const storage = tempStorage()
  await runBackup(
    backupOptions(cluster, storage, [orders, payments], {
      compression: 'none',
      frameMaxBytes: 4 * 1024,
      segmentMaxBytes: 8 * 1024
    })
  )
  pristine = storage.location
})
after(() => {
  rmSync(pristine, { recursive: true, force: true })
})

/** A copy of the backup for one test to damage. */
function copyOfBackup(): FilesystemStorage {
  const path = mkdtempSync(join(tmpdir(), 'kafka-backup-damaged-'))
  cpSync(pristine, path, { recursive: true })
  return new FilesystemStorage({ path })
}

function file(storage: FilesystemStorage, key: string): string {
  return join(storage.location, key)
}

/** The key of a document's newest revision (from its base: revisions.ts). */
function newestKey(storage: FilesystemStorage, base: string): string {
  return relative(storage.location, newestRevisionFile(file(storage, base))!)
}

function editJson<T>(storage: FilesystemStorage, key: string, edit: (document: T) => void): void {
  const document = JSON.parse(readFileSync(file(storage, key), 'utf8')) as T
  edit(document)
  writeFileSync(file(storage, key), JSON.stringify(document, null, 2))
}

const editManifest = (storage: FilesystemStorage, edit: (manifest: Manifest) => void) =>
  editJson(storage, newestKey(storage, manifestBase(BACKUP)), edit)
const editIndex = (
  storage: FilesystemStorage,
  topic: string,
  partition: number,
  edit: (index: PartitionIndex) => void
) => editJson(storage, newestKey(storage, indexBase(BACKUP, topic, partition)), edit)

/** A value of the wrong type for the field it is assigned to, on purpose. */
function wrongType(value: unknown): never {
  return value as never
}

function readIndex(storage: FilesystemStorage, topic: string, partition: number): PartitionIndex {
  return JSON.parse(readFileSync(file(storage, newestKey(storage, indexBase(BACKUP, topic, partition))), 'utf8'))
}

/** Restore refuses with `code` and a message matching `names`, and creates nothing on the target. */
async function assertRestoreRefused(
  storage: FilesystemStorage,
  code: string,
  names: RegExp,
  topic = orders,
  include = [topic]
) {
  const target = `${topic}-restored-${Math.random().toString(36).slice(2, 8)}`
  await assert.rejects(
    runRestore(
      restoreOptions(cluster, storage, { topics: { include, exclude: [] }, topicMapping: { [topic]: target } })
    ),
    error => {
      assert.ok(isBackupError(error), String(error))
      assert.equal(error.code, code, error.message)
      assert.match(error.message, names)
      return true
    }
  )
  const created = (await listTopics(cluster)).some(t => t.name === target)
  assert.equal(created, false, `restore refused before creating ${target}`)
}

/**
 * Restore fails with `code` and a message matching `names` when it opens the damaged segment
 * of partition 0 (after the plan, so the target topic exists), and nothing of that partition
 * reached the target.
 */
async function assertRestoreFailsReading(
  storage: FilesystemStorage,
  code: string,
  names: RegExp,
  overrides: Partial<RestoreOptions> = {}
) {
  const target = `${orders}-restored-${Math.random().toString(36).slice(2, 8)}`
  await assert.rejects(
    runRestore(
      restoreOptions(cluster, storage, {
        topics: { include: [orders], exclude: [] },
        topicMapping: { [orders]: target },
        ...overrides
      })
    ),
    error => {
      assert.ok(isBackupError(error), String(error))
      assert.equal(error.code, code, error.message)
      assert.match(error.message, names)
      return true
    }
  )
  const ends = await listOffsets(cluster, [{ topic: target, partition: 0 }], 'latest')
  assert.equal(ends.get(partitionKey(target, 0)), 0n, `nothing of the damaged partition reached ${target}/0`)
}

async function assertInvalid(storage: FilesystemStorage, code: string, names: RegExp) {
  const report = await validateBackup(storage, BACKUP, { deep: true })
  assert.equal(report.valid, false, JSON.stringify(report.problems))
  assert.ok(
    report.problems.some(p => p.severity === 'error' && p.code === code && names.test(p.message)),
    `expected an error ${code} matching ${names}, got ${JSON.stringify(report.problems)}`
  )
}

describe('a lost index or a partition the manifest does not count', () => {
  test('the pristine backup validates and restores every record, so the damage below is what fails', async () => {
    const report = await validateBackup(new FilesystemStorage({ path: pristine }), BACKUP, { deep: true })
    assert.deepEqual(report.problems, [])
    assert.equal(report.records, 1200)
    assert.equal(report.segments, 12)
    const target = `${orders}-restored`
    const summary = await runRestore(
      restoreOptions(cluster, new FilesystemStorage({ path: pristine }), {
        topics: { include: [orders], exclude: [] },
        topicMapping: { [orders]: target }
      })
    )
    assert.equal(summary.records, 900)
    assert.deepEqual(
      contentOf(await readTopicRecords(cluster, target)),
      contentOf(await readTopicRecords(cluster, orders))
    )
  })

  test('one partition index deleted, its segments still there: validate exits 1 naming the folder, restore refuses', async () => {
    const storage = copyOfBackup()
    rmSync(file(storage, indexBase(BACKUP, orders, 1)), { recursive: true })
    const validate = await runCli(['validate', '--path', storage.location, '--backup-id', BACKUP, '--deep'])
    assert.equal(validate.code, 1, validate.stdout)
    assert.match(
      validate.stdout,
      new RegExp(`error +KB_BACKUP_CORRUPT: ${partitionDir(BACKUP, orders, 1)}/ holds 3 segments but no index`)
    )
    assert.match(validate.stdout, /is INVALID/)
    await assertRestoreRefused(storage, 'KB_BACKUP_CORRUPT', new RegExp(`${orders}/1/ holds 3 segments but no index`))
  })

  test('a manifest whose partitionCount is lower or higher than what storage holds, or 0: validate fails, restore refuses', async () => {
    const lowered = copyOfBackup()
    editManifest(lowered, manifest => {
      manifest.topics.find(t => t.name === orders)!.partitionCount = 1
    })
    await assertInvalid(
      lowered,
      'KB_BACKUP_CORRUPT',
      new RegExp(`${orders}/2 is in storage \\(3 segments\\), but the manifest gives ${orders} 1 partition`)
    )
    await assertRestoreRefused(lowered, 'KB_BACKUP_CORRUPT', /is in storage \(3 segments\), but the manifest gives/)

    const raised = copyOfBackup()
    editManifest(raised, manifest => {
      manifest.topics.find(t => t.name === orders)!.partitionCount = 5
    })
    const missing = new RegExp(
      `${orders} partitions 3..4 of the 5 the manifest lists have no index: nothing of them is in the backup`
    )
    await assertInvalid(raised, 'KB_BACKUP_CORRUPT', missing)
    await assertRestoreRefused(raised, 'KB_BACKUP_CORRUPT', missing)

    const zero = copyOfBackup()
    editManifest(zero, manifest => {
      manifest.topics[0]!.partitionCount = 0
    })
    await assert.rejects(validateBackup(zero, BACKUP), (error: Error) => {
      assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT'), String(error))
      assert.match(
        error.message,
        /manifest\/\d{12}\.json: topics\[0\]\.partitionCount: Too small: expected number to be >=1 \(found 0\)/
      )
      return true
    })
    await assertRestoreRefused(
      zero,
      'KB_BACKUP_CORRUPT',
      /manifest .*manifest\/\d{12}\.json: topics\[0\]\.partitionCount: /
    )
  })

  test('a topic folder the manifest does not list at all is reported, and refuses a restore that selects it', async () => {
    const storage = copyOfBackup()
    editManifest(storage, manifest => {
      manifest.topics = manifest.topics.filter(t => t.name !== payments)
    })
    await assertInvalid(
      storage,
      'KB_BACKUP_CORRUPT',
      new RegExp(
        `topics/${payments}/ holds 1 partition \\(3 segments\\) of topic ${payments}, which the manifest does not list`
      )
    )
    await assertRestoreRefused(storage, 'KB_BACKUP_CORRUPT', /which the manifest does not list/, orders, ['*'])
  })

  test('an entry dropped from the middle or the end of an index is found from the segments outside it', async () => {
    const middle = copyOfBackup()
    editIndex(middle, orders, 0, index => {
      index.segments.splice(1, 1)
    })
    await assertInvalid(
      middle,
      'KB_BACKUP_CORRUPT',
      /00100\.seg is not in its partition index, but holds offsets 100\.\.199, below the index's nextOffset 300 and in no indexed segment: the index lost this entry/
    )
    await assertRestoreRefused(middle, 'KB_BACKUP_CORRUPT', /the index lost this entry/)

    const tail = copyOfBackup()
    editIndex(tail, orders, 2, index => {
      index.nextOffset = index.segments[0]!.nextOffset
      index.segments.splice(1)
    })
    await assertInvalid(tail, 'KB_BACKUP_CORRUPT', /is one of 2 segments past the index's nextOffset 100/)
    await assertRestoreRefused(
      tail,
      'KB_BACKUP_CORRUPT',
      /an interrupted run leaves at most one, so the index lost entries/
    )

    // Only the last entry dropped: one segment past the checkpoint, as an interrupted run
    // leaves one, but it was written before the index: the index lost it.
    const last = copyOfBackup()
    editIndex(last, orders, 2, index => {
      index.nextOffset = index.segments[1]!.nextOffset
      index.segments.splice(2)
    })
    await assertInvalid(
      last,
      'KB_BACKUP_CORRUPT',
      /00200\.seg is not in its partition index and was written at .*, before the index .*: no interrupted run left it/
    )
    await assertRestoreRefused(last, 'KB_BACKUP_CORRUPT', /no interrupted run left it, the index lost this entry/)
  })

  test('a backup run on an index that lost an entry refuses and keeps the segment, which may be the only copy', async () => {
    const damaged = copyOfBackup()
    editIndex(damaged, orders, 0, index => {
      index.segments.splice(1, 1)
    })
    const lostSegment = file(damaged, `${partitionDir(BACKUP, orders, 0)}/${'100'.padStart(20, '0')}.seg`)
    const before = readFileSync(lostSegment)
    await assert.rejects(runBackup(backupOptions(cluster, damaged, [orders], { compression: 'none' })), error => {
      assert.ok(isBackupError(error))
      assert.equal(error.code, 'KB_BACKUP_CORRUPT')
      assert.match(error.message, /the index lost this entry; the backup was left as it is/)
      return true
    })
    assert.deepEqual(readFileSync(lostSegment), before)
  })

  test('the one segment an interrupted run leaves past the checkpoint is a warning, and restore restores what the index holds', async () => {
    const interrupted = copyOfBackup()
    // The index as it was before its last segment was closed: written before that segment.
    editIndex(interrupted, orders, 2, index => {
      index.nextOffset = index.segments[1]!.nextOffset
      index.segments.splice(2)
      index.updatedAt = new Date(Date.parse(index.segments[0]!.createdAt) - 60_000).toISOString()
    })
    const report = await validateBackup(interrupted, BACKUP, { deep: true })
    assert.equal(report.valid, true, JSON.stringify(report.problems))
    assert.deepEqual(
      report.problems.map(p => [p.severity, p.code, p.partition]),
      [['warning', 'KB_ORPHAN_SEGMENT', 2]]
    )
    const target = `${orders}-interrupted`
    const summary = await runRestore(
      restoreOptions(cluster, interrupted, {
        topics: { include: [orders], exclude: [] },
        topicMapping: { [orders]: target }
      })
    )
    assert.equal(summary.status, 'complete')
    assert.equal(summary.records, 800, 'partitions 0 and 1 whole, partition 2 up to its checkpoint 200')
  })
})

describe('restore checks what it reads', () => {
  test('a duplicated or swapped segment entry is refused naming the index and the entry, nothing is written', async () => {
    const duplicate = (segments: unknown[]) => segments.splice(1, 0, segments[0])
    const swap = (segments: unknown[]) => segments.splice(0, 2, segments[1], segments[0])
    for (const edit of [duplicate, swap]) {
      const storage = copyOfBackup()
      editIndex(storage, orders, 0, index => edit(index.segments))
      const names = new RegExp(
        `partition index .*${newestKey(storage, indexBase(BACKUP, orders, 0))}: segments\\[1\\]\\.firstOffset: starts before the previous segment ends`
      )
      await assertInvalid(storage, 'KB_BACKUP_CORRUPT', names)
      await assertRestoreRefused(storage, 'KB_BACKUP_CORRUPT', names)
    }
  })

  test('a segment of another topic filed under this one is refused by its header, also with a matching index entry', async () => {
    const storage = copyOfBackup()
    // payments/0's segments and entries, moved under orders/0 as if they were its own.
    const foreign = readIndex(storage, payments, 0)
    rmSync(file(storage, partitionDir(BACKUP, orders, 0)), { recursive: true })
    cpSync(file(storage, partitionDir(BACKUP, payments, 0)), file(storage, partitionDir(BACKUP, orders, 0)), {
      recursive: true
    })
    editIndex(storage, orders, 0, index => {
      index.topic = orders
      index.segments = foreign.segments.map(s => ({ ...s, key: s.key.replace(payments, orders) }))
    })
    const names = new RegExp(`segment .*${orders}/0/0+\\.seg holds ${payments}/0, but is filed under ${orders}/0`)
    await assertInvalid(storage, 'KB_SEGMENT_CORRUPT', names)
    await assertRestoreFailsReading(storage, 'KB_SEGMENT_CORRUPT', names)

    // The same with the index entry still naming the other topic's key.
    const pointing = copyOfBackup()
    editIndex(pointing, orders, 0, index => {
      index.segments[0]!.key = index.segments[0]!.key.replace(orders, payments)
    })
    await assertRestoreRefused(pointing, 'KB_BACKUP_CORRUPT', /segments\[0\]\.key: expected topics\//)
  })

  test('an index entry whose numbers differ from its segment (time range, count) is refused, also when the window skips it', async () => {
    const storage = copyOfBackup()
    editIndex(storage, orders, 0, index => {
      // A PITR restore would skip this segment without reading it if the entry were trusted.
      index.segments[2]!.maxTimestamp = String(BASE_TIMESTAMP - 1000n)
      index.segments[2]!.minTimestamp = String(BASE_TIMESTAMP - 2000n)
    })
    const target = `${orders}-pitr`
    await assert.rejects(
      runRestore(
        restoreOptions(cluster, storage, {
          topics: { include: [orders], exclude: [] },
          topicMapping: { [orders]: target },
          window: { start: BASE_TIMESTAMP }
        })
      ),
      (error: Error) => {
        assert.ok(isBackupError(error, 'KB_SEGMENT_CORRUPT'), String(error))
        assert.match(error.message, /00200\.seg: (min|max)Timestamp is \d+, its index entry says \d+/)
        return true
      }
    )
    await assertInvalid(storage, 'KB_SEGMENT_CORRUPT', /00200\.seg: (min|max)Timestamp is \d+, its index entry says/)
  })

  test('a batch whose own Kafka CRC fails, with the frame checksum made to match, is refused before it is rewritten', async () => {
    const storage = copyOfBackup()
    const index = readIndex(storage, orders, 0)
    const segmentFile = file(storage, `${BACKUP}/${index.segments[0]!.key}`)
    const bytes = readFileSync(segmentFile)
    // Alter one record value of the first batch (uncompressed, frame codec none)...
    const at = bytes.indexOf(`${orders}-p0-value-0007`)
    assert.ok(at > 0)
    bytes[at + orders.length + '-p0-'.length] = 'V'.charCodeAt(0)
    // ...then make the frame checksum, the footer CRC and the trailer CRC match again.
    const segment = await readSegmentIndex(bufferSource(bytes), 'damaged')
    const row = segment.footer.frames[0]!
    const rowAt = segment.trailer.footerOffset + FOOTER_SUMMARY_SIZE + RowField.checksum
    bytes.writeUInt32BE(crc32c(bytes.subarray(row.frameOffset, row.frameOffset + row.storedLength)), rowAt)
    const trailerAt = bytes.length - TRAILER_SIZE
    const footer = bytes.subarray(
      segment.trailer.footerOffset,
      segment.trailer.footerOffset + segment.trailer.footerLength
    )
    bytes.writeUInt32BE(crc32c(footer), trailerAt + TrailerField.footerCrc)
    bytes.writeUInt32BE(
      crc32c(bytes.subarray(trailerAt, trailerAt + TrailerField.trailerCrc)),
      trailerAt + TrailerField.trailerCrc
    )
    writeFileSync(segmentFile, bytes)
    await readSegmentIndex(bufferSource(bytes), 'resealed')

    await assertRestoreFailsReading(
      storage,
      'KB_SEGMENT_CORRUPT',
      new RegExp(`segment .*${index.segments[0]!.key}: frame 0: batch 0 \\(base offset 0\\) fails its Kafka CRC-32C`)
    )
    await assertInvalid(storage, 'KB_SEGMENT_CORRUPT', /frame 0: batch 0 \(base offset 0\) fails its Kafka CRC-32C/)
  })
})

describe('catalogue documents are checked against their schema', () => {
  const indexCases: Array<[string, (index: PartitionIndex) => void, RegExp]> = [
    [
      'segments is not a list',
      index => {
        index.segments = wrongType('abc')
      },
      /: segments: Invalid input: expected array, received string/
    ],
    [
      'an offset that is not a number',
      index => {
        index.segments[1]!.firstOffset = 'abc'
      },
      /: segments\[1\]\.firstOffset: expected an offset as a decimal string .*\(found "abc"\)/
    ],
    [
      'a count that is a string',
      index => {
        index.segments[0]!.recordCount = wrongType('100')
      },
      /: segments\[0\]\.recordCount: Invalid input: expected number, received string/
    ],
    [
      'a negative size',
      index => {
        index.segments[0]!.sizeBytes = -5
      },
      /: segments\[0\]\.sizeBytes: Too small/
    ],
    [
      'an index filed under another partition',
      index => {
        index.partition = 2
      },
      /: topic, partition: describe .*\/2, but the index is filed under .*\/0/
    ],
    [
      'a checkpoint behind the last segment',
      index => {
        index.nextOffset = '10'
      },
      /: nextOffset: is behind the end of the last segment \(300\)/
    ]
  ]
  for (const [name, edit, names] of indexCases) {
    test(`index with ${name}: KB_BACKUP_CORRUPT naming the file and field from validate, describe and restore`, async () => {
      const storage = copyOfBackup()
      editIndex(storage, orders, 0, edit)
      const key = newestKey(storage, indexBase(BACKUP, orders, 0))
      await assertInvalid(storage, 'KB_BACKUP_CORRUPT', new RegExp(`partition index .*${key}${names.source}`))
      const describe = await runCli(['describe', '--path', storage.location, '--backup-id', BACKUP])
      assert.equal(describe.code, 1)
      assert.match(
        describe.stderr.trim(),
        new RegExp(`^kafka-backup: KB_BACKUP_CORRUPT: partition index .*${key}${names.source}`)
      )
      await assertRestoreRefused(storage, 'KB_BACKUP_CORRUPT', names)
    })
  }

  test('a manifest with partitionCount 1000000000 fails at once instead of hanging validate, describe and restore', async () => {
    const storage = copyOfBackup()
    editManifest(storage, manifest => {
      manifest.topics[0]!.partitionCount = 1_000_000_000
    })
    const names =
      /manifest .*manifest\/\d{12}\.json: topics\[0\]\.partitionCount: Too big: expected number to be <=1000000 \(found 1000000000\)/
    for (const command of ['validate', 'describe']) {
      const result = await runCli([command, '--path', storage.location, '--backup-id', BACKUP])
      assert.equal(result.code, 1, result.stderr)
      assert.match(result.stderr, names)
    }
    await assertRestoreRefused(storage, 'KB_BACKUP_CORRUPT', names)
  })

  test('a manifest with wrong types names the field', async () => {
    for (const [edit, names] of [
      [
        (m: Manifest) => {
          m.topics = wrongType({})
        },
        /: topics: Invalid input: expected array, received object/
      ],
      [
        (m: Manifest) => {
          m.topics[0]!.configs = wrongType([])
        },
        /: topics\[0\]\.configs: Invalid input: expected record, received array/
      ],
      [
        (m: Manifest) => {
          m.runs[0]!.records = wrongType('many')
        },
        /: runs\[0\]\.records: Invalid input: expected number, received string/
      ],
      [
        (m: Manifest) => {
          m.backupId = 'another'
        },
        /: backupId: is not the folder it is in \(test-backup\) \(found "another"\)/
      ]
    ] as const) {
      const storage = copyOfBackup()
      editManifest(storage, edit)
      await assert.rejects(validateBackup(storage, BACKUP), (error: Error) => {
        assert.ok(isBackupError(error, 'KB_BACKUP_CORRUPT'), String(error))
        assert.match(error.message, names)
        return true
      })
    }
  })

  test('list shows the good backups of a folder and flags the unreadable ones, exit 1', async () => {
    const storage = copyOfBackup()
    cpSync(file(storage, BACKUP), file(storage, 'broken'), { recursive: true })
    cpSync(file(storage, BACKUP), file(storage, 'headless'), { recursive: true })
    editJson<Manifest>(storage, newestKey(storage, manifestBase('broken')), manifest => {
      manifest.backupId = 'broken'
      manifest.runs = wrongType('x')
    })
    rmSync(file(storage, manifestBase('headless')), { recursive: true })
    const json = await runCli(['list', '--path', storage.location, '--json'])
    assert.equal(json.code, 1, json.stderr)
    const listed = JSON.parse(json.stdout)
    assert.deepEqual(
      listed.map((b: { backupId: string; error?: { code: string } }) => [b.backupId, b.error?.code ?? 'ok']),
      [
        ['broken', 'KB_BACKUP_CORRUPT'],
        ['headless', 'KB_BACKUP_CORRUPT'],
        [BACKUP, 'ok']
      ]
    )
    assert.match(
      listed[0].error.message,
      /broken\/manifest\/\d{12}\.json: runs: Invalid input: expected array, received string/
    )
    assert.match(listed[1].error.message, /headless holds topics\/ but no manifest:/)
    const human = await runCli(['list', '--path', storage.location])
    assert.equal(human.code, 1)
    assert.match(human.stdout, new RegExp(`${BACKUP} +2 `))
    assert.match(human.stdout, /broken +- .*UNREADABLE \(KB_BACKUP_CORRUPT\)/)
  })

  test('a restore state with wrong types is KB_BACKUP_CORRUPT naming the file and field in offset-map', async () => {
    const storage = copyOfBackup()
    const target = `${payments}-state`
    const summary = await runRestore(
      restoreOptions(cluster, storage, {
        topics: { include: [payments], exclude: [] },
        topicMapping: { [payments]: target }
      })
    )
    const key = newestKey(storage, restoreStateBase(BACKUP, summary.restoreId))
    editJson<RestoreState>(storage, key, state => {
      state.partitions[0]!.offsetMap = [['0', 'zero', 300]]
    })
    const result = await runCli(['offset-map', '--path', storage.location, '--backup-id', BACKUP])
    assert.equal(result.code, 1)
    assert.match(
      result.stderr.trim(),
      new RegExp(
        `^kafka-backup: KB_BACKUP_CORRUPT: restore state .*${key} is damaged at partitions\\.0\\.offsetMap\\.0\\.1: expected an offset as a decimal string`
      )
    )
  })
})
