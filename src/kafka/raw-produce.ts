/**
 * Produce v11 carrying pre-built RecordBatch bytes: one batch per partition per request
 * (the broker's rule from Produce v3), many partitions per request. The batches come from
 * the restore's rewrite step with baseOffset 0 and our idempotent producer's id, epoch and
 * sequence, so a retried request is de-duplicated by the broker instead of written twice.
 * Partition errors are returned, not thrown, so the caller can retry just those partitions.
 */
import { skipTaggedFields } from './protocol.ts'
import type { Connection } from './wire/connection.ts'
import { checkErrorCode, ProtocolError } from './wire/errors.ts'
import type { Reader } from './wire/reader.ts'
import type { Writer } from './wire/writer.ts'

const PRODUCE_API_KEY = 0
const PRODUCE_API_VERSION = 11
const INIT_PRODUCER_ID_API_KEY = 22
const INIT_PRODUCER_ID_API_VERSION = 5

export interface RawProducePartition {
  partition: number
  batch: Buffer
}

export interface RawProduceRequest {
  /** -1 (all in-sync replicas) for a restore: nothing counts as restored before it is replicated. */
  acks: number
  timeoutMs: number
  topics: Array<{ topic: string; partitions: RawProducePartition[] }>
}

export interface RawProducePartitionResult {
  partition: number
  errorCode: number
  /** The offset the broker gave the batch's first record. */
  baseOffset: bigint
  logStartOffset: bigint
  errorMessage: string | null
  recordErrors: Array<{ batchIndex: number; message: string | null }>
}

export interface RawProduceResponse {
  throttleTimeMs: number
  topics: Array<{ topic: string; partitions: RawProducePartitionResult[] }>
}

function encodeRawProduceRequest(request: RawProduceRequest): (w: Writer) => void {
  return w =>
    w
      .appendString(null)
      .appendInt16(request.acks)
      .appendInt32(request.timeoutMs)
      .appendArray(request.topics, (w, t) => {
        w.appendString(t.topic).appendArray(t.partitions, (w, p) => {
          w.appendInt32(p.partition)
            .appendUnsignedVarInt(p.batch.length + 1)
            .append(p.batch)
        })
      })
      .appendTaggedFields()
}

function parseRawProduceResponse(reader: Reader): RawProduceResponse {
  const topics = reader.readArray(
    r => {
      const topic = r.readString()
      const partitions = r.readArray(
        r => {
          const partition = r.readInt32()
          const errorCode = r.readInt16()
          const baseOffset = r.readInt64()
          r.readInt64() // log append time
          const logStartOffset = r.readInt64()
          const recordErrors = r.readArray(
            r => ({ batchIndex: r.readInt32(), message: r.readNullableString() }),
            true,
            true
          )
          const errorMessage = r.readNullableString()
          skipTaggedFields(r)
          return { partition, errorCode, baseOffset, logStartOffset, errorMessage, recordErrors }
        },
        true,
        false
      )
      skipTaggedFields(r)
      return { topic, partitions }
    },
    true,
    false
  )
  const throttleTimeMs = reader.readInt32()
  skipTaggedFields(reader)
  return { throttleTimeMs, topics } satisfies RawProduceResponse
}

export function rawProduce(connection: Connection, request: RawProduceRequest): Promise<RawProduceResponse> {
  // The broker may wait up to the request's own timeout for the replicas: an answer is still to come.
  return connection.send(
    PRODUCE_API_KEY,
    PRODUCE_API_VERSION,
    encodeRawProduceRequest(request),
    parseRawProduceResponse,
    { timeoutMs: connection.requestTimeoutMs + request.timeoutMs }
  )
}

export interface ProducerIdentity {
  producerId: bigint
  producerEpoch: number
}

/**
 * A fresh idempotent (non-transactional) producer id: any broker can hand one out. Retried
 * while the broker is still loading its producer-id state (right after a start); other
 * failures are the client's errors, for the caller to map (KafkaCluster.call).
 */
export async function initProducerId(connection: Connection, timeoutMs = 30_000): Promise<ProducerIdentity> {
  const deadline = Date.now() + timeoutMs
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2000)) {
    try {
      return await connection.send(
        INIT_PRODUCER_ID_API_KEY,
        INIT_PRODUCER_ID_API_VERSION,
        w =>
          w
            .appendString(null) // no transactional id: idempotent only
            .appendInt32(60_000) // transaction timeout
            .appendInt64(-1n) // producer id: a new one
            .appendInt16(-1) // producer epoch
            .appendTaggedFields(),
        r => {
          r.readInt32() // throttle time
          checkErrorCode(r.readInt16(), 'InitProducerId')
          const identity = { producerId: r.readInt64(), producerEpoch: r.readInt16() }
          r.skipTaggedFields()
          return identity
        }
      )
    } catch (error) {
      if (!(error instanceof ProtocolError) || !error.retriable || Date.now() + delayMs > deadline) {
        throw error
      }
      await new Promise(resolve => setTimeout(resolve, delayMs))
    }
  }
}
