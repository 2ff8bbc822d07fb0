/**
 * One TCP or TLS connection to a broker: int32 size-prefixed frames, correlation ids, any
 * number of requests in flight (the broker answers them in order), a timeout per request, and
 * on open the ApiVersions exchange and SASL authentication. A connection that breaks or times
 * out fails every request in flight with a NetworkError whose cause is what broke it (a TLS
 * alert, a reset), and is not used again; the pool (cluster.ts) opens a new one.
 */
import { connect as connectTcp, type Socket } from 'node:net'
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { toolVersion } from '../../version.ts'
import { POOLED_MIN_BYTES, responseBuffers } from './buffer-pool.ts'
import { checkErrorCode, NetworkError } from './errors.ts'
import { Reader } from './reader.ts'
import type { SaslOptions } from './sasl.ts'
import { Writer } from './writer.ts'

export interface ConnectionOptions {
  host: string
  port: number
  clientId: string
  tls?: TlsOptions
  sasl?: SaslOptions
  connectTimeoutMs: number
  requestTimeoutMs: number
}

/** The first version of each API whose request and response headers carry tagged fields. */
const firstFlexibleVersion: Record<number, number> = {
  0: 9, // Produce
  1: 12, // Fetch
  2: 6, // ListOffsets
  3: 9, // Metadata
  8: 8, // OffsetCommit
  9: 6, // OffsetFetch
  10: 3, // FindCoordinator
  11: 6, // JoinGroup
  12: 4, // Heartbeat
  13: 4, // LeaveGroup
  14: 4, // SyncGroup
  15: 5, // DescribeGroups
  16: 3, // ListGroups
  17: Number.POSITIVE_INFINITY, // SaslHandshake
  18: 3, // ApiVersions
  19: 5, // CreateTopics
  20: 4, // DeleteTopics
  21: 2, // DeleteRecords
  22: 2, // InitProducerId
  23: 4, // OffsetForLeaderEpoch
  29: 2, // DescribeAcls
  30: 2, // CreateAcls
  31: 2, // DeleteAcls
  32: 4, // DescribeConfigs
  33: 2, // AlterConfigs
  36: 2, // SaslAuthenticate
  37: 2, // CreatePartitions
  42: 2, // DeleteGroups
  44: 1, // IncrementalAlterConfigs
  47: Number.POSITIVE_INFINITY, // OffsetDelete
  48: 1, // DescribeClientQuotas
  49: 1, // AlterClientQuotas
  50: 0, // DescribeUserScramCredentials
  51: 0, // AlterUserScramCredentials
  60: 0, // DescribeCluster
  68: 0, // ConsumerGroupHeartbeat
  69: 0 // ConsumerGroupDescribe
}

const API_VERSIONS = 18

/** One socket read at most: the size of Node's own read buffers. */
const READ_BUFFER_BYTES = 64 * 1024

/**
 * A frame with at least this much still to come is read into straight from the socket, not
 * copied out of the read buffer (Fetch responses of megabytes, docs/architecture.md "Protocol
 * layer"); a smaller rest is not worth a read of its own.
 */
const DIRECT_READ_MIN_BYTES = 16 * 1024

export function isFlexible(apiKey: number, version: number): boolean {
  const first = firstFlexibleVersion[apiKey]
  if (first === undefined) {
    throw new Error(`API key ${apiKey} is not in the flexible-version table (src/kafka/wire/connection.ts)`)
  }
  return version >= first
}

interface Pending {
  apiKey: number
  version: number
  decode: (reader: Reader) => unknown
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
  timer: NodeJS.Timeout
  pooledResponse: boolean
}

export interface SendOptions {
  timeoutMs?: number
  /**
   * The response frame comes from `responseBuffers` (buffer-pool.ts) and the decoded response
   * may hold views into it: the caller gives `Reader.buffer` back once it is done with them.
   */
  pooledResponse?: boolean
}

export class Connection {
  readonly host: string
  readonly port: number
  readonly #options: ConnectionOptions
  readonly #socket: Socket
  readonly #inFlight = new Map<number, Pending>()
  #correlationId = 0
  /** The size field of the next frame, as far as it has arrived. */
  readonly #sizeBytes = Buffer.alloc(4)
  #sizeFilled = 0
  /** The frame being received, and how much of it has arrived. */
  #frame: Buffer | undefined
  #frameFilled = 0
  #anyFrame = false
  /** What ended the connection, once it has ended. */
  #failure: NetworkError | undefined
  #socketError: unknown
  readonly #closed = Promise.withResolvers<void>()
  /** Highest version the broker supports, by API key. */
  #versions = new Map<number, number>()
  /** When the SASL session the broker granted must be renewed (0: never). */
  #reauthenticateAt = 0
  #reauthentication: Promise<void> | undefined
  /** Called once no request is in flight any more. */
  #onDrained: (() => void) | undefined

  private constructor(options: ConnectionOptions, socket: Socket) {
    this.host = options.host
    this.port = options.port
    this.#options = options
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('error', error => {
      this.#socketError ??= error
    })
    socket.on('close', () => {
      this.#fail(
        new NetworkError(`Connection to ${this.#address} closed`, { ...this.#where, cause: this.#socketError })
      )
      this.#closed.resolve()
    })
  }

  /** Connects, learns the broker's API versions and authenticates. */
  static async open(options: ConnectionOptions): Promise<Connection> {
    // The broker sends nothing before our first request, so no chunk arrives before `connection` is set.
    let connection: Connection | undefined
    const socket = await connectSocket(options, {
      target: () => (connection === undefined ? undefined : connection.#directTarget()),
      onData: chunk => connection!.#onData(chunk),
      onDirect: size => connection!.#onDirect(size)
    })
    connection = new Connection(options, socket)
    try {
      await connection.#negotiateVersions()
      if (options.sasl !== undefined) {
        await connection.#authenticate()
      }
    } catch (error) {
      connection.destroy()
      throw error
    }
    return connection
  }

  get #address(): string {
    return `${this.host}:${this.port}`
  }

  get #where() {
    return { host: this.host, port: this.port }
  }

  get requestTimeoutMs(): number {
    return this.#options.requestTimeoutMs
  }

  get closed(): boolean {
    return this.#failure !== undefined
  }

  /**
   * Sends one request and resolves with its decoded response. Requests are pipelined: many
   * may be in flight, answered in order.
   */
  async send<T>(
    apiKey: number,
    version: number,
    encode: (writer: Writer) => void,
    decode: (reader: Reader) => T,
    options: SendOptions = {}
  ): Promise<T> {
    if (this.#reauthenticateAt > 0 && Date.now() >= this.#reauthenticateAt) {
      this.#reauthentication ??= this.#reauthenticate().finally(() => {
        this.#reauthentication = undefined
      })
    }
    if (this.#reauthentication !== undefined) {
      await this.#reauthentication
    }
    return this.#send(apiKey, version, encode, decode, options)
  }

  #send<T>(
    apiKey: number,
    version: number,
    encode: (writer: Writer) => void,
    decode: (reader: Reader) => T,
    options: SendOptions = {}
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs
    if (this.#failure !== undefined) {
      return Promise.reject(this.#failure)
    }
    const supported = this.#versions.get(apiKey)
    if (apiKey !== API_VERSIONS && (supported === undefined || supported < version)) {
      return Promise.reject(
        new Error(
          `the broker at ${this.#address} does not support API ${apiKey} version ${version} (${supported === undefined ? 'none' : `up to version ${supported}`}); this tool needs Kafka 3.9 or later`
        )
      )
    }
    const correlationId = this.#correlationId
    this.#correlationId = (this.#correlationId + 1) | 0
    const writer = Writer.create()
      .appendInt32(0) // the frame size, set below
      .appendInt16(apiKey)
      .appendInt16(version)
      .appendInt32(correlationId)
      .appendString(this.#options.clientId, false)
    if (isFlexible(apiKey, version)) {
      writer.appendTaggedFields()
    }
    encode(writer)
    const { promise, resolve, reject } = Promise.withResolvers<T>()
    const timer = setTimeout(() => {
      this.#fail(
        new NetworkError(`Request to ${this.#address} timed out after ${timeoutMs} ms`, {
          ...this.#where,
          timeout: true
        })
      )
      this.#socket.destroy()
    }, timeoutMs)
    this.#inFlight.set(correlationId, {
      apiKey,
      version,
      decode,
      resolve: resolve as (value: unknown) => void,
      reject,
      timer,
      pooledResponse: options.pooledResponse === true
    })
    // The first chunk holds the size field and the header (a client id over 256 bytes aside).
    const chunks = writer.buffers
    chunks[0]!.writeInt32BE(writer.length - 4, 0)
    this.#socket.cork()
    for (const chunk of chunks) {
      this.#socket.write(chunk)
    }
    this.#socket.uncork()
    return promise
  }

  /**
   * Where the socket's next read may go instead of the read buffer: the rest of the frame being
   * received, when enough of it is still to come. The read then cannot run past the frame.
   */
  #directTarget(): Buffer | undefined {
    const frame = this.#frame
    return frame !== undefined && frame.length - this.#frameFilled >= DIRECT_READ_MIN_BYTES
      ? frame.subarray(this.#frameFilled)
      : undefined
  }

  /** `size` bytes were read into the frame at #directTarget. */
  #onDirect(size: number): void {
    this.#frameFilled += size
    if (this.#frameFilled === this.#frame!.length) {
      this.#frameDone()
    }
  }

  #frameDone(): void {
    const frame = this.#frame!
    this.#frame = undefined
    this.#anyFrame = true
    this.#dispatch(frame)
  }

  /**
   * Copies a received chunk into the frames it belongs to. The chunk is not kept: on a plain
   * TCP connection it is one reused read buffer (connectSocket's `onread`), so receiving
   * allocates nothing but each frame's own buffer.
   */
  #onData(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length) {
      if (this.#frame === undefined) {
        if (!this.#anyFrame && this.#sizeFilled === 0 && chunk[at] === 0x15 && chunk[at + 1] === 0x03) {
          // A TLS alert record where the first frame size belongs: the listener speaks TLS.
          this.#socketError ??= new Error('Broker requires TLS.')
          this.#socket.destroy()
          return
        }
        const used = Math.min(4 - this.#sizeFilled, chunk.length - at)
        chunk.copy(this.#sizeBytes, this.#sizeFilled, at, at + used)
        this.#sizeFilled += used
        at += used
        if (this.#sizeFilled < 4) {
          return
        }
        this.#sizeFilled = 0
        this.#frame = this.#frameBuffer(this.#sizeBytes.readInt32BE(0))
        this.#frameFilled = 0
        if (this.#frame === undefined) {
          return
        }
      }
      const frame = this.#frame
      const used = Math.min(frame.length - this.#frameFilled, chunk.length - at)
      chunk.copy(frame, this.#frameFilled, at, at + used)
      this.#frameFilled += used
      at += used
      if (this.#frameFilled === frame.length) {
        this.#frameDone()
      }
    }
  }

  /** The buffer of the next frame: from the response pool when the oldest request asked for it. */
  #frameBuffer(size: number): Buffer | undefined {
    if (size < 4) {
      this.#fail(new NetworkError(`${this.#address} sent a frame of ${size} bytes`, this.#where))
      this.#socket.destroy()
      return undefined
    }
    // The broker answers in order: the next frame is the oldest request's response.
    const oldest = this.#inFlight.values().next().value
    return oldest?.pooledResponse && size >= POOLED_MIN_BYTES ? responseBuffers.acquire(size) : Buffer.allocUnsafe(size)
  }

  #dispatch(frame: Buffer): void {
    const reader = new Reader(frame)
    const correlationId = reader.readInt32()
    const request = this.#inFlight.get(correlationId)
    if (request === undefined) {
      this.#fail(
        new NetworkError(`${this.#address} answered an unknown request (correlation id ${correlationId})`, this.#where)
      )
      this.#socket.destroy()
      return
    }
    this.#inFlight.delete(correlationId)
    clearTimeout(request.timer)
    this.#drained()
    try {
      // ApiVersions answers with the old header in every version, so that any client can read it.
      if (request.apiKey !== API_VERSIONS && isFlexible(request.apiKey, request.version)) {
        reader.skipTaggedFields()
      }
      request.resolve(request.decode(reader))
    } catch (error) {
      request.reject(error)
    }
  }

  /** Fails every request in flight, and every later one, with `error`. */
  #fail(error: NetworkError): void {
    this.#failure ??= error
    for (const request of this.#inFlight.values()) {
      clearTimeout(request.timer)
      request.reject(this.#failure)
    }
    this.#inFlight.clear()
    this.#drained()
  }

  #drained(): void {
    if (this.#inFlight.size === 0 && this.#onDrained !== undefined) {
      const onDrained = this.#onDrained
      this.#onDrained = undefined
      onDrained()
    }
  }

  async #negotiateVersions(): Promise<void> {
    const versions = await this.#send(
      API_VERSIONS,
      3,
      w => w.appendString('kafka-backup').appendString(toolVersion).appendTaggedFields(),
      r => {
        const errorCode = r.readInt16()
        checkErrorCode(errorCode, 'ApiVersions')
        return r.readArray(r => ({ apiKey: r.readInt16(), min: r.readInt16(), max: r.readInt16() }))
      }
    )
    this.#versions = new Map(versions.map(v => [v.apiKey, v.max]))
  }

  async #authenticate(): Promise<void> {
    // Loaded on first use, with node:crypto: most clusters need neither (start-up, docs/benchmarks.md).
    const { authenticate } = await import('./sasl.ts')
    const sessionLifetimeMs = await authenticate(this.#options.sasl!, (apiKey, version, encode, decode) =>
      this.#send(apiKey, version, encode, decode)
    )
    // Renew well before the broker's deadline (connections.max.reauth.ms), as Kafka's clients do.
    this.#reauthenticateAt = sessionLifetimeMs > 0 ? Date.now() + sessionLifetimeMs * 0.85 : 0
  }

  /** The broker reads no other request during a re-authentication: wait for the ones in flight. */
  async #reauthenticate(): Promise<void> {
    if (this.#inFlight.size > 0) {
      const drained = Promise.withResolvers<void>()
      this.#onDrained = drained.resolve
      await drained.promise
    }
    await this.#authenticate()
  }

  /** Ends the connection: requests still in flight fail. */
  async close(): Promise<void> {
    this.#fail(new NetworkError(`Connection to ${this.#address} was closed by this client`, this.#where))
    this.#socket.end()
    const timer = setTimeout(() => this.#socket.destroy(), 1000)
    await this.#closed.promise
    clearTimeout(timer)
  }

  destroy(): void {
    this.#socket.destroy()
  }
}

/** A connected socket (TLS handshake done), or a NetworkError whose cause says why not. */
interface SocketReader {
  /** A buffer the next read may fill instead of the read buffer (plain TCP only). */
  target(): Buffer | undefined
  /** Bytes read into the read buffer (or, on TLS, a chunk). */
  onData(chunk: Buffer): void
  /** Bytes read into the last `target()`. */
  onDirect(size: number): void
}

async function connectSocket(options: ConnectionOptions, reader: SocketReader): Promise<Socket> {
  const { host, port, tls, connectTimeoutMs } = options
  const address = `${host}:${port}`
  // node:tls (with node:crypto) costs ~15 ms of start-up: loaded only for a TLS listener.
  const connectTls = tls ? (await import('node:tls')).connect : undefined
  const { promise, resolve, reject } = Promise.withResolvers<Socket>()
  const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  let direct: Buffer | undefined
  const socket = connectTls
    ? connectTls({ host, port, servername: isIp(host) ? undefined : host, ...tls })
    : // Reads go into the frame being received when much of it is still to come, else into one
      // buffer per connection that onData copies out of, instead of a new buffer per read for
      // the garbage collector (TLS sockets take no `onread`). Node asks for the next read's
      // buffer after each read's callback.
      connectTcp({
        host,
        port,
        onread: {
          buffer: () => {
            direct = reader.target()
            return direct ?? readBuffer
          },
          callback: size => {
            if (direct === undefined) {
              reader.onData(readBuffer.subarray(0, size))
            } else {
              reader.onDirect(size)
            }
            return true
          }
        }
      })
  if (connectTls) {
    socket.on('data', reader.onData)
  }
  const fail = (cause: unknown) => {
    clearTimeout(timer)
    socket.destroy()
    const code = (cause as { code?: unknown } | undefined)?.code
    // The broker hung up on our TLS hello: its listener does not speak TLS.
    const message =
      tls && (code === 'ECONNRESET' || code === 'EPIPE' || cause === undefined)
        ? `TLS handshake failed with ${address}: the connection closed`
        : `Connection to ${address} failed`
    reject(new NetworkError(message, { host, port, cause }))
  }
  const timer = setTimeout(() => fail(new Error(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs)
  socket.once('error', fail)
  socket.once('close', () => fail(undefined))
  socket.once(tls ? 'secureConnect' : 'connect', () => {
    clearTimeout(timer)
    socket.removeListener('error', fail)
    socket.removeAllListeners('close')
    resolve(socket)
  })
  return promise
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':')
}
