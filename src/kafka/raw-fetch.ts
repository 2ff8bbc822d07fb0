/**
 * Fetch v17 with the record sets kept as raw bytes: Kafka's RecordBatch blocks go to the
 * segment writer untouched (docs/architecture.md, "Backup"): nothing here decodes a record.
 * Partition errors are returned, not thrown: the caller decides what a leader change or an
 * out-of-range offset means for its position.
 */
import { skipTaggedFields } from './protocol.ts'
import type { Connection } from './wire/connection.ts'
import type { Reader } from './wire/reader.ts'
import type { Writer } from './wire/writer.ts'

const FETCH_API_KEY = 1
const FETCH_API_VERSION = 17

export const IsolationLevel = { READ_UNCOMMITTED: 0, READ_COMMITTED: 1 } as const

export interface RawFetchPartitionRequest {
  partition: number
  fetchOffset: bigint
  /** -1 skips the broker's fencing check. */
  currentLeaderEpoch: number
  /**
   * The leader epoch of the last batch fetched before fetchOffset; the broker then answers with
   * `divergingEpoch` instead of records when its log does not continue that batch. -1 (the
   * default): no check.
   */
  lastFetchedEpoch?: number
  partitionMaxBytes: number
}

export interface RawFetchRequest {
  maxWaitMs: number
  minBytes: number
  maxBytes: number
  isolationLevel: (typeof IsolationLevel)[keyof typeof IsolationLevel]
  topics: Array<{ topicId: string; partitions: RawFetchPartitionRequest[] }>
}

export interface AbortedTransaction {
  producerId: bigint
  firstOffset: bigint
}

export interface RawFetchPartition {
  partition: number
  errorCode: number
  highWatermark: bigint
  lastStableOffset: bigint
  logStartOffset: bigint
  abortedTransactions: AbortedTransaction[]
  /** The record set as the broker sent it; may end with a truncated batch. */
  records: Buffer | null
  /** The leader's largest epoch at or below lastFetchedEpoch and where it ends, when its log diverges from ours there. */
  divergingEpoch?: { leaderEpoch: number; endOffset: bigint }
}

export interface RawFetchResponse {
  throttleTimeMs: number
  errorCode: number
  topics: Array<{ topicId: string; partitions: RawFetchPartition[] }>
  /** The response frame that `records` are views of (see rawFetch's `pooledResponse`). */
  frame: Buffer
}

/** A partition's tagged fields: tag 0 is DivergingEpoch (epoch, end offset, its own tagged fields). */
function readDivergingEpoch(reader: Reader): RawFetchPartition['divergingEpoch'] {
  let found: RawFetchPartition['divergingEpoch']
  const count = reader.readUnsignedVarInt()
  for (let i = 0; i < count; i++) {
    const tag = reader.readUnsignedVarInt()
    const size = reader.readUnsignedVarInt()
    const end = reader.position + size
    if (tag === 0) {
      const leaderEpoch = reader.readInt32()
      const endOffset = reader.readInt64()
      if (leaderEpoch >= 0 || endOffset >= 0n) {
        found = { leaderEpoch, endOffset }
      }
    }
    reader.position = end
  }
  return found
}

function parseRawFetchResponse(reader: Reader): RawFetchResponse {
  const throttleTimeMs = reader.readInt32()
  const errorCode = reader.readInt16()
  reader.readInt32() // session id: we use no fetch sessions
  const topics = reader.readArray(r => ({
    topicId: r.readUUID(),
    partitions: r.readArray(
      r => {
        const partition = r.readInt32()
        const errorCode = r.readInt16()
        const highWatermark = r.readInt64()
        const lastStableOffset = r.readInt64()
        const logStartOffset = r.readInt64()
        const abortedTransactions =
          r.readNullableArray(r => ({ producerId: r.readInt64(), firstOffset: r.readInt64() }), true, true) ?? []
        r.readInt32() // preferred read replica
        // A view into the response frame, not a copy.
        const records = r.readNullableBytes(true)
        const divergingEpoch = readDivergingEpoch(r)
        return {
          partition,
          errorCode,
          highWatermark,
          lastStableOffset,
          logStartOffset,
          abortedTransactions,
          records,
          ...(divergingEpoch && { divergingEpoch })
        }
      },
      true,
      false
    )
  }))
  skipTaggedFields(reader)
  return { throttleTimeMs, errorCode, topics, frame: reader.buffer } satisfies RawFetchResponse
}

function encodeRawFetchRequest(request: RawFetchRequest): (w: Writer) => void {
  return w =>
    w
      .appendInt32(request.maxWaitMs)
      .appendInt32(request.minBytes)
      .appendInt32(request.maxBytes)
      .appendInt8(request.isolationLevel)
      .appendInt32(0) // session id: a full fetch, no session
      .appendInt32(-1) // session epoch
      .appendArray(request.topics, (w, t) =>
        w.appendUUID(t.topicId).appendArray(t.partitions, (w, p) => {
          w.appendInt32(p.partition)
            .appendInt32(p.currentLeaderEpoch)
            .appendInt64(p.fetchOffset)
            .appendInt32(p.lastFetchedEpoch ?? -1)
            .appendInt64(-1n) // log start offset (followers only)
            .appendInt32(p.partitionMaxBytes)
        })
      )
      .appendArray([], () => {}) // forgotten topics
      .appendString('') // rack id
      .appendTaggedFields()
}

/**
 * `pooledResponse`: the frame comes from `responseBuffers` (wire/buffer-pool.ts); the caller
 * gives `response.frame` back there once nothing reads its record sets any more.
 */
export function rawFetch(
  connection: Connection,
  request: RawFetchRequest,
  options: { pooledResponse?: boolean } = {}
): Promise<RawFetchResponse> {
  return connection.send(FETCH_API_KEY, FETCH_API_VERSION, encodeRawFetchRequest(request), parseRawFetchResponse, {
    // A long poll is not a broker that stopped answering: the wait counts on top of the timeout.
    timeoutMs: connection.requestTimeoutMs + request.maxWaitMs,
    pooledResponse: options.pooledResponse
  })
}
