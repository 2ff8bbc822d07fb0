/**
 * One source or target cluster, on our own protocol layer (src/kafka/wire/). Two connection
 * pools, one connection per broker in each: `admin` for metadata and admin calls and `data`
 * for the raw Fetch and Produce, so that a long-polling fetch never queues an admin call
 * behind it. Every request goes through `request`, which routes it to any broker, a broker by
 * node id or a group's coordinator, and retries what a retry can cure (a broken connection,
 * NOT_COORDINATOR, a coordinator still loading) a few times before the caller sees it.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { BackupError } from '../errors.ts'
import { type Broker, type ClusterMetadata, decodeMetadata, encodeMetadata, METADATA } from './api/metadata.ts'
import { type FailureContext, kafkaFailure } from './failure.ts'
import { Connection } from './wire/connection.ts'
import { AuthenticationError, NetworkError, ProtocolError } from './wire/errors.ts'
import type { Reader } from './wire/reader.ts'
import type { SaslOptions } from './wire/sasl.ts'
import type { Writer } from './wire/writer.ts'

export type { Broker, ClusterMetadata, PartitionMetadata, TopicMetadata } from './api/metadata.ts'
export type { Connection } from './wire/connection.ts'

export interface ClusterOptions {
  bootstrapServers: string[]
  clientId?: string
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  tls?: TlsOptions
  sasl?: SaslOptions
  /** How long runs keep retrying while no broker answers; default 5 minutes. */
  unreachableTimeoutMs?: number
  /** The config section of this cluster ("source", "target"), named in error messages. */
  configKey?: string
}

/** Where a request goes: any broker, a broker by node id, or the coordinator of a consumer group. */
export type Target = 'any' | { broker: number } | { group: string }

/** Attempts of one request before its failure reaches the caller (whose own retry, Outage, is longer). */
const ATTEMPTS = 3
const RETRY_DELAY_MS = 250

export class KafkaCluster {
  readonly #options: ClusterOptions & { clientId: string; connectTimeoutMs: number; requestTimeoutMs: number }
  readonly #connections = new Map<string, Promise<Connection>>()
  readonly #failureContext: Omit<FailureContext, 'what'>
  /** Brokers from the latest metadata, tried before the bootstrap servers. */
  #brokers = new Map<number, Broker>()
  readonly #coordinators = new Map<string, Broker>()
  #closed = false
  readonly unreachableTimeoutMs: number
  /** The config key of `unreachableTimeoutMs`, for messages. */
  readonly unreachableTimeoutKey: string

  constructor(options: ClusterOptions) {
    this.#options = {
      ...options,
      clientId: options.clientId ?? 'kafka-backup',
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000
    }
    const configKey = options.configKey ?? 'kafka'
    this.#failureContext = {
      bootstrapServers: options.bootstrapServers,
      configKey,
      sasl: options.sasl && { mechanism: options.sasl.mechanism, username: options.sasl.username }
    }
    this.unreachableTimeoutMs = options.unreachableTimeoutMs ?? 5 * 60_000
    this.unreachableTimeoutKey = `${configKey}.unreachable_timeout_secs`
  }

  /**
   * Sends one request to `target` and returns its decoded response. `decode` throws a
   * ProtocolError for a top-level error code; retriable ones and broken connections are
   * retried (after a fresh coordinator lookup for a group), other errors are thrown as they are.
   * `timeoutMs` replaces the request timeout for calls the broker holds on purpose (JoinGroup
   * waits for the whole group to join).
   */
  async request<T>(
    target: Target,
    apiKey: number,
    version: number,
    encode: (writer: Writer) => void,
    decode: (reader: Reader) => T,
    timeoutMs?: number
  ): Promise<T> {
    let lastError: unknown
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (attempt > 0) {
        await sleep(RETRY_DELAY_MS * 2 ** (attempt - 1))
      }
      try {
        const connection = await this.#connectionTo(target)
        return await connection.send(apiKey, version, encode, decode, { timeoutMs })
      } catch (error) {
        if (!isRetriable(error) || this.#closed) {
          throw error
        }
        if (typeof target === 'object' && 'group' in target) {
          this.#coordinators.delete(target.group)
        }
        lastError = error
      }
    }
    throw lastError
  }

  async #connectionTo(target: Target): Promise<Connection> {
    if (target === 'any') {
      return this.#anyBroker()
    }
    if ('broker' in target) {
      const broker = this.#brokers.get(target.broker) ?? (await this.metadata([])).brokers.get(target.broker)
      if (broker === undefined) {
        throw new BackupError('KB_KAFKA', `broker ${target.broker} is not in the cluster metadata`, {
          nodeId: target.broker
        })
      }
      return this.#pooled('admin', broker.host, broker.port)
    }
    let coordinator = this.#coordinators.get(target.group)
    if (coordinator === undefined) {
      coordinator = await this.#findCoordinator(target.group)
      this.#coordinators.set(target.group, coordinator)
    }
    return this.#pooled('admin', coordinator.host, coordinator.port)
  }

  /** FindCoordinator v4 for a consumer group. */
  async #findCoordinator(group: string): Promise<Broker> {
    const connection = await this.#anyBroker()
    return connection.send(
      10,
      4,
      w =>
        w
          .appendInt8(0)
          .appendArray([group], (w, key) => w.appendString(key), true, false)
          .appendTaggedFields(),
      r => {
        r.readInt32() // throttle time
        const [found] = r.readArray(r => {
          r.readString() // key
          const nodeId = r.readInt32()
          const host = r.readString()
          const port = r.readInt32()
          const errorCode = r.readInt16()
          const errorMessage = r.readNullableString()
          return { nodeId, host, port, errorCode, errorMessage }
        })
        if (found === undefined || found.errorCode !== 0) {
          throw new ProtocolError(found?.errorCode ?? -1, `FindCoordinator for group ${group}`, found?.errorMessage)
        }
        return { nodeId: found.nodeId, host: found.host, port: found.port }
      }
    )
  }

  /**
   * A connection to any broker: the known brokers first, then the bootstrap servers. Failures
   * that another broker will not cure (TLS, authentication) end the search at once.
   */
  async #anyBroker(): Promise<Connection> {
    const candidates = [
      ...[...this.#brokers.values()].map(b => ({ host: b.host, port: b.port })),
      ...this.#options.bootstrapServers.map(parseServer)
    ]
    const errors: unknown[] = []
    for (const { host, port } of candidates) {
      try {
        return await this.#pooled('admin', host, port)
      } catch (error) {
        if (!isRetriable(error) || this.#closed) {
          throw error
        }
        errors.push(error)
      }
    }
    throw errors.length === 1
      ? errors[0]
      : new NetworkError(`no broker answered (${candidates.map(c => `${c.host}:${c.port}`).join(', ')})`, {
          host: candidates[0]?.host ?? '',
          port: candidates[0]?.port ?? 0,
          cause: errors.at(-1)
        })
  }

  /** The pool's connection to host:port, opened when there is none or the last one broke. */
  async #pooled(pool: 'admin' | 'data', host: string, port: number): Promise<Connection> {
    if (this.#closed) {
      throw new NetworkError(`the client of ${host}:${port} is closed`, { host, port })
    }
    const key = `${pool} ${host}:${port}`
    const existing = this.#connections.get(key)
    if (existing !== undefined) {
      const connection = await existing.catch(() => undefined)
      if (connection !== undefined && !connection.closed) {
        return connection
      }
      if (this.#connections.get(key) === existing) {
        this.#connections.delete(key)
      }
      return this.#pooled(pool, host, port)
    }
    const { clientId, tls, sasl, connectTimeoutMs, requestTimeoutMs } = this.#options
    const opening = Connection.open({ host, port, clientId, tls, sasl, connectTimeoutMs, requestTimeoutMs })
    this.#connections.set(key, opening)
    opening.catch(() => {
      if (this.#connections.get(key) === opening) {
        this.#connections.delete(key)
      }
    })
    return opening
  }

  /**
   * Metadata of `topics` (none: brokers and the cluster id only). A topic the broker answers
   * with an error fails the call with that error, naming the topic; retriable ones (a topic
   * just created or deleted, a leader being elected) are asked again a few times first.
   * Every call asks a broker: there is no cache.
   */
  async metadata(topics: string[]): Promise<ClusterMetadata> {
    for (let attempt = 1; ; attempt++) {
      const response = await this.call('reading metadata', () =>
        this.request('any', METADATA.apiKey, METADATA.version, encodeMetadata(topics), decodeMetadata)
      )
      this.#brokers = response.brokers
      const errors = [...response.topicErrors.values()]
      if (errors.length === 0) {
        return {
          id: response.id,
          controllerId: response.controllerId,
          brokers: response.brokers,
          topics: response.topics
        }
      }
      if (attempt >= ATTEMPTS || errors.some(error => !error.retriable)) {
        const error = errors.find(e => !e.retriable) ?? errors[0]!
        throw this.failure(
          'reading metadata',
          error,
          `Describe on topic ${[...response.topicErrors.keys()].join(', ')}`
        )
      }
      await sleep(RETRY_DELAY_MS * 2 ** (attempt - 1))
    }
  }

  /** Every topic's name, internal ones included. */
  async topicNames(): Promise<string[]> {
    const response = await this.call('listing topics', () =>
      this.request('any', METADATA.apiKey, METADATA.version, encodeMetadata(null), decodeMetadata)
    )
    this.#brokers = response.brokers
    return [...response.topics.keys()]
  }

  /**
   * Runs a Kafka call, turning its errors into ours (src/kafka/failure.ts):
   * KB_KAFKA_UNREACHABLE when no broker answered, KB_KAFKA_AUTHENTICATION, KB_KAFKA_TLS and
   * KB_KAFKA_AUTHORIZATION (naming `acl`, the right the call needs) for what a retry cannot
   * cure, KB_KAFKA otherwise.
   */
  async call<T>(what: string, run: () => Promise<T>, acl?: string): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw this.failure(what, error, acl)
    }
  }

  /** Our error for a failed Kafka call (see `call`). */
  failure(what: string, error: unknown, acl?: string): BackupError {
    return kafkaFailure(error, { ...this.#failureContext, what }, acl)
  }

  /** A data-pool connection (raw Fetch and Produce) to a broker by node id, from `metadata`. */
  async connection(metadata: ClusterMetadata, nodeId: number): Promise<Connection> {
    const broker = metadata.brokers.get(nodeId)
    if (!broker) {
      throw new BackupError('KB_KAFKA', `broker ${nodeId} is not in the cluster metadata`, { nodeId })
    }
    return this.call(`connecting to broker ${nodeId} (${broker.host}:${broker.port})`, () =>
      this.#pooled('data', broker.host, broker.port)
    )
  }

  async close(): Promise<void> {
    this.#closed = true
    const connections = [...this.#connections.values()]
    this.#connections.clear()
    await Promise.allSettled(connections.map(async opening => (await opening).close()))
  }
}

/** A broken connection or a retriable error code; never a TLS or SASL failure, which a retry cannot cure. */
function isRetriable(error: unknown): boolean {
  if (error instanceof ProtocolError) {
    return error.retriable
  }
  if (!(error instanceof NetworkError)) {
    return false
  }
  for (let cause = error.cause; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code
    if (
      cause instanceof AuthenticationError ||
      cause instanceof ProtocolError ||
      (typeof code === 'string' &&
        (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.includes('CERT')))
    ) {
      return false
    }
  }
  return !error.message.startsWith('TLS handshake failed')
}

function parseServer(server: string): { host: string; port: number } {
  const at = server.lastIndexOf(':')
  return { host: server.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(server.slice(at + 1)) }
}
