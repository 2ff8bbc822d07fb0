/**
 * The work group (src/group/work-group.ts) against the real broker's group coordinator: members
 * that join get every item exactly once between them, a member that leaves hands its items to
 * the others, and the leader's split keeps items where they were.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import { type Assignment, type AssignmentRevoked, assignItems, runWorkGroup } from '../../src/group/work-group.ts'
import { KafkaCluster } from '../../src/kafka/cluster.ts'
import { bootstrapServers } from '../helpers/kafka.ts'
import { until } from '../helpers/wait.ts'

const ITEMS = Array.from({ length: 24 }, (_, i) => `orders/${i}`)

interface Member {
  name: string
  stop: AbortController
  /** The latest assignment, until it is revoked. */
  current: Assignment | undefined
  revocations: string[]
  finished: Promise<void>
  cluster: KafkaCluster
}

function startMember(
  groupId: string,
  name: string,
  options: { doneWhen?: () => boolean; items?: readonly string[] } = {}
): Member {
  const cluster = new KafkaCluster({ bootstrapServers: bootstrapServers().split(','), clientId: name })
  const member: Member = {
    name,
    stop: new AbortController(),
    current: undefined,
    revocations: [],
    cluster,
    finished: Promise.resolve()
  }
  member.finished = runWorkGroup(
    {
      cluster,
      groupId,
      items: options.items ?? ITEMS,
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 500,
      rebalanceTimeoutMs: 10_000,
      signal: member.stop.signal
    },
    async (assignment, revoked) => {
      member.current = assignment
      await new Promise<void>(resolve => {
        const check = setInterval(() => {
          if (options.doneWhen?.()) {
            clearInterval(check)
            resolve()
          }
        }, 50)
        revoked.addEventListener('abort', () => {
          clearInterval(check)
          resolve()
        })
      })
      member.current = undefined
      if (revoked.aborted) {
        member.revocations.push((revoked.reason as AssignmentRevoked).reason)
        return 'continue'
      }
      return 'done'
    }
  ).finally(() => cluster.close())
  return member
}

/** Every item held by exactly one member, all members in one generation. */
function coveredOnce(members: Member[], items: readonly string[] = ITEMS): boolean {
  const current = members.map(m => m.current)
  if (current.some(a => a === undefined) || new Set(current.map(a => a!.generation)).size !== 1) {
    return false
  }
  const held = current.flatMap(a => a!.items).sort()
  return JSON.stringify(held) === JSON.stringify([...items].sort())
}

test('members of a work group share the items exactly once; a member leaving hands its items to the others', async () => {
  const groupId = `work-group-${randomUUID().slice(0, 8)}`
  const members = ['a', 'b', 'c'].map(name => startMember(groupId, name))
  try {
    await until(() => coveredOnce(members), 'three members covering the 24 items in one generation')
    assert.deepEqual(
      members.map(m => m.current!.items.length),
      [8, 8, 8],
      'the leader splits the items evenly'
    )
    assert.equal(members.filter(m => m.current!.leader).length, 1, 'exactly one member leads')
    const before = new Map(members.slice(0, 2).map(m => [m.name, new Set(m.current!.items)]))
    const generation = members[0]!.current!.generation

    const [a, b, c] = members as [Member, Member, Member]
    c.stop.abort()
    await c.finished
    assert.equal(c.revocations.at(-1), 'stopped', 'the stopped member was told why it gave its items up')
    await until(
      () => coveredOnce([a, b]) && a.current!.generation > generation,
      'two members covering the items after the third left'
    )
    assert.deepEqual(
      [a, b].map(m => m.current!.items.length),
      [12, 12]
    )
    for (const m of [a, b]) {
      assert.ok(
        [...before.get(m.name)!].every(item => m.current!.items.includes(item)),
        `${m.name} kept the items it held (sticky)`
      )
      assert.ok(m.revocations.includes('rebalance'), `${m.name} gave its items up for the rebalance`)
    }
  } finally {
    for (const member of members) {
      member.stop.abort()
    }
    await Promise.all(members.map(m => m.finished))
  }
})

test('a member that returns done leaves the group at once: the others take its items without waiting for the session timeout', async () => {
  const groupId = `work-group-${randomUUID().slice(0, 8)}`
  let finish = false
  const leaving = startMember(groupId, 'leaving', { doneWhen: () => finish })
  const staying = startMember(groupId, 'staying')
  try {
    await until(() => coveredOnce([leaving, staying]), 'two members covering the items')
    finish = true
    const leftAt = Date.now()
    await leaving.finished
    await until(() => staying.current?.items.length === ITEMS.length, 'the remaining member holding every item')
    assert.ok(Date.now() - leftAt < 6000, 'the items moved before the 6 s session timeout could have expired')
  } finally {
    leaving.stop.abort()
    staying.stop.abort()
    await Promise.all([leaving.finished, staying.finished])
  }
})

test('the leader keeps items with the members that held them and moves only what the new shares require', () => {
  const items = ITEMS
  const first = assignItems([
    { memberId: 'm1', metadata: { items, owned: [] } },
    { memberId: 'm2', metadata: { items, owned: [] } }
  ])
  assert.deepEqual(
    [...first.values()].map(i => i.length),
    [12, 12]
  )
  const second = assignItems([
    { memberId: 'm1', metadata: { items, owned: first.get('m1')! } },
    { memberId: 'm2', metadata: { items, owned: first.get('m2')! } },
    { memberId: 'm3', metadata: { items, owned: [] } }
  ])
  assert.deepEqual(
    [...second.values()].map(i => i.length),
    [8, 8, 8]
  )
  assert.ok(
    second.get('m1')!.every(item => first.get('m1')!.includes(item)),
    'm1 kept 8 of its 12'
  )
  assert.ok(
    second.get('m2')!.every(item => first.get('m2')!.includes(item)),
    'm2 kept 8 of its 12'
  )
  assert.deepEqual([...second.values()].flat().sort(), [...items].sort(), 'every item once')
  const uneven = assignItems([
    { memberId: 'x', metadata: { items: ['a', 'b', 'c'], owned: ['a', 'b', 'c'] } },
    { memberId: 'y', metadata: { items: ['a', 'b', 'c', 'd'], owned: [] } }
  ])
  assert.deepEqual(
    Object.fromEntries(uneven),
    { x: ['a', 'b'], y: ['c', 'd'] },
    'an item only one member knows is assigned too'
  )
})

test('20 members share 2,000 items with long names: what the group stores of them stays under the broker record size', async () => {
  // Every member's join carries the items it knows; in plain JSON, 20 members knowing 2,000 names
  // of ~60 characters made the group's record in __consumer_offsets larger than the broker takes,
  // and SyncGroup failed (UNKNOWN_SERVER_ERROR).
  const items = Array.from({ length: 2000 }, (_, i) => `payments.eu-west.settlements-ledger-events-v2/${i}`)
  const groupId = `work-group-${randomUUID().slice(0, 8)}`
  const members = Array.from({ length: 20 }, (_, i) => startMember(groupId, `m${i}`, { items }))
  const failed: unknown[] = []
  for (const member of members) {
    member.finished.catch(error => failed.push(error))
  }
  try {
    await until(
      () => failed.length > 0 || coveredOnce(members, items),
      '20 members covering the 2,000 items in one generation'
    )
    assert.deepEqual(failed, [], 'no member failed')
    assert.deepEqual(new Set(members.map(m => m.current!.items.length)), new Set([100]))
  } finally {
    for (const member of members) {
      member.stop.abort()
    }
    await Promise.allSettled(members.map(m => m.finished))
  }
})
