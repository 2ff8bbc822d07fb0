/** What most integration test files share: a cluster client, a producer, numbered records. */
import { after } from 'node:test'
import type { Producer } from '@platformatic/kafka'
import { BASE_TIMESTAMP, newProducer } from './cases.ts'
import { type AdminCluster, testCluster } from './kafka.ts'

/**
 * A cluster client and a producer on the run's broker for the calling test file, closed after
 * its tests. Both connect on first use, so creating them while the file loads costs nothing.
 */
export function clusterAndProducer(): { cluster: AdminCluster; producer: Producer } {
  const cluster = testCluster()
  const producer = newProducer()
  after(async () => {
    await producer.close()
    await cluster.close()
  })
  return { cluster, producer }
}

/**
 * Records number `from` to `from + count - 1` into one partition, in one batch: key `k<n>`,
 * value `<label><n>` (padded with `valueBytes` x's), timestamp BASE_TIMESTAMP + n. Tests
 * recognise each record by its number.
 */
export async function produceNumbered(
  producer: Producer,
  topic: string,
  partition: number,
  from: number,
  count: number,
  { label = 'v', valueBytes = 0 }: { label?: string; valueBytes?: number } = {}
): Promise<void> {
  const padding = 'x'.repeat(valueBytes)
  await producer.send({
    messages: Array.from({ length: count }, (_, i) => ({
      topic,
      partition,
      key: Buffer.from(`k${from + i}`),
      value: Buffer.from(`${label}${from + i}${padding}`),
      timestamp: BASE_TIMESTAMP + BigInt(from + i)
    }))
  })
}

/**
 * `recordsPerPartition` numbered records (see produceNumbered) into each of `partitions`
 * partitions, `batchRecords` to a batch.
 */
export async function produceBatches(
  producer: Producer,
  topic: string,
  {
    partitions,
    recordsPerPartition,
    batchRecords = 100,
    valueBytes = 0
  }: { partitions: number; recordsPerPartition: number; batchRecords?: number; valueBytes?: number }
): Promise<void> {
  for (let partition = 0; partition < partitions; partition++) {
    for (let from = 0; from < recordsPerPartition; from += batchRecords) {
      const count = Math.min(batchRecords, recordsPerPartition - from)
      await produceNumbered(producer, topic, partition, from, count, { valueBytes })
    }
  }
}
