/** The broker a benchmark runs against. */
import { utimesSync } from 'node:fs'
import { type RunningBroker, startBroker } from '../scripts/broker.ts'
import type { AdminCluster } from '../test/helpers/kafka.ts'

/**
 * KAFKA_BOOTSTRAP_SERVERS when set, else a broker started for this run (`broker`, which the
 * caller stops).
 */
export async function benchBroker(name: string): Promise<{ bootstrapServers: string; broker?: RunningBroker }> {
  const given = process.env.KAFKA_BOOTSTRAP_SERVERS
  if (given) {
    return { bootstrapServers: given }
  }
  const broker = await startBroker(name)
  // startBroker() prunes all but the 5 most recently modified run folders, data included, which
  // kills a broker whose folder went quiet while test runs started theirs: keep ours recent.
  setInterval(() => {
    const now = new Date()
    utimesSync(broker.runDir, now, now)
  }, 1000).unref()
  return { bootstrapServers: broker.bootstrapServers, broker }
}

/**
 * Creates `topic` and waits until every partition has a leader: a benchmark that starts on a
 * partition without one measures the election. 2,000 partitions take a while on a loaded machine.
 */
export async function createTopic(cluster: AdminCluster, topic: string, partitions: number): Promise<void> {
  await cluster.admin.createTopics({ topics: [topic], partitions, replicas: 1 })
  for (let attempt = 0; attempt < 1200; attempt++) {
    const found = (await cluster.metadata([topic]).catch(() => undefined))?.topics.get(topic)?.partitions ?? []
    if (found.length === partitions && found.every(p => p.leader >= 0)) {
      return
    }
    await new Promise(done => setTimeout(done, 100))
  }
  throw new Error(`topic ${topic} has no leader for every partition after 120 s`)
}
