/** Reads a whole topic back from the broker (READ_COMMITTED), decoded, for comparisons. */

import { decodeRecords, recordOffset, recordTimestamp } from '../../src/batch/records.ts'
import { splitRecordSet } from '../../src/batch/split.ts'
import { readCommittedBatches } from '../../src/batch/transactions.ts'
import { listOffsets, partitionKey } from '../../src/kafka/admin.ts'
import type { KafkaCluster } from '../../src/kafka/cluster.ts'
import { IsolationLevel, rawFetch } from '../../src/kafka/raw-fetch.ts'
import type { StoredRecord } from './backup.ts'
import { until } from './wait.ts'

export async function readTopicRecords(cluster: KafkaCluster, topic: string): Promise<StoredRecord[]> {
  const metadata = await cluster.metadata([topic])
  const topicMetadata = metadata.topics.get(topic)
  if (!topicMetadata) {
    throw new Error(`no topic ${topic}`)
  }
  const partitions = Array.from({ length: topicMetadata.partitionsCount }, (_, partition) => ({ topic, partition }))
  const [starts, ends] = await Promise.all([
    listOffsets(cluster, partitions, 'earliest'),
    listOffsets(cluster, partitions, 'lastStable')
  ])
  const records: StoredRecord[] = []
  for (const { partition } of partitions) {
    let offset = starts.get(partitionKey(topic, partition))!
    const end = ends.get(partitionKey(topic, partition))!
    const connection = await cluster.connection(metadata, topicMetadata.partitions[partition]!.leader)
    while (offset < end) {
      const response = await rawFetch(connection, {
        maxWaitMs: 100,
        minBytes: 1,
        maxBytes: 16 * 1024 * 1024,
        isolationLevel: IsolationLevel.READ_COMMITTED,
        topics: [
          {
            topicId: topicMetadata.id,
            partitions: [
              { partition, fetchOffset: offset, currentLeaderEpoch: -1, partitionMaxBytes: 16 * 1024 * 1024 }
            ]
          }
        ]
      })
      const fetched = response.topics[0]!.partitions[0]!
      if (fetched.errorCode !== 0) {
        throw new Error(`fetch ${topic}/${partition} at ${offset}: error ${fetched.errorCode}`)
      }
      const { batches } = splitRecordSet(fetched.records ?? Buffer.alloc(0))
      for (const batch of readCommittedBatches(batches, fetched.abortedTransactions, offset)) {
        for (const record of decodeRecords(batch)) {
          const recordAt = recordOffset(batch, record)
          if (recordAt < offset || recordAt >= end) {
            continue
          }
          records.push({
            partition,
            offset: recordAt,
            timestamp: recordTimestamp(batch, record),
            key: record.key === null ? null : record.key.toString('latin1'),
            value: record.value === null ? null : record.value.toString('latin1'),
            headers: record.headers.map(([k, v]) => [k.toString(), v === null ? null : v.toString('latin1')])
          })
        }
      }
      const last = batches.at(-1)
      if (!last) {
        break
      }
      offset = last.nextOffset
    }
  }
  return records
}

/** Records without their offsets: what must be equal between a source topic and its restore. */
export function contentOf(records: StoredRecord[]) {
  return records.map(({ offset: _offset, ...rest }) => rest)
}

/**
 * The partitions' log end offsets once every transaction on them is closed: the coordinator
 * writes the commit and abort markers after the producer's EndTxn returns, and until it has,
 * the last stable offset stays below the log end.
 */
export async function endOffsets(
  cluster: KafkaCluster,
  topic: string,
  partitions: number
): Promise<Array<bigint | undefined>> {
  const all = Array.from({ length: partitions }, (_, partition) => ({ topic, partition }))
  let ends = new Map<string, bigint>()
  await until(async () => {
    const [latest, stable] = await Promise.all([
      listOffsets(cluster, all, 'latest'),
      listOffsets(cluster, all, 'lastStable')
    ])
    ends = latest
    return all.every(
      ({ partition }) => latest.get(partitionKey(topic, partition)) === stable.get(partitionKey(topic, partition))
    )
  }, `every transaction on ${topic} to be closed by its markers`)
  return Array.from({ length: partitions }, (_, partition) => ends.get(partitionKey(topic, partition)))
}
