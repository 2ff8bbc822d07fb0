/**
 * Workers sharing a list of work items through a Kafka group: the broker's group coordinator
 * decides who is in the group and when it changes, and the member it names leader splits the
 * items (strings such as "orders/3") among the members. Nothing here knows what an item is.
 *
 * The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) under our own
 * protocol type, as Kafka Connect does with "connect": its assignment is computed by a member,
 * so it can hand out anything, not only the topic partitions a KIP-848 consumer group's
 * server-side assignor knows (docs/architecture.md, "Workers").
 *
 * Rebalances are eager: when the group changes, every member gives up all of its items (the
 * `revoked` signal of its assignment aborts), returns, and joins again; the leader then hands
 * out the items again, leaving each member the ones it had where the counts allow (sticky), so
 * a worker joining or leaving moves only the items it brings or takes.
 *
 * Give the group its own KafkaCluster: JoinGroup is held at the coordinator until the group has
 * joined (up to the rebalance timeout), and a broker answers one request per connection at a
 * time, so it would stall every other call sharing that connection.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { DESCRIBE_GROUPS, encodeDescribeGroups } from '../kafka/api/groups.ts'
import {
  decodeGroupMemberClients,
  decodeHeartbeat,
  decodeJoinGroup,
  decodeLeaveGroup,
  decodeSyncGroup,
  encodeHeartbeat,
  encodeJoinGroup,
  encodeLeaveGroup,
  encodeSyncGroup,
  HEARTBEAT,
  JOIN_GROUP,
  LEAVE_GROUP,
  SYNC_GROUP
} from '../kafka/api/membership.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { Outage, untilAborted } from '../kafka/retry.ts'
import { errorName, ProtocolError } from '../kafka/wire/errors.ts'

/** The group's protocol type on the broker; other clients (consumers, Connect) cannot join it. */
export const PROTOCOL_TYPE = 'kafka-backup'
/**
 * The one assignment protocol members offer, named after its version of the metadata below:
 * JSON, raw-deflated, because the coordinator stores every member's metadata and assignment in
 * one record of __consumer_offsets, and item lists repeat their topic names (20 members knowing
 * 2,000 partitions: 2.2 MB in plain JSON, over the broker's 1 MB record limit; 0.1 MB deflated).
 */
const PROTOCOL_NAME = 'sticky-items-v2'

export interface WorkGroupLogger {
  info(context: object, message: string): void
  warn(context: object, message: string): void
}

export interface WorkGroupOptions {
  /** Its own connections (see above), not the cluster the work uses. */
  cluster: KafkaCluster
  groupId: string
  /** The items this member knows of; read at every join, so a member can add items and rejoin. */
  items: readonly string[] | (() => readonly string[])
  /** The coordinator removes a member it has not heard from for this long. */
  sessionTimeoutMs: number
  /** How often a member tells the coordinator it is alive, and learns of a rebalance. */
  heartbeatIntervalMs: number
  /** How long the coordinator waits for every member to rejoin in a rebalance. */
  rebalanceTimeoutMs: number
  /** Aborting it ends the member's work: the assignment is revoked and the member leaves. */
  signal: AbortSignal
  logger?: WorkGroupLogger
}

export interface Assignment {
  /** The group's generation: it changes at every rebalance, and only one member holds an item in it. */
  generation: number
  memberId: string
  leader: boolean
  /** This member's items, sorted. */
  items: string[]
}

/**
 * Why an assignment was revoked (the `reason` of the revoked signal): `rebalance` (the group
 * changed; the member is still in it), `lost` (the coordinator no longer knows the member: it
 * was silent past the session timeout, or heartbeats failed for that long), `stopped` (the
 * run's signal aborted).
 */
export type RevokeReason = 'rebalance' | 'lost' | 'stopped'

export class AssignmentRevoked extends Error {
  readonly reason: RevokeReason

  constructor(reason: RevokeReason, detail: string) {
    super(`assignment revoked (${reason}): ${detail}`)
    this.name = 'AssignmentRevoked'
    this.reason = reason
  }
}

/**
 * Called once per generation with this member's items. `revoked` aborts (its reason an
 * AssignmentRevoked) when the member must give the items up; the callback then stops its work
 * on them and returns. `done` leaves the group and ends runWorkGroup; `continue` joins again
 * (a new generation: after a revoke, or when the member's items changed).
 */
export type OnAssignment = (assignment: HeldAssignment, revoked: AbortSignal) => Promise<'done' | 'continue'>

/** An assignment while this member works on it. */
export interface HeldAssignment extends Assignment {
  /**
   * Whether the coordinator still counts this member: a heartbeat it answered was sent less than
   * a session timeout ago. Checked right before each write to the items' data, since a process
   * paused past its session timeout (a stopped VM, a long GC) wakes with timers and writes that
   * run before its next heartbeat learns that its items moved on (docs/architecture.md "Workers").
   */
  leaseValid(): boolean
}

/** What a member tells the leader when it joins: the items it knows and the ones it holds. */
interface MemberMetadata {
  items: string[]
  owned: string[]
}

/**
 * Runs this process as a member of the group until `onAssignment` returns `done` or the signal
 * aborts, then leaves the group (so its items move at once instead of after the session
 * timeout). An error thrown by `onAssignment` also leaves the group, and is rethrown.
 */
export async function runWorkGroup(options: WorkGroupOptions, onAssignment: OnAssignment): Promise<void> {
  const { cluster, groupId, signal, logger } = options
  const outage = new Outage({
    what: `joining work group ${groupId}`,
    deadlineMs: cluster.unreachableTimeoutMs,
    deadlineKey: cluster.unreachableTimeoutKey,
    signal,
    onRetry: (message, context) => logger?.warn(context, message)
  })
  let memberId = ''
  let owned: string[] = []
  try {
    while (!signal.aborted) {
      const items = [...new Set(typeof options.items === 'function' ? options.items() : options.items)].sort()
      let round: Round
      try {
        round = await untilAborted(
          cluster.call(
            `joining work group ${groupId}`,
            () => joinAndSync(options, memberId, { items, owned }),
            `Read on group ${groupId}`
          ),
          signal
        )
      } catch (error) {
        if (signal.aborted) {
          break
        }
        // A broker still creating its group coordinator (COORDINATOR_NOT_AVAILABLE for the first
        // seconds of a new cluster) outlasts the request's own few retries: wait like an outage.
        await outage.retry(retriableCause(error) ?? error)
        continue
      }
      outage.recovered()
      memberId = round.memberId
      if (round.assignment === undefined) {
        if (round.forgetMemberId) {
          memberId = ''
          owned = []
        }
        continue
      }
      const assignment = round.assignment
      logger?.info(
        {
          groupId,
          memberId,
          generation: assignment.generation,
          leader: assignment.leader,
          items: assignment.items.length
        },
        `joined work group ${groupId} (generation ${assignment.generation}): ${assignment.items.length} items`
      )
      const heartbeat = startHeartbeat(options, assignment)
      let result: 'done' | 'continue'
      try {
        result = await onAssignment({ ...assignment, leaseValid: heartbeat.leaseValid }, heartbeat.revoked)
      } finally {
        heartbeat.stop()
      }
      const lost = heartbeat.lostMembership()
      owned = lost ? [] : assignment.items
      if (lost) {
        memberId = ''
      }
      if (result === 'done') {
        return
      }
    }
  } finally {
    if (memberId !== '') {
      await leaveGroup(cluster, groupId, memberId, logger)
    }
  }
}

interface Round {
  memberId: string
  /** Undefined: join again (a member id to take, or a group change a new join cures). */
  assignment?: Assignment
  /** The member id is no longer valid: join as a new member. */
  forgetMemberId?: boolean
}

/** One JoinGroup and SyncGroup: the member's assignment in the new generation, or why there is none. */
async function joinAndSync(options: WorkGroupOptions, memberId: string, metadata: MemberMetadata): Promise<Round> {
  const { cluster, groupId, logger } = options
  const joined = await joinGroup(options, memberId, metadata)
  if (joined.generation === undefined) {
    return { memberId: joined.memberId, forgetMemberId: joined.forgetMemberId }
  }
  const leader = joined.leader === joined.memberId
  const assignments = leader ? assignItems(joined.members) : new Map<string, string[]>()
  const synced = await cluster.request(
    { group: groupId },
    SYNC_GROUP.apiKey,
    SYNC_GROUP.version,
    encodeSyncGroup({
      groupId,
      generationId: joined.generation,
      memberId: joined.memberId,
      protocolType: PROTOCOL_TYPE,
      protocolName: PROTOCOL_NAME,
      assignments: [...assignments].map(([id, items]) => ({
        memberId: id,
        assignment: pack({ items })
      }))
    }),
    decodeSyncGroup,
    // Members wait in SyncGroup for the leader's assignment.
    options.rebalanceTimeoutMs + 5_000
  )
  if (synced.errorCode !== 0) {
    const error = errorName(synced.errorCode)
    logger?.info({ groupId, memberId: joined.memberId, error }, 'the work group changed during sync; joining again')
    if (error !== 'REBALANCE_IN_PROGRESS' && !forgetsMember(synced.errorCode)) {
      throw new ProtocolError(synced.errorCode, `SyncGroup of group ${groupId}`)
    }
    return { memberId: joined.memberId, forgetMemberId: forgetsMember(synced.errorCode) }
  }
  return {
    memberId: joined.memberId,
    assignment: {
      generation: joined.generation,
      memberId: joined.memberId,
      leader,
      items: parseAssignment(synced.assignment)
    }
  }
}

interface Joined {
  memberId: string
  /** Undefined: join again (a member id to take, or a group error a new join cures). */
  generation?: number
  leader?: string
  members: Array<{ memberId: string; metadata: MemberMetadata }>
  forgetMemberId?: boolean
}

async function joinGroup(options: WorkGroupOptions, memberId: string, metadata: MemberMetadata): Promise<Joined> {
  const { cluster, groupId, sessionTimeoutMs, rebalanceTimeoutMs, logger } = options
  const response = await cluster.request(
    { group: groupId },
    JOIN_GROUP.apiKey,
    JOIN_GROUP.version,
    encodeJoinGroup({
      groupId,
      sessionTimeoutMs,
      rebalanceTimeoutMs,
      memberId,
      protocolType: PROTOCOL_TYPE,
      protocolName: PROTOCOL_NAME,
      metadata: pack(metadata),
      reason: null
    }),
    decodeJoinGroup,
    // The coordinator holds the request until every member rejoined, at most the rebalance timeout.
    rebalanceTimeoutMs + 5_000
  )
  const code = response.errorCode
  if (code === 0) {
    return {
      memberId: response.memberId,
      generation: response.generationId,
      leader: response.leader,
      members: response.members.map(m => ({ memberId: m.memberId, metadata: parseMetadata(m.metadata) }))
    }
  }
  const name = errorName(code)
  if (name === 'MEMBER_ID_REQUIRED') {
    return { memberId: response.memberId, members: [] }
  }
  if (name === 'REBALANCE_IN_PROGRESS' || forgetsMember(code)) {
    logger?.info({ groupId, memberId, error: name }, 'joining the work group again')
    return { memberId, members: [], forgetMemberId: forgetsMember(code) }
  }
  throw new ProtocolError(code, `JoinGroup of group ${groupId}`)
}

/** Errors after which the member id is no longer valid: join as a new member. */
function forgetsMember(errorCode: number): boolean {
  return ['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID'].includes(errorName(errorCode))
}

interface Heartbeat {
  revoked: AbortSignal
  /** See HeldAssignment. */
  leaseValid(): boolean
  stop(): void
  /** Whether the coordinator dropped the member (its id is no longer valid). */
  lostMembership(): boolean
}

/**
 * Heartbeats every heartbeatIntervalMs. REBALANCE_IN_PROGRESS revokes the assignment
 * (`rebalance`); an unknown member or stale generation revokes it as `lost`; so do failed
 * heartbeats for a whole session timeout, since the coordinator has dropped the member by then.
 */
function startHeartbeat(options: WorkGroupOptions, assignment: Assignment): Heartbeat {
  const { cluster, groupId, heartbeatIntervalMs, sessionTimeoutMs, signal, logger } = options
  const revoke = new AbortController()
  const stopped = new AbortController()
  let lost = false
  const revokeWith = (reason: RevokeReason, detail: string) => {
    lost ||= reason === 'lost'
    if (!revoke.signal.aborted) {
      logger?.info({ groupId, memberId: assignment.memberId, generation: assignment.generation, reason }, detail)
      revoke.abort(new AssignmentRevoked(reason, detail))
    }
  }
  // The session runs from the member's last request the coordinator answered: the SyncGroup just
  // before this, then each answered heartbeat, counted from when it was sent.
  let sessionFrom = performance.now()
  const onStop = () => revokeWith('stopped', 'the run is stopping')
  signal.addEventListener('abort', onStop, { once: true })
  // Heartbeats go on after a rebalance or stop revoked the assignment, until the callback has
  // returned: the coordinator keeps a member that is still giving its items up (making its data
  // durable can outlast the session timeout) only while it hears from it.
  const loop = async () => {
    let lastSuccess = Date.now()
    const stop = stopped.signal
    while (!stop.aborted) {
      await sleep(heartbeatIntervalMs, undefined, { signal: stop }).catch(() => {})
      if (stop.aborted) {
        return
      }
      let code: number
      const sentAt = performance.now()
      try {
        code = await cluster.request(
          { group: groupId },
          HEARTBEAT.apiKey,
          HEARTBEAT.version,
          encodeHeartbeat(groupId, assignment.generation, assignment.memberId),
          decodeHeartbeat,
          // An answer later than the session timeout is worthless: the member is gone by then.
          sessionTimeoutMs
        )
      } catch (error) {
        if (Date.now() - lastSuccess >= sessionTimeoutMs) {
          revokeWith(
            'lost',
            `no heartbeat reached the coordinator for ${sessionTimeoutMs} ms: ${(error as Error).message}`
          )
          return
        }
        logger?.warn({ groupId, error: (error as Error).message }, 'work group heartbeat failed; retrying')
        continue
      }
      if (code === 0 || errorName(code) === 'REBALANCE_IN_PROGRESS') {
        lastSuccess = Date.now()
        sessionFrom = sentAt
      }
      if (errorName(code) === 'REBALANCE_IN_PROGRESS') {
        revokeWith('rebalance', 'the work group is rebalancing')
      } else if (code !== 0) {
        revokeWith(
          'lost',
          forgetsMember(code)
            ? `the coordinator dropped this member (${errorName(code)})`
            : `heartbeat failed with ${errorName(code)}`
        )
        return
      }
    }
  }
  void loop()
  return {
    revoked: revoke.signal,
    leaseValid: () => !lost && performance.now() < sessionFrom + sessionTimeoutMs,
    stop() {
      signal.removeEventListener('abort', onStop)
      stopped.abort()
    },
    lostMembership: () => lost
  }
}

async function leaveGroup(
  cluster: KafkaCluster,
  groupId: string,
  memberId: string,
  logger: WorkGroupLogger | undefined
): Promise<void> {
  try {
    await cluster.request(
      { group: groupId },
      LEAVE_GROUP.apiKey,
      LEAVE_GROUP.version,
      encodeLeaveGroup(groupId, memberId, 'work done or stopped'),
      decodeLeaveGroup(groupId)
    )
  } catch (error) {
    // The coordinator removes a silent member after the session timeout anyway.
    logger?.warn({ groupId, memberId, error: (error as Error).message }, 'leaving the work group failed')
  }
}

function pack(value: object): Buffer {
  return deflateRawSync(JSON.stringify(value))
}

function unpack(bytes: Buffer): unknown {
  return JSON.parse(inflateRawSync(bytes).toString('utf8'))
}

function parseMetadata(bytes: Buffer): MemberMetadata {
  const parsed = unpack(bytes) as Partial<MemberMetadata>
  return { items: stringArray(parsed.items), owned: stringArray(parsed.owned) }
}

function parseAssignment(bytes: Buffer): string[] {
  if (bytes.length === 0) {
    return []
  }
  return stringArray((unpack(bytes) as { items?: unknown }).items).sort()
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []
}

/**
 * The leader's split: every item any member knows goes to exactly one member; counts differ by
 * at most one; a member keeps the items it held as far as its share allows (sticky), and the
 * rest go, in item order, to the members below their share. Deterministic for the same input.
 */
export function assignItems(
  members: ReadonlyArray<{ memberId: string; metadata: MemberMetadata }>
): Map<string, string[]> {
  const all = [...new Set(members.flatMap(m => m.metadata.items))].sort()
  const known = new Set(all)
  const ordered = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0))
  const base = Math.floor(all.length / Math.max(ordered.length, 1))
  let extra = all.length - base * ordered.length
  // The members that held the most get the larger shares, so that fewer items move.
  const byOwned = [...ordered].sort((a, b) => b.metadata.owned.length - a.metadata.owned.length)
  const share = new Map<string, number>()
  for (const member of byOwned) {
    share.set(member.memberId, base + (extra > 0 ? 1 : 0))
    extra--
  }
  const assigned = new Map<string, string[]>(ordered.map(m => [m.memberId, []]))
  const taken = new Set<string>()
  for (const member of ordered) {
    const mine = assigned.get(member.memberId)!
    for (const item of member.metadata.owned) {
      if (mine.length < share.get(member.memberId)! && known.has(item) && !taken.has(item)) {
        mine.push(item)
        taken.add(item)
      }
    }
  }
  let next = 0
  for (const item of all) {
    if (taken.has(item)) {
      continue
    }
    while (assigned.get(ordered[next]!.memberId)!.length >= share.get(ordered[next]!.memberId)!) {
      next++
    }
    assigned.get(ordered[next]!.memberId)!.push(item)
  }
  for (const items of assigned.values()) {
    items.sort()
  }
  return assigned
}

/** The client ids of the group's members now (DescribeGroups): who is alive in it. */
export async function groupMemberClients(cluster: KafkaCluster, groupId: string): Promise<string[]> {
  return cluster.request(
    { group: groupId },
    DESCRIBE_GROUPS.apiKey,
    DESCRIBE_GROUPS.version,
    encodeDescribeGroups([groupId]),
    decodeGroupMemberClients
  )
}

/** The retriable Kafka error code inside a failed call, if that is what failed it. */
function retriableCause(error: unknown): ProtocolError | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof ProtocolError && cause.retriable) {
      return cause
    }
  }
  return undefined
}
