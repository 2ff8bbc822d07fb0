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
  type Connection,
  ConnectionPool,
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
    try {
      return await this.admin.metadata({ topics, forceUpdate })
    } catch (error) {
      throw new BackupError(
        'KB_KAFKA_UNREACHABLE',
        `could not read metadata from ${this.#bootstrapServers.join(',')}: ${(error as Error).message}`,
        { cause: error, bootstrapServers: this.#bootstrapServers }
      )
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
