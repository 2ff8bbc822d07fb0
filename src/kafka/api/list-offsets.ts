/** ListOffsets v9: a partition's log start (-2), high watermark or last stable offset (-1). */
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const LIST_OFFSETS = { apiKey: 2, version: 9 } as const

export const OffsetTimestamp = { LATEST: -1n, EARLIEST: -2n } as const

export interface ListOffsetsTopic {
  name: string
  partitions: Array<{ partitionIndex: number; currentLeaderEpoch: number; timestamp: bigint }>
}

export interface ListedOffsets {
  name: string
  partitions: Array<{ partitionIndex: number; errorCode: number; offset: bigint }>
}

/** isolationLevel 1 (READ_COMMITTED) answers the last stable offset for LATEST. */
export function encodeListOffsets(isolationLevel: number, topics: ListOffsetsTopic[]): (w: Writer) => void {
  return w =>
    w
      .appendInt32(-1) // replica id: a consumer
      .appendInt8(isolationLevel)
      .appendArray(topics, (w, topic) =>
        w.appendString(topic.name).appendArray(topic.partitions, (w, p) => {
          w.appendInt32(p.partitionIndex).appendInt32(p.currentLeaderEpoch).appendInt64(p.timestamp)
        })
      )
      .appendTaggedFields()
}

export function decodeListOffsets(r: Reader): ListedOffsets[] {
  r.readInt32() // throttle time
  const topics = r.readArray(r => ({
    name: r.readString(),
    partitions: r.readArray(r => {
      const partitionIndex = r.readInt32()
      const errorCode = r.readInt16()
      r.readInt64() // timestamp
      const offset = r.readInt64()
      r.readInt32() // leader epoch
      return { partitionIndex, errorCode, offset }
    })
  }))
  r.skipTaggedFields()
  return topics
}
