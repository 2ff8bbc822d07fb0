/** Shared helpers for integration tests against the run's real broker (test/global-setup.ts). */
import { randomUUID } from 'node:crypto'
import { KafkaCluster } from '../../src/kafka/cluster.ts'
import { until } from './wait.ts'

export { runKafkaTool } from '../../scripts/broker.ts'

export function bootstrapServers(): string {
  const servers = process.env.KAFKA_BOOTSTRAP_SERVERS
  if (!servers) {
    throw new Error('KAFKA_BOOTSTRAP_SERVERS is not set: run integration tests through `npm test`')
  }
  return servers
}

export function testCluster(): KafkaCluster {
  return new KafkaCluster({ bootstrapServers: bootstrapServers().split(','), clientId: 'kafka-backup-test' })
}

/** Topic names unique per test, so that tests never see each other's data. */
export function uniqueTopic(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`
}

export async function createTopic(
  cluster: KafkaCluster,
  topic: string,
  partitions = 1,
  configs: Record<string, string> = {}
): Promise<void> {
  await cluster.admin.createTopics({
    topics: [topic],
    partitions,
    replicas: 1,
    configs: Object.entries(configs).map(([name, value]) => ({ name, value }))
  })
  // Metadata answers before every partition has a leader; wait until all do.
  await until(async () => {
    const metadata = await cluster.metadata([topic], true)
    const partitionsMetadata = metadata.topics.get(topic)?.partitions ?? []
    return partitionsMetadata.length === partitions && partitionsMetadata.every(p => p.leader >= 0)
  }, `a leader for every partition of ${topic}`)
}
