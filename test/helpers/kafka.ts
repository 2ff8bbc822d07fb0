/** Shared helpers for integration tests against the run's real broker (test/global-setup.ts). */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { Admin } from '@platformatic/kafka'
import { type RunningBroker, restartBroker, startBroker, stopBroker } from '../../scripts/broker.ts'
import { type ClusterOptions, KafkaCluster } from '../../src/kafka/cluster.ts'
import { until } from './wait.ts'

export { runKafkaTool } from '../../scripts/broker.ts'

export function bootstrapServers(): string {
  const servers = process.env.KAFKA_BOOTSTRAP_SERVERS
  if (!servers) {
    throw new Error('KAFKA_BOOTSTRAP_SERVERS is not set: run integration tests through `npm test`')
  }
  return servers
}

/**
 * Our KafkaCluster, plus an @platformatic/kafka Admin on the same brokers: tests set the
 * cluster up (create, delete, commit) with another client than the one they check.
 */
export class AdminCluster extends KafkaCluster {
  readonly admin: Admin

  constructor(options: ClusterOptions) {
    super(options)
    this.admin = new Admin({
      clientId: options.clientId ?? 'kafka-backup-test',
      bootstrapBrokers: options.bootstrapServers
    })
  }

  override async close(): Promise<void> {
    await Promise.allSettled([super.close(), this.admin.close()])
  }
}

export function testCluster(servers = bootstrapServers().split(',')): AdminCluster {
  return new AdminCluster({ bootstrapServers: servers, clientId: 'kafka-backup-test' })
}

/** Topic names unique per test, so that tests never see each other's data. */
export function uniqueTopic(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`
}

export async function createTopic(
  cluster: AdminCluster,
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
    const metadata = await cluster.metadata([topic])
    const partitionsMetadata = metadata.topics.get(topic)?.partitions ?? []
    return partitionsMetadata.length === partitions && partitionsMetadata.every(p => p.leader >= 0)
  }, `a leader for every partition of ${topic}`)
}

/**
 * A broker of the calling test file's own, to stop and restart it: started before the file's
 * tests, stopped after them.
 */
export class OwnBroker {
  #broker: RunningBroker | undefined
  #cluster: AdminCluster | undefined

  constructor(name: string) {
    before(async () => {
      this.#broker = await startBroker(name)
      this.#cluster = testCluster([this.#broker.bootstrapServers])
    })
    after(async () => {
      await this.#cluster?.close()
      if (this.#broker) {
        await stopBroker(this.#broker)
      }
    })
  }

  get bootstrapServers(): string {
    return this.#running().bootstrapServers
  }

  /** Our cluster client (with an Admin) on it. */
  get cluster(): AdminCluster {
    this.#running()
    return this.#cluster!
  }

  /** Its log directory (one folder per partition, `{topic}-{partition}`). */
  get dataDir(): string {
    return join(this.#running().runDir, 'data')
  }

  /** Stops it (SIGTERM, a controlled shutdown), keeping its data for `restart`. */
  async stop(): Promise<void> {
    await stopBroker(this.#running(), { keepData: true })
  }

  /** Stops it if it runs and starts it again on the same data and ports after `downMs`. */
  async restart(downMs = 0): Promise<void> {
    this.#broker = await restartBroker(this.#running(), downMs)
  }

  #running(): RunningBroker {
    if (!this.#broker) {
      throw new Error('the broker starts in before(): use it inside a test')
    }
    return this.#broker
  }
}
