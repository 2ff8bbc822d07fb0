/**
 * Consumer-group APIs: ListGroups v5 (per broker), DescribeGroups v5, OffsetFetch v8,
 * OffsetCommit v8 and OffsetDelete v0 (each to the group's coordinator).
 */
import { checkErrorCode } from '../wire/errors.ts'
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const LIST_GROUPS = { apiKey: 16, version: 5 } as const
export const DESCRIBE_GROUPS = { apiKey: 15, version: 5 } as const
export const OFFSET_FETCH = { apiKey: 9, version: 8 } as const
export const OFFSET_COMMIT = { apiKey: 8, version: 8 } as const
export const OFFSET_DELETE = { apiKey: 47, version: 0 } as const

export interface ListedGroup {
  groupId: string
  protocolType: string
  state: string
  type: string
}

export function encodeListGroups(types: string[]): (w: Writer) => void {
  return w =>
    w
      .appendArray([], () => {}, true, false) // any state
      .appendArray(types, (w, type) => w.appendString(type), true, false)
      .appendTaggedFields()
}

export function decodeListGroups(r: Reader): ListedGroup[] {
  r.readInt32() // throttle time
  checkErrorCode(r.readInt16(), 'ListGroups')
  const groups = r.readArray(r => ({
    groupId: r.readString(),
    protocolType: r.readString(),
    state: r.readString(),
    type: r.readString()
  }))
  r.skipTaggedFields()
  return groups
}

export function encodeDescribeGroups(groups: string[]): (w: Writer) => void {
  return w =>
    w
      .appendArray(groups, (w, group) => w.appendString(group), true, false)
      .appendBoolean(false) // authorized operations
      .appendTaggedFields()
}

/** Each group's state (`Empty`, `Stable`, `Dead` for an unknown group, ...). */
export function decodeDescribeGroups(r: Reader): Map<string, string> {
  r.readInt32() // throttle time
  const states = new Map<string, string>()
  r.readArray(r => {
    const errorCode = r.readInt16()
    const groupId = r.readString()
    const state = r.readString()
    r.readString() // protocol type
    r.readString() // protocol data
    r.readArray(r => {
      r.readString() // member id
      r.readNullableString() // group instance id
      r.readString() // client id
      r.readString() // client host
      r.readBytes() // metadata
      r.readBytes() // assignment
    })
    r.readInt32() // authorized operations
    checkErrorCode(errorCode, `DescribeGroups of ${groupId}`)
    states.set(groupId, state)
  })
  r.skipTaggedFields()
  return states
}

export interface CommittedOffset {
  topic: string
  partition: number
  /** -1: nothing committed. */
  offset: bigint
  leaderEpoch: number
  metadata: string | null
}

/** `topics` null asks for every partition the group has committed on. */
export function encodeOffsetFetch(
  groupId: string,
  topics: Array<{ name: string; partitions: number[] }> | null,
  requireStable: boolean
): (w: Writer) => void {
  return w =>
    w
      .appendArray([groupId], (w, id) =>
        w
          .appendString(id)
          .appendArray(topics, (w, topic) =>
            w.appendString(topic.name).appendArray(topic.partitions, (w, p) => w.appendInt32(p), true, false)
          )
      )
      .appendBoolean(requireStable)
      .appendTaggedFields()
}

/** The group's committed offsets; a group or partition error (e.g. UNSTABLE_OFFSET_COMMIT) is thrown. */
export function decodeOffsetFetch(r: Reader): CommittedOffset[] {
  r.readInt32() // throttle time
  const offsets: CommittedOffset[] = []
  r.readArray(r => {
    const groupId = r.readString()
    r.readArray(r => {
      const topic = r.readString()
      r.readArray(r => {
        const partition = r.readInt32()
        const offset = r.readInt64()
        const leaderEpoch = r.readInt32()
        const metadata = r.readNullableString()
        checkErrorCode(r.readInt16(), `OffsetFetch of group ${groupId} on ${topic}/${partition}`)
        offsets.push({ topic, partition, offset, leaderEpoch, metadata })
      })
    })
    checkErrorCode(r.readInt16(), `OffsetFetch of group ${groupId}`)
  })
  r.skipTaggedFields()
  return offsets
}

export interface OffsetToCommit {
  topic: string
  partition: number
  offset: bigint
}

/** Commits as an admin, outside any generation (the group must have no active members). */
export function encodeOffsetCommit(groupId: string, offsets: OffsetToCommit[]): (w: Writer) => void {
  return w =>
    w
      .appendString(groupId)
      .appendInt32(-1) // generation id
      .appendString('') // member id
      .appendString(null) // group instance id
      .appendArray(byTopic(offsets), (w, [topic, partitions]) =>
        w.appendString(topic).appendArray(
          partitions,
          (w, p) =>
            w
              .appendInt32(p.partition)
              .appendInt64(p.offset)
              .appendInt32(-1) // leader epoch
              .appendString(null) // metadata
        )
      )
      .appendTaggedFields()
}

/** Throws the first partition's error. */
export function decodeOffsetCommit(groupId: string): (r: Reader) => void {
  return r => {
    r.readInt32() // throttle time
    r.readArray(r => {
      const topic = r.readString()
      r.readArray(r => {
        const partition = r.readInt32()
        checkErrorCode(r.readInt16(), `OffsetCommit of group ${groupId} on ${topic}/${partition}`)
      })
    })
    r.skipTaggedFields()
  }
}

export function encodeOffsetDelete(groupId: string, partitions: Array<{ topic: string; partition: number }>) {
  return (w: Writer) =>
    w
      .appendString(groupId, false)
      .appendArray(
        byTopic(partitions),
        (w, [topic, entries]) =>
          w.appendString(topic, false).appendArray(entries, (w, p) => w.appendInt32(p.partition), false),
        false
      )
}

export function decodeOffsetDelete(groupId: string): (r: Reader) => void {
  return r => {
    checkErrorCode(r.readInt16(), `OffsetDelete of group ${groupId}`)
    r.readInt32() // throttle time
    r.readArray(r => {
      const topic = r.readString(false)
      r.readArray(r => {
        const partition = r.readInt32()
        checkErrorCode(r.readInt16(), `OffsetDelete of group ${groupId} on ${topic}/${partition}`)
      }, false)
    }, false)
  }
}

function byTopic<T extends { topic: string }>(entries: T[]): Array<[string, T[]]> {
  const topics = new Map<string, T[]>()
  for (const entry of entries) {
    topics.set(entry.topic, [...(topics.get(entry.topic) ?? []), entry])
  }
  return [...topics]
}
