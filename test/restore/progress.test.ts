/** Offset bookkeeping of a restored partition, without a broker. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RecordBatchView } from '../../src/batch/header.ts'
import { decodeRecords } from '../../src/batch/records.ts'
import { isBackupError } from '../../src/errors.ts'
import { type OutgoingBatch, toOutgoing } from '../../src/restore/outgoing.ts'
import { PartitionProgress } from '../../src/restore/progress.ts'
import type { PartitionState } from '../../src/restore/state.ts'
import { dataBatch } from '../batch/fixtures.ts'

function fresh(): PartitionState {
  return {
    sourceTopic: 's',
    sourcePartition: 0,
    targetTopic: 't',
    targetPartition: 0,
    sourceNextOffset: '-1',
    targetStartOffset: '0',
    targetNextOffset: '0',
    records: 0,
    bytes: 0,
    erasedRecords: 0,
    done: false,
    offsetMap: []
  }
}

/** Three backed-up batches of 10 records at source offsets 100, 110 and 125 (a gap of 5 before the last). */
function outgoing(): OutgoingBatch[] {
  return [100n, 110n, 125n].map(baseOffset => toOutgoing(new RecordBatchView(dataBatch(baseOffset, 10)), {}, -1n)!)
}

async function collect(source: AsyncIterable<OutgoingBatch>): Promise<OutgoingBatch[]> {
  const batches: OutgoingBatch[] = []
  for await (const batch of source) {
    batches.push(batch)
  }
  return batches
}

async function* from(batches: OutgoingBatch[]): AsyncGenerator<OutgoingBatch> {
  yield* batches
}

test('acknowledged batches move the position and extend the offset map', () => {
  const progress = new PartitionProgress(fresh())
  const [first, second, third] = outgoing()
  progress.acknowledged(first!, 0n)
  progress.acknowledged(second!, 10n)
  progress.acknowledged(third!, 20n)
  progress.sync()
  assert.deepEqual(progress.state.offsetMap, [
    ['100', '0', 20],
    ['125', '20', 10]
  ])
  assert.equal(progress.state.targetNextOffset, '30')
  assert.equal(progress.state.sourceNextOffset, '135')
  assert.equal(progress.state.records, 30)
  assert.equal(progress.offsetMap.translate(120n, 30n), 20n, 'a committed offset in the gap resumes after it')
})

test('records a lost acknowledgement left in the target are mapped and skipped, also inside a batch', async () => {
  const progress = new PartitionProgress(fresh())
  const sent = await collect(progress.skipWritten(from(outgoing()), 15n))
  assert.equal(progress.state.targetNextOffset, '15')
  assert.equal(progress.state.sourceNextOffset, '115')
  assert.equal(progress.state.records, 15)
  assert.deepEqual(progress.offsetMap.toJSON(), [['100', '0', 15]])
  assert.deepEqual(
    sent.map(b => [b.runs[0]?.sourceOffset, b.batch.recordCount]),
    [
      [115n, 5],
      [125n, 10]
    ]
  )
  assert.deepEqual(
    decodeRecords(sent[0]!.batch).map(r => r.key?.toString()),
    ['key-5', 'key-6', 'key-7', 'key-8', 'key-9'],
    'the rest of the cut batch, in order'
  )
})

test('more records in the target than the restore can account for are refused with KB_TARGET_CHANGED', async () => {
  const progress = new PartitionProgress(fresh())
  await assert.rejects(collect(progress.skipWritten(from(outgoing()), 31n)), error => {
    assert.ok(isBackupError(error, 'KB_TARGET_CHANGED'), String(error))
    assert.match(error.message, /t\/0 holds 1 more records/)
    return true
  })
})
