/**
 * The classic group membership APIs, each sent to the group's coordinator: JoinGroup v9,
 * SyncGroup v5, Heartbeat v4 and LeaveGroup v5 (all flexible versions). The member's metadata
 * and assignment are opaque bytes to the broker; src/group/work-group.ts defines them.
 */
import { isRetriable, ProtocolError } from '../wire/errors.ts'
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const JOIN_GROUP = { apiKey: 11, version: 9 } as const
export const SYNC_GROUP = { apiKey: 14, version: 5 } as const
export const HEARTBEAT = { apiKey: 12, version: 4 } as const
export const LEAVE_GROUP = { apiKey: 13, version: 5 } as const

export interface JoinGroupRequest {
  groupId: string
  sessionTimeoutMs: number
  rebalanceTimeoutMs: number
  /** Empty on the first join: the broker answers MEMBER_ID_REQUIRED with the id to join with. */
  memberId: string
  protocolType: string
  protocolName: string
  metadata: Uint8Array
  reason: string | null
}

export interface JoinGroupResponse {
  errorCode: number
  generationId: number
  protocolName: string | null
  leader: string
  memberId: string
  /** Every member with its metadata, for the leader only; empty for the others. */
  members: Array<{ memberId: string; metadata: Buffer }>
}

export function encodeJoinGroup(request: JoinGroupRequest): (w: Writer) => void {
  return w =>
    w
      .appendString(request.groupId)
      .appendInt32(request.sessionTimeoutMs)
      .appendInt32(request.rebalanceTimeoutMs)
      .appendString(request.memberId)
      .appendString(null) // group instance id: dynamic membership
      .appendString(request.protocolType)
      .appendArray([request], (w, r) => w.appendString(r.protocolName).appendBytes(r.metadata))
      .appendString(request.reason)
      .appendTaggedFields()
}

/**
 * Returns the error code with the response instead of throwing it: MEMBER_ID_REQUIRED carries
 * the member id to join with, and the caller decides what each group error means. Retriable
 * codes (a coordinator moved or still loading) are thrown, so that KafkaCluster.request looks the
 * coordinator up again and retries.
 */
export function decodeJoinGroup(r: Reader): JoinGroupResponse {
  r.readInt32() // throttle time
  const errorCode = throwRetriable(r.readInt16(), 'JoinGroup')
  const generationId = r.readInt32()
  r.readNullableString() // protocol type
  const protocolName = r.readNullableString()
  const leader = r.readString()
  r.readBoolean() // skip assignment: only for static members
  const memberId = r.readString()
  const members = r.readArray(r => {
    const memberId = r.readString()
    r.readNullableString() // group instance id
    return { memberId, metadata: r.readBytes() }
  })
  r.skipTaggedFields()
  return { errorCode, generationId, protocolName, leader, memberId, members }
}

export interface SyncGroupRequest {
  groupId: string
  generationId: number
  memberId: string
  protocolType: string
  protocolName: string
  /** The leader's assignment of every member; empty from the other members. */
  assignments: Array<{ memberId: string; assignment: Uint8Array }>
}

export function encodeSyncGroup(request: SyncGroupRequest): (w: Writer) => void {
  return w =>
    w
      .appendString(request.groupId)
      .appendInt32(request.generationId)
      .appendString(request.memberId)
      .appendString(null) // group instance id
      .appendString(request.protocolType)
      .appendString(request.protocolName)
      .appendArray(request.assignments, (w, a) => w.appendString(a.memberId).appendBytes(a.assignment))
      .appendTaggedFields()
}

/** This member's assignment, with the error code left to the caller (as JoinGroup). */
export function decodeSyncGroup(r: Reader): { errorCode: number; assignment: Buffer } {
  r.readInt32() // throttle time
  const errorCode = throwRetriable(r.readInt16(), 'SyncGroup')
  r.readNullableString() // protocol type
  r.readNullableString() // protocol name
  const assignment = r.readBytes()
  r.skipTaggedFields()
  return { errorCode, assignment }
}

export function encodeHeartbeat(groupId: string, generationId: number, memberId: string): (w: Writer) => void {
  return w =>
    w
      .appendString(groupId)
      .appendInt32(generationId)
      .appendString(memberId)
      .appendString(null) // group instance id
      .appendTaggedFields()
}

export function decodeHeartbeat(r: Reader): number {
  r.readInt32() // throttle time
  const errorCode = throwRetriable(r.readInt16(), 'Heartbeat')
  r.skipTaggedFields()
  return errorCode
}

export function encodeLeaveGroup(groupId: string, memberId: string, reason: string): (w: Writer) => void {
  return w =>
    w
      .appendString(groupId)
      .appendArray([memberId], (w, id) => w.appendString(id).appendString(null).appendString(reason))
      .appendTaggedFields()
}

/** Throws the group's or the member's error (UNKNOWN_MEMBER_ID when it was already gone). */
export function decodeLeaveGroup(groupId: string): (r: Reader) => void {
  return r => {
    r.readInt32() // throttle time
    const errorCode = r.readInt16()
    const memberErrors = r.readArray(r => {
      r.readString() // member id
      r.readNullableString() // group instance id
      return r.readInt16()
    })
    r.skipTaggedFields()
    const failed = errorCode !== 0 ? errorCode : memberErrors.find(code => code !== 0)
    if (failed !== undefined) {
      throw new ProtocolError(failed, `LeaveGroup of group ${groupId}`)
    }
  }
}

function throwRetriable(errorCode: number, what: string): number {
  if (isRetriable(errorCode)) {
    throw new ProtocolError(errorCode, what)
  }
  return errorCode
}

/** DescribeGroups v5 (encodeDescribeGroups in groups.ts) read for one group's members' client ids. */
export function decodeGroupMemberClients(r: Reader): string[] {
  r.readInt32() // throttle time
  const clients: string[] = []
  r.readArray(r => {
    const errorCode = r.readInt16()
    const groupId = r.readString()
    r.readString() // state
    r.readString() // protocol type
    r.readString() // protocol data
    r.readArray(r => {
      r.readString() // member id
      r.readNullableString() // group instance id
      clients.push(r.readString())
      r.readString() // client host
      r.readBytes() // metadata
      r.readBytes() // assignment
    })
    r.readInt32() // authorized operations
    if (errorCode !== 0) {
      throw new ProtocolError(errorCode, `DescribeGroups of ${groupId}`)
    }
  })
  r.skipTaggedFields()
  return clients
}
