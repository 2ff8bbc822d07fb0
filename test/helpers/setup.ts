/** What most integration test files share: a cluster client, a producer, numbered records. */
import { after } from 'node:test'
import type { Producer } from '@platformatic/kafka'
import type { KafkaCluster } from '../../src/kafka/cluster.ts'
import { BASE_TIMESTAMP, newProducer } from './cases.ts'
import { testCluster } from './kafka.ts'

/**
 * A cluster client and a producer on the run's broker for the calling test file, closed after
 * its tests. Both connect on first use, so creating them while the file loads costs nothing.
 */
export function clusterAndProducer(): { cluster: KafkaCluster; producer: Producer } {
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
