/**
 * OffsetForLeaderEpoch v4 (KIP-320): for a leader epoch, where the partition's log ends in that
 * epoch on the leader. The answer is the largest epoch at or below the one asked, and the first
 * offset of the next epoch after it (the log end offset for the current epoch). Both are -1 when
 * the leader knows no such epoch (every epoch it has is later than the one asked).
 */
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const OFFSET_FOR_LEADER_EPOCH = { apiKey: 23, version: 4 } as const

/** The epoch and end offset a leader answers when it knows no epoch at or below the one asked. */
export const UNDEFINED_EPOCH = -1
export const UNDEFINED_EPOCH_OFFSET = -1n

export interface EpochRequestTopic {
  name: string
  /** `currentLeaderEpoch` -1 skips the broker's fencing check of the caller's metadata. */
  partitions: Array<{ partitionIndex: number; currentLeaderEpoch: number; leaderEpoch: number }>
}

export interface EpochEndOffsets {
  name: string
  partitions: Array<{ partitionIndex: number; errorCode: number; leaderEpoch: number; endOffset: bigint }>
}

export function encodeOffsetForLeaderEpoch(topics: EpochRequestTopic[]): (w: Writer) => void {
  return w =>
    w
      .appendInt32(-1) // replica id: a consumer
      .appendArray(topics, (w, topic) =>
        w.appendString(topic.name).appendArray(topic.partitions, (w, p) => {
          w.appendInt32(p.partitionIndex).appendInt32(p.currentLeaderEpoch).appendInt32(p.leaderEpoch)
        })
      )
      .appendTaggedFields()
}

export function decodeOffsetForLeaderEpoch(r: Reader): EpochEndOffsets[] {
  r.readInt32() // throttle time
  const topics = r.readArray(r => ({
    name: r.readString(),
    partitions: r.readArray(r => {
      const errorCode = r.readInt16()
      const partitionIndex = r.readInt32()
      const leaderEpoch = r.readInt32()
      const endOffset = r.readInt64()
      return { partitionIndex, errorCode, leaderEpoch, endOffset }
    })
  }))
  r.skipTaggedFields()
  return topics
}
