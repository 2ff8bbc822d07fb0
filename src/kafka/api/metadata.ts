/** Metadata v12: brokers, the cluster id, and each topic's id and partition leaders. */
import { ProtocolError } from '../wire/errors.ts'
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const METADATA = { apiKey: 3, version: 12 } as const

export interface Broker {
  nodeId: number
  host: string
  port: number
}

export interface PartitionMetadata {
  leader: number
  leaderEpoch: number
  replicas: number[]
  isr: number[]
  offlineReplicas: number[]
}

export interface TopicMetadata {
  id: string
  /** Indexed by partition number. */
  partitions: PartitionMetadata[]
  partitionsCount: number
  isInternal: boolean
}

export interface ClusterMetadata {
  /** The cluster id. */
  id: string
  controllerId: number
  brokers: Map<number, Broker>
  topics: Map<string, TopicMetadata>
}

/** `topics` null asks for every topic. */
export function encodeMetadata(topics: string[] | null): (w: Writer) => void {
  return w =>
    w
      .appendArray(topics, (w, name) => w.appendUUID('00000000-0000-0000-0000-000000000000').appendString(name))
      .appendBoolean(false) // allow_auto_topic_creation
      .appendBoolean(false) // include_topic_authorized_operations
      .appendTaggedFields()
}

export interface MetadataResponse extends ClusterMetadata {
  /** Topics the broker answered with an error (unknown, unauthorized, no leader yet), by name. */
  topicErrors: Map<string, ProtocolError>
}

export function decodeMetadata(r: Reader): MetadataResponse {
  r.readInt32() // throttle time
  const brokers = new Map<number, Broker>()
  for (const broker of r.readArray(r => {
    const nodeId = r.readInt32()
    const host = r.readString()
    const port = r.readInt32()
    r.readNullableString() // rack
    return { nodeId, host, port }
  })) {
    brokers.set(broker.nodeId, broker)
  }
  const id = r.readNullableString() ?? ''
  const controllerId = r.readInt32()
  const topics = new Map<string, TopicMetadata>()
  const topicErrors = new Map<string, ProtocolError>()
  r.readArray(r => {
    const errorCode = r.readInt16()
    const name = r.readNullableString() ?? ''
    const topicId = r.readUUID()
    const isInternal = r.readBoolean()
    const partitions: PartitionMetadata[] = []
    let count = 0
    r.readArray(r => {
      r.readInt16() // partition error: a missing leader shows as leader -1
      const index = r.readInt32()
      partitions[index] = {
        leader: r.readInt32(),
        leaderEpoch: r.readInt32(),
        replicas: r.readArray(r => r.readInt32(), true, false),
        isr: r.readArray(r => r.readInt32(), true, false),
        offlineReplicas: r.readArray(r => r.readInt32(), true, false)
      }
      count++
    })
    r.readInt32() // topic authorized operations
    if (errorCode !== 0) {
      topicErrors.set(name, new ProtocolError(errorCode, `Metadata of topic ${name}`, null, name))
    } else {
      topics.set(name, { id: topicId, partitions, partitionsCount: count, isInternal })
    }
  })
  r.skipTaggedFields()
  return { id, controllerId, brokers, topics, topicErrors }
}
