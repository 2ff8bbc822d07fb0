/** The broker a benchmark runs against. */
import { utimesSync } from 'node:fs'
import { type RunningBroker, startBroker } from '../scripts/broker.ts'

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
