/**
 * Fetch v17 with the record sets kept as raw bytes: Kafka's RecordBatch blocks go to the
 * segment writer untouched (docs/architecture.md, "Backup"). The request builder is @platformatic/kafka's;
 * the response parser is ours because its own decodes every record.
 * Partition errors are returned, not thrown: the caller decides what a leader change or an
 * out-of-range offset means for its position.
 */
import { type Connection, fetchV17, type Reader } from '@platformatic/kafka'
import { skipTaggedFields } from './protocol.ts'

const FETCH_API_KEY = 1
const FETCH_API_VERSION = 17

export const IsolationLevel = { READ_UNCOMMITTED: 0, READ_COMMITTED: 1 } as const

export interface RawFetchPartitionRequest {
  partition: number
  fetchOffset: bigint
  /** -1 skips the broker's fencing check. */
  currentLeaderEpoch: number
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
}

export interface RawFetchResponse {
  throttleTimeMs: number
  errorCode: number
  topics: Array<{ topicId: string; partitions: RawFetchPartition[] }>
}

function parseRawFetchResponse(_correlationId: number, _apiKey: number, _apiVersion: number, reader: Reader) {
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
        // A view into the socket chunk when the record set lies in one; one copy otherwise.
        const records = r.readNullableBytes(true)
        skipTaggedFields(r)
        return { partition, errorCode, highWatermark, lastStableOffset, logStartOffset, abortedTransactions, records }
      },
      true,
      false
    )
  }))
  skipTaggedFields(reader)
  return { throttleTimeMs, errorCode, topics } satisfies RawFetchResponse
}

export function rawFetch(connection: Connection, request: RawFetchRequest): Promise<RawFetchResponse> {
  const { promise, resolve, reject } = Promise.withResolvers<RawFetchResponse>()
  const topics = request.topics.map(t => ({
    topicId: t.topicId,
    partitions: t.partitions.map(p => ({ ...p, lastFetchedEpoch: -1 }))
  }))
  connection.send(
    FETCH_API_KEY,
    FETCH_API_VERSION,
    () =>
      fetchV17.createRequest(
        request.maxWaitMs,
        request.minBytes,
        request.maxBytes,
        request.isolationLevel,
        0,
        -1,
        topics,
        [],
        ''
      ),
    parseRawFetchResponse,
    true,
    true,
    (error, response) => (error ? reject(error) : resolve(response as RawFetchResponse))
  )
  return promise
}
