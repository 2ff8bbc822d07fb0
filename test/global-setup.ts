/**
 * One Kafka broker for the whole `node --test` run, shared by every integration test file.
 * With KAFKA_BOOTSTRAP_SERVERS set, that cluster is used and nothing is started.
 * Test files run in child processes that inherit the environment set here.
 */
import { type RunningBroker, startBroker, stopBroker } from '../scripts/broker.ts'

let broker: RunningBroker | undefined

export async function globalSetup(): Promise<void> {
  if (process.env.KAFKA_BOOTSTRAP_SERVERS) {
    return
  }
  const startedAt = performance.now()
  broker = await startBroker('test')
  process.env.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrapServers
  process.env.KAFKA_TEST_BROKER_LOG = broker.logFile
  console.error(
    `# kafka broker ${broker.bootstrapServers} ready in ${Math.round(performance.now() - startedAt)} ms (log ${broker.logFile})`
  )
}

export async function globalTeardown(): Promise<void> {
  if (broker) {
    // The log stays (scripts/broker.ts prunes old runs) so that a failure can be read after the run.
    await stopBroker(broker, { keepLog: true })
    console.error(`# kafka broker stopped; its log: ${broker.logFile}`)
  }
}
