import type { RecordBatchView } from '../../src/batch/header.ts'

/** Every header field of a batch but batchLength and CRC: what the stored form keeps as fetched. */
export function headerFields(batch: RecordBatchView) {
  return {
    baseOffset: batch.baseOffset,
    partitionLeaderEpoch: batch.partitionLeaderEpoch,
    magic: batch.magic,
    attributes: batch.attributes,
    lastOffsetDelta: batch.lastOffsetDelta,
    baseTimestamp: batch.baseTimestamp,
    maxTimestamp: batch.maxTimestamp,
    producerId: batch.producerId,
    producerEpoch: batch.producerEpoch,
    baseSequence: batch.baseSequence,
    recordCount: batch.recordCount
  }
}
