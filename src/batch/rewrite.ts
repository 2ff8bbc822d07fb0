/**
 * Making a backed-up batch acceptable to the target broker (docs/architecture.md, "Produce validation"):
 * baseOffset 0, partitionLeaderEpoch -1, the restore producer's id/epoch/sequence, the
 * transactional bit cleared, and the CRC-32C patched for those header fields from the batch's
 * own CRC, never computed afresh over the records: bytes that changed after Kafka wrote them
 * keep a failing CRC, which the target broker refuses (CORRUPT_MESSAGE), so they are never given
 * a valid one. Record bytes are not touched by the rewrite, so keys, values, headers and
 * timestamps come back byte for byte. Only a batch with offset holes (compaction) or a run of
 * small batches to merge is decoded and re-encoded.
 */
import { BackupError } from '../errors.ts'
import { crc32c, patchedCrc32c } from './crc.ts'
import { Attribute, type CodecId, Offset, RecordBatchView } from './header.ts'
import { decodeRecords, encodeBatch, type RecordInput } from './records.ts'

export interface RestoreProducer {
  /** -1 for a plain producer; an id from InitProducerId for an idempotent one. */
  producerId: bigint
  producerEpoch: number
  /** The running record count of this producer on this partition (-1 with producerId -1). */
  baseSequence: number
}

/** No producer identity: the broker neither de-duplicates nor orders these batches. */
export const NO_PRODUCER: RestoreProducer = Object.freeze({ producerId: -1n, producerEpoch: -1, baseSequence: -1 })

/** Compaction removed records but kept the offset range: recordCount < lastOffsetDelta + 1. */
export function hasOffsetHoles(batch: RecordBatchView): boolean {
  return batch.recordCount !== batch.lastOffsetDelta + 1
}

function cannotRestore(
  batch: RecordBatchView,
  field: string,
  expected: unknown,
  found: unknown,
  why: string
): BackupError {
  return new BackupError(
    'KB_INTERNAL',
    `batch at baseOffset ${batch.baseOffset} cannot be produced as it is: ${field} expected ${expected}, found ${found} (${why})`,
    { baseOffset: batch.baseOffset, field, expected, found }
  )
}

function checkProducible(batch: RecordBatchView): void {
  if (batch.isControl) {
    throw cannotRestore(batch, 'attributes.control', false, true, 'the broker refuses control batches from clients')
  }
  if (batch.recordCount === 0) {
    throw cannotRestore(batch, 'recordCount', '>= 1', 0, 'an empty batch has nothing to restore: skip it')
  }
}

/**
 * Rewrites the header of `batch` for a restore producer into `target` (default: a new buffer;
 * `batch.bytes` itself rewrites in place) and returns a view over the result. The batch must
 * be contiguous: re-encode one with holes first (`reencodeContiguous`, or use
 * `prepareForRestore`).
 */
export function rewriteForRestore(
  batch: RecordBatchView,
  producer: RestoreProducer = NO_PRODUCER,
  target?: Buffer
): RecordBatchView {
  checkProducible(batch)
  if (hasOffsetHoles(batch)) {
    throw cannotRestore(
      batch,
      'recordCount',
      batch.lastOffsetDelta + 1,
      batch.recordCount,
      'the broker requires lastOffsetDelta + 1 == recordCount: re-encode it with reencodeContiguous'
    )
  }
  if (producer.producerId >= 0n && producer.baseSequence < 0) {
    throw cannotRestore(batch, 'baseSequence', '>= 0', producer.baseSequence, 'an idempotent producer needs a sequence')
  }
  const source = batch.bytes
  const size = source.length
  const out = target ?? Buffer.allocUnsafe(size)
  if (out.length < size) {
    throw new BackupError('KB_INTERNAL', `rewrite target holds ${out.length} bytes, the batch needs ${size}`, {
      baseOffset: batch.baseOffset,
      field: 'target',
      expected: `>= ${size}`,
      found: out.length
    })
  }
  // The CRC covers attributes..records; of those, the rewrite changes attributes and the
  // producer fields, all inside the header (before Offset.records).
  const oldCrc = batch.crc
  const oldHeaderCrc = crc32c(source.subarray(Offset.attributes, Offset.records))
  if (out.buffer !== source.buffer || out.byteOffset !== source.byteOffset) {
    source.copy(out, 0)
  }
  out.writeBigInt64BE(0n, Offset.baseOffset)
  out.writeInt32BE(-1, Offset.partitionLeaderEpoch)
  out.writeInt16BE(source.readInt16BE(Offset.attributes) & ~Attribute.transactional, Offset.attributes)
  out.writeBigInt64BE(producer.producerId, Offset.producerId)
  out.writeInt16BE(producer.producerEpoch, Offset.producerEpoch)
  out.writeInt32BE(producer.baseSequence, Offset.baseSequence)
  const rewritten = out.subarray(0, size)
  const newHeaderCrc = crc32c(rewritten.subarray(Offset.attributes, Offset.records))
  rewritten.writeUInt32BE(patchedCrc32c(oldCrc, oldHeaderCrc, newHeaderCrc, size - Offset.records), Offset.crc)
  return new RecordBatchView(rewritten)
}

/**
 * Re-encodes a batch whose records have offset holes with offsetDeltas 0..n-1 and
 * lastOffsetDelta n-1 (the broker requires it, and serves wrong offsets for an uncompressed
 * batch with holes that it does not check). Everything else is kept: baseOffset, timestamps
 * (same base, same deltas), attributes, producer fields; the codec too unless one is given.
 */
export function reencodeContiguous(batch: RecordBatchView, options: { codec?: CodecId } = {}): RecordBatchView {
  checkProducible(batch)
  const records: RecordInput[] = decodeRecords(batch).map((record, i) => ({ ...record, offsetDelta: i }))
  return new RecordBatchView(
    encodeBatch(
      {
        baseOffset: batch.baseOffset,
        partitionLeaderEpoch: batch.partitionLeaderEpoch,
        attributes: batch.attributes,
        codec: options.codec ?? batch.codec,
        baseTimestamp: batch.baseTimestamp,
        maxTimestamp: batch.maxTimestamp,
        lastOffsetDelta: records.length - 1,
        producerId: batch.producerId,
        producerEpoch: batch.producerEpoch,
        baseSequence: batch.baseSequence
      },
      records
    )
  )
}

/** rewriteForRestore, re-encoding first when the batch has holes. */
export function prepareForRestore(batch: RecordBatchView, producer: RestoreProducer = NO_PRODUCER): RecordBatchView {
  if (hasOffsetHoles(batch) && batch.recordCount > 0 && !batch.isControl) {
    const contiguous = reencodeContiguous(batch)
    return rewriteForRestore(contiguous, producer, contiguous.bytes)
  }
  return rewriteForRestore(batch, producer)
}

/**
 * Merges batches into one (the broker takes one batch per partition per Produce request) with
 * offsetDeltas 0..n-1, in the codec of the first batch unless one is given. Each record keeps
 * its timestamp; the new baseTimestamp is the first record's (as Kafka's producer does), the
 * delete-horizon and transactional bits are dropped (a horizon from the source cluster means
 * nothing to the target). LogAppendTime batches merge only with LogAppendTime batches; the
 * result carries the latest of their append times. Empty batches contribute nothing.
 * The result has baseOffset = the first batch's and no producer: pass it to rewriteForRestore.
 */
export function coalesce(batches: readonly RecordBatchView[], options: { codec?: CodecId } = {}): RecordBatchView {
  const first = batches[0]
  if (first === undefined) {
    throw new BackupError('KB_INTERNAL', 'coalesce needs at least one batch', {
      field: 'batches',
      expected: '>= 1',
      found: 0
    })
  }
  const logAppendTime = first.isLogAppendTime
  const records: RecordInput[] = []
  const timestamps: bigint[] = []
  let maxAppendTime = -1n
  for (const batch of batches) {
    if (batch.isControl) {
      throw cannotRestore(batch, 'attributes.control', false, true, 'control batches are never restored')
    }
    if (batch.isLogAppendTime !== logAppendTime) {
      throw cannotRestore(
        batch,
        'attributes.logAppendTime',
        logAppendTime,
        batch.isLogAppendTime,
        'LogAppendTime and CreateTime batches do not merge'
      )
    }
    if (batch.maxTimestamp > maxAppendTime) {
      maxAppendTime = batch.maxTimestamp
    }
    const baseTimestamp = batch.baseTimestamp
    for (const record of decodeRecords(batch)) {
      timestamps.push(baseTimestamp + record.timestampDelta)
      records.push(record)
    }
  }
  const baseTimestamp = timestamps[0] ?? first.baseTimestamp
  let maxTimestamp = -1n
  for (const [i, record] of records.entries()) {
    const timestamp = timestamps[i]!
    if (timestamp > maxTimestamp) {
      maxTimestamp = timestamp
    }
    records[i] = { ...record, offsetDelta: i, timestampDelta: timestamp - baseTimestamp }
  }
  return new RecordBatchView(
    encodeBatch(
      {
        baseOffset: first.baseOffset,
        attributes: logAppendTime ? Attribute.logAppendTime : 0,
        codec: options.codec ?? first.codec,
        baseTimestamp,
        maxTimestamp: logAppendTime ? maxAppendTime : maxTimestamp
      },
      records
    )
  )
}
