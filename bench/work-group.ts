/**
 * Rebalance times of the work group (src/group/work-group.ts) on the real broker: three members
 * joining an empty group, a fourth joining the three, and one of four leaving, each from the
 * event until every remaining member holds its share of 24 items in one generation. Prints one
 * markdown table row per heartbeat interval (median and worst of the rounds) for
 * docs/benchmarks.md.
 *
 *   node bench/work-group.ts
 *   KAFKA_BOOTSTRAP_SERVERS   use this broker instead of starting one
 *   BENCH_ROUNDS              rounds per heartbeat interval (default 5)
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { stopBroker } from '../scripts/broker.ts'
import { type Assignment, runWorkGroup } from '../src/group/work-group.ts'
import { KafkaCluster } from '../src/kafka/cluster.ts'
import { benchBroker } from './broker.ts'

const ITEMS = Array.from({ length: 24 }, (_, i) => `orders/${i}`)
const rounds = Number(process.env.BENCH_ROUNDS ?? 5)

const { bootstrapServers, broker } = await benchBroker('bench-work-group')

interface Member {
  current: Assignment | undefined
  stop: AbortController
  finished: Promise<void>
}

function startMember(groupId: string, heartbeatIntervalMs: number): Member {
  const cluster = new KafkaCluster({ bootstrapServers: bootstrapServers.split(',') })
  const member: Member = { current: undefined, stop: new AbortController(), finished: Promise.resolve() }
  member.finished = runWorkGroup(
    {
      cluster,
      groupId,
      items: ITEMS,
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs,
      rebalanceTimeoutMs: 60_000,
      signal: member.stop.signal
    },
    async (assignment, revoked) => {
      member.current = assignment
      await new Promise(resolve => revoked.addEventListener('abort', resolve, { once: true }))
      member.current = undefined
      return 'continue'
    }
  ).finally(() => cluster.close())
  return member
}

async function settled(members: Member[], after = 0): Promise<number> {
  const started = performance.now()
  for (;;) {
    const current = members.map(m => m.current)
    if (
      current.every(a => a !== undefined && a.generation > after) &&
      new Set(current.map(a => a!.generation)).size === 1 &&
      current.flatMap(a => a!.items).length === ITEMS.length
    ) {
      return performance.now() - started
    }
    await sleep(5)
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const ms = (value: number) => `${Math.round(value)} ms`

console.log('| heartbeat interval | 3 join an empty group | a 4th joins 3 | 1 of 4 leaves |')
console.log('|---|---|---|---|')
for (const heartbeatIntervalMs of [500, 3000]) {
  const join: number[] = []
  const grow: number[] = []
  const shrink: number[] = []
  for (let round = 0; round < rounds; round++) {
    const groupId = `bench-work-group-${randomUUID().slice(0, 8)}`
    const members = [0, 1, 2].map(() => startMember(groupId, heartbeatIntervalMs))
    join.push(await settled(members))
    const generation = members[0]!.current!.generation
    members.push(startMember(groupId, heartbeatIntervalMs))
    grow.push(await settled(members, generation))
    const leaving = members.pop()!
    const before = members[0]!.current!.generation
    leaving.stop.abort()
    shrink.push(await settled(members, before))
    for (const member of members) {
      member.stop.abort()
    }
    await Promise.all([...members, leaving].map(m => m.finished))
  }
  const cell = (values: number[]) => `${ms(median(values))} (worst ${ms(Math.max(...values))})`
  console.log(`| ${heartbeatIntervalMs} ms | ${cell(join)} | ${cell(grow)} | ${cell(shrink)} |`)
}
if (broker) {
  await stopBroker(broker)
}
