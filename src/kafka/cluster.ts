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
  metadataV12,
  type SASLOptions
} from '@platformatic/kafka'
import { BackupError } from '../errors.ts'
import { type FailureContext, kafkaFailure } from './failure.ts'

export interface ClusterOptions {
  bootstrapServers: string[]
  clientId?: string
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  tls?: TlsOptions
  sasl?: SASLOptions
  /** How long runs keep retrying while no broker answers; default 5 minutes. */
  unreachableTimeoutMs?: number
  /** The config section of this cluster ("source", "target"), named in error messages. */
  configKey?: string
}

export class KafkaCluster {
  readonly admin: Admin
  readonly #pool: ConnectionPool
  readonly #bootstrapServers: string[]
  readonly #failureContext: Omit<FailureContext, 'what'>
  #connectionError: unknown
  readonly unreachableTimeoutMs: number
  /** The config key of `unreachableTimeoutMs`, for messages. */
  readonly unreachableTimeoutKey: string

  constructor(options: ClusterOptions) {
    const clientId = options.clientId ?? 'kafka-backup'
    this.#bootstrapServers = options.bootstrapServers
    const configKey = options.configKey ?? 'kafka'
    this.#failureContext = {
      bootstrapServers: options.bootstrapServers,
      configKey,
      sasl: options.sasl && { mechanism: options.sasl.mechanism, username: options.sasl.username }
    }
    this.unreachableTimeoutMs = options.unreachableTimeoutMs ?? 5 * 60_000
    this.unreachableTimeoutKey = `${configKey}.unreachable_timeout_secs`
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
    // An error that ends a connection after its handshake (the broker's TLS alert when it refuses
    // our client certificate) reaches the client only as an event; its waiting requests fail
    // with a bare "Connection closed". The latest one is kept so a failed call can say why.
    const remember = ({ connection }: { connection: Connection }) =>
      connection.on('error', (error: unknown) => {
        this.#connectionError = error
      })
    this.admin.on('client:broker:connect', remember)
    this.#pool.on('connect', remember)
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
   * Runs an admin call, turning the client's errors into ours (src/kafka/failure.ts):
   * KB_KAFKA_UNREACHABLE when no broker answered, KB_KAFKA_AUTHENTICATION, KB_KAFKA_TLS and
   * KB_KAFKA_AUTHORIZATION (naming `acl`, the right the call needs) for what a retry cannot
   * cure, KB_KAFKA otherwise.
   */
  async call<T>(what: string, run: () => Promise<T>, acl?: string): Promise<T> {
    try {
      const result = await run()
      this.#connectionError = undefined
      return result
    } catch (error) {
      throw this.failure(what, error, acl)
    }
  }

  /** Our error for a failed Kafka call (see `call`). */
  failure(what: string, error: unknown, acl?: string): BackupError {
    return kafkaFailure(error, { ...this.#failureContext, what, connectionError: this.#connectionError }, acl)
  }

  /** A connection to a broker by node id, from the latest metadata. */
  async connection(metadata: ClusterMetadata, nodeId: number): Promise<Connection> {
    const broker: Broker | undefined = metadata.brokers.get(nodeId)
    if (!broker) {
      throw new BackupError('KB_KAFKA', `broker ${nodeId} is not in the cluster metadata`, { nodeId })
    }
    return this.call(`connecting to broker ${nodeId} (${broker.host}:${broker.port})`, () =>
      this.#pool.get({ host: broker.host, port: broker.port })
    )
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#pool.close(), this.admin.close()])
  }
}
