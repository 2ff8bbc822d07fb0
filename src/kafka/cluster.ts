/**
 * One source or target cluster: an @platformatic/kafka Admin client for metadata and admin
 * calls, and a separate connection pool for our raw Fetch and Produce, so that a long-polling
 * fetch never queues an admin call behind it.
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import {
  Admin,
  type Broker,
  type ClusterMetadata,
  type ClusterPartitionMetadata,
  type Connection,
  ConnectionPool,
  findErrorBy,
  metadataV12,
  type SASLOptions
} from '@platformatic/kafka'
import { BackupError } from '../errors.ts'

export interface ClusterOptions {
  bootstrapServers: string[]
  clientId?: string
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  tls?: TlsOptions
  sasl?: SASLOptions
}

/** The most specific message of an error that aggregates others (the client's MultipleErrors). */
function innermost(error: unknown): string {
  let current = error as (Error & { errors?: unknown[] }) | undefined
  while (current?.errors?.[0] !== undefined) {
    current = current.errors[0] as Error & { errors?: unknown[] }
  }
  return current?.message ?? String(error)
}

export class KafkaCluster {
  readonly admin: Admin
  readonly #pool: ConnectionPool
  readonly #bootstrapServers: string[]

  constructor(options: ClusterOptions) {
    const clientId = options.clientId ?? 'kafka-backup'
    this.#bootstrapServers = options.bootstrapServers
    const timeouts = { connectTimeout: options.connectTimeoutMs ?? 10_000, timeout: options.requestTimeoutMs ?? 30_000 }
    const security = { tls: options.tls, sasl: options.sasl }
    this.admin = new Admin({ clientId, bootstrapBrokers: options.bootstrapServers, ...timeouts, ...security })
    this.#pool = new ConnectionPool(clientId, {
      ...security,
      connectTimeout: timeouts.connectTimeout,
      requestTimeout: timeouts.timeout,
      // Raw fetches are pipelined per broker; the pool's default of 5 in flight is enough.
      maxInflights: 5
    })
  }

  async metadata(topics: string[], forceUpdate = false): Promise<ClusterMetadata> {
    const metadata = await this.call('reading metadata', () => this.admin.metadata({ topics, forceUpdate }))
    const internal = topics.filter(topic => metadata.topics.get(topic) === undefined)
    if (internal.length > 0) {
      await this.#addInternalTopics(metadata, internal)
    }
    return metadata
  }

  /**
   * @platformatic/kafka's metadata cache leaves out internal topics (__consumer_offsets,
   * __transaction_state) and answers them with `undefined`. A direct Metadata request fills
   * them in, so that include_internal_topics can list, size and fetch them like any topic.
   */
  async #addInternalTopics(metadata: ClusterMetadata, topics: string[]): Promise<void> {
    const [broker] = metadata.brokers.values()
    if (!broker) {
      return
    }
    const response = await this.call('reading metadata of internal topics', async () =>
      metadataV12.api.async(await this.#pool.get(broker), topics, false, false)
    )
    for (const topic of response.topics) {
      if (topic.errorCode !== 0 || !topic.name) {
        continue
      }
      const partitions: ClusterPartitionMetadata[] = []
      for (const p of topic.partitions) {
        partitions[p.partitionIndex] = {
          leader: p.leaderId,
          leaderEpoch: p.leaderEpoch,
          replicas: p.replicaNodes,
          isr: p.isrNodes,
          offlineReplicas: p.offlineReplicas
        }
      }
      metadata.topics.set(topic.name, {
        id: topic.topicId,
        partitions,
        partitionsCount: topic.partitions.length,
        lastUpdate: Date.now()
      })
    }
  }

  /**
   * Runs an admin call, turning the client's errors into ours: KB_KAFKA_UNREACHABLE when no
   * broker answered (the message names the bootstrap servers), KB_KAFKA otherwise.
   */
  async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      const unreachable =
        findErrorBy(error as Error, 'code', 'PLT_KFK_NETWORK') ?? findErrorBy(error as Error, 'code', 'PLT_KFK_TIMEOUT')
      const servers = this.#bootstrapServers.join(',')
      throw unreachable
        ? new BackupError(
            'KB_KAFKA_UNREACHABLE',
            `${what} failed: no answer from Kafka at ${servers} (${innermost(error)})`,
            {
              cause: error,
              bootstrapServers: this.#bootstrapServers
            }
          )
        : new BackupError('KB_KAFKA', `${what} failed on ${servers}: ${innermost(error)}`, { cause: error })
    }
  }

  /** A connection to a broker by node id, from the latest metadata. */
  async connection(metadata: ClusterMetadata, nodeId: number): Promise<Connection> {
    const broker: Broker | undefined = metadata.brokers.get(nodeId)
    if (!broker) {
      throw new BackupError('KB_KAFKA', `broker ${nodeId} is not in the cluster metadata`, { nodeId })
    }
    return this.#pool.get({ host: broker.host, port: broker.port })
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#pool.close(), this.admin.close()])
  }
}
