/**
 * `npm run demo`: the whole tool on sample data, from a fresh clone. It starts a local broker
 * unless KAFKA_BOOTSTRAP_SERVERS names one, writes topics that show what a backup must keep,
 * backs them up (`backup`, `describe`, `validate --deep`), restores them under new names (in
 * full with the consumer group's offsets translated, and a point-in-time window), reads source
 * and restored topics back with @platformatic/kafka (not with this tool's code) and compares
 * them. It ends with one summary line and exits 0 only when every check matched.
 *
 * Backups and config files stay in .cache/demo/ for a look afterwards.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { isAbsolute, join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Admin, Consumer, FetchIsolationLevels, Producer } from '@platformatic/kafka'
import { type RunningBroker, repoRoot, startBroker, stopBroker } from './broker.ts'

interface ReadRecord {
  offset: bigint
  timestamp: bigint
  key: string | null
  value: string | null
  headers: string
}

const runId = `demo-${Date.now().toString(36)}`
const topics = {
  keyed: `${runId}-orders`,
  transactions: `${runId}-payments`,
  compacted: `${runId}-customers`
}
const group = `${runId}-billing`
const restored = (topic: string) => `${topic}-restored`
const windowTopic = `${topics.keyed}-window`
// Record timestamps a few minutes in the past: inside any retention, never "from the future".
const baseTimestamp = BigInt(Date.now()) - 10n * 60_000n
const windowStart = baseTimestamp + 20_000n
const windowEnd = baseTimestamp + 39_000n
const demoDir = join(repoRoot, '.cache', 'demo')
const storagePath = join(demoDir, 'backups')
const text = (value: string) => Buffer.from(value)
let bootstrapServers = process.env.KAFKA_BOOTSTRAP_SERVERS
const client = () => ({ clientId: 'kafka-backup-demo', bootstrapBrokers: [bootstrapServers!] })
let readers = 0

const checks: Array<{ name: string; ok: boolean; detail: string }> = []
function check(name: string, ok: boolean, detail: string): void {
  checks.push({ name, ok, detail })
  console.log(`  ${ok ? 'ok  ' : 'FAIL'}  ${name.padEnd(50)} ${detail}`)
}

function step(title: string): void {
  console.log(`\n== ${title}`)
}

/** Runs the kafka-backup CLI with this terminal, so its progress and output show as they would for a user. */
function kafkaBackup(...args: string[]): void {
  console.log(`$ kafka-backup ${args.map(arg => (isAbsolute(arg) ? relative(process.cwd(), arg) : arg)).join(' ')}`)
  const result = spawnSync(process.execPath, [join(repoRoot, 'src', 'cli', 'main.ts'), ...args], { stdio: 'inherit' })
  if (result.status !== 0) {
    throw new Error(`kafka-backup ${args[0]} failed (exit ${result.status ?? result.signal})`)
  }
}

async function createTopic(admin: Admin, name: string, partitions: number, configs: Record<string, string> = {}) {
  await admin.createTopics({
    topics: [name],
    partitions,
    replicas: 1,
    configs: Object.entries(configs).map(([name, value]) => ({ name, value }))
  })
  // The topic exists before every partition has a leader; producing needs the leaders.
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const metadata = await admin.metadata({ topics: [name], forceUpdate: true })
    if (metadata.topics.get(name)?.partitions.every(p => p.leader >= 0)) {
      return
    }
    await sleep(100)
  }
  throw new Error(`topic ${name} has no leader for every partition after 30 s`)
}

/**
 * Every data record of a topic, per partition, from the earliest offset. READ_UNCOMMITTED, so
 * that records of aborted transactions show too: the checks see what the log holds.
 */
async function readTopic(topic: string): Promise<ReadRecord[][]> {
  const consumer = new Consumer({ ...client(), groupId: `${runId}-reader-${++readers}` })
  try {
    const [highWatermarks] = [...(await consumer.listOffsets({ topics: [topic] })).values()]
    const records: ReadRecord[][] = highWatermarks!.map(() => [])
    // Every topic of the demo ends each partition in a data record, so offset highWatermark - 1 arrives.
    const unfinished = new Set(highWatermarks!.flatMap((end, partition) => (end > 0n ? [partition] : [])))
    if (unfinished.size === 0) {
      return records
    }
    const stream = await consumer.consume({
      topics: [topic],
      mode: 'earliest',
      autocommit: false,
      maxWaitTime: 100,
      isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED
    })
    const timeout = setTimeout(() => stream.close(), 60_000)
    for await (const message of stream) {
      records[message.partition]!.push({
        offset: message.offset,
        timestamp: message.timestamp,
        key: message.key?.toString() ?? null,
        value: message.value?.toString() ?? null,
        headers: JSON.stringify([...message.headers].map(([k, v]) => [k.toString(), v?.toString()]))
      })
      if (message.offset >= highWatermarks![message.partition]! - 1n) {
        unfinished.delete(message.partition)
      }
      if (unfinished.size === 0) {
        break
      }
    }
    clearTimeout(timeout)
    await stream.close()
    if (unfinished.size > 0) {
      throw new Error(`reading ${topic} back did not reach the end of partitions ${[...unfinished]} within 60 s`)
    }
    return records
  } finally {
    await consumer.close()
  }
}

/** What a restore must reproduce: everything but the offsets. */
const content = (records: ReadRecord[]) =>
  records.map(r => JSON.stringify([r.key, r.value, r.headers, String(r.timestamp)])).join('\n')
/** The demo labels the values it writes in transactions it aborts. */
const isAborted = (record: ReadRecord) => record.value?.startsWith('aborted') === true

async function writeSampleData(admin: Admin, producer: Producer): Promise<void> {
  step('writing sample data')
  await createTopic(admin, topics.keyed, 3)
  for (let round = 0; round < 3; round++) {
    await producer.send({
      compression: 'zstd',
      messages: Array.from({ length: 20 }, (_, n) => {
        const i = round * 20 + n
        return {
          topic: topics.keyed,
          key: text(`customer-${i % 7}`),
          value: text(JSON.stringify({ order: i, amount: (i * 37) % 500 })),
          headers: new Map([
            [text('source'), text('demo')],
            [text('seq'), text(String(i))]
          ]),
          timestamp: baseTimestamp + BigInt(i) * 1000n
        }
      })
    })
  }
  console.log(`  ${topics.keyed}: 60 keyed records with headers over 3 partitions, one second apart`)

  await createTopic(admin, topics.transactions, 1)
  const transactional = new Producer({
    ...client(),
    idempotent: true,
    transactionalId: `${runId}-tx`
  })
  let timestamp = baseTimestamp
  const payments = (label: string, from: number, count: number) =>
    Array.from({ length: count }, (_, n) => ({
      topic: topics.transactions,
      partition: 0,
      key: text(`payment-${from + n}`),
      value: text(`${label}-${from + n}`),
      timestamp: timestamp++
    }))
  try {
    for (const [label, from, outcome] of [
      ['committed', 1, 'commit'],
      ['aborted', 6, 'abort'],
      ['committed', 11, 'commit']
    ] as const) {
      const transaction = await transactional.beginTransaction()
      await transaction.send({ messages: payments(label, from, 5) })
      await (outcome === 'commit' ? transaction.commit() : transaction.abort())
    }
  } finally {
    await transactional.close()
  }
  // A plain record last, so that the partition ends in data rather than in a commit marker.
  await producer.send({ messages: payments('plain', 16, 1) })
  console.log(`  ${topics.transactions}: transactions committed, aborted, committed, then a plain record`)

  await createTopic(admin, topics.compacted, 1, {
    'cleanup.policy': 'compact',
    'segment.ms': '100',
    'min.cleanable.dirty.ratio': '0.01',
    'min.compaction.lag.ms': '0'
  })
  // Timestamps further apart than segment.ms put each round in its own segment, so the cleaner
  // can compact all but the last (the active segment is never cleaned).
  const rounds: Array<Array<[string, string | null]>> = [
    Array.from({ length: 10 }, (_, i) => [`customer-${i}`, `address-v1-${i}`]),
    [
      ['customer-1', 'address-v2-1'],
      ['customer-3', 'address-v2-3'],
      ['customer-8', null]
    ],
    [['customer-5', 'address-v2-5']]
  ]
  for (const [round, records] of rounds.entries()) {
    await producer.send({
      messages: records.map(([key, value], i) => ({
        topic: topics.compacted,
        key: text(key),
        value: value === null ? undefined : text(value),
        timestamp: baseTimestamp + BigInt(round * 10_000 + i)
      }))
    })
  }
  console.log(`  ${topics.compacted}: a compacted topic with overwritten keys and a tombstone`)
}

/** The cleaner runs on the broker's schedule; a backup of an uncompacted log is just as valid. */
async function waitForCompaction(): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const [records] = await readTopic(topics.compacted)
    const last = records!.at(-1)!.offset
    if (BigInt(records!.length) <= last) {
      console.log(`  the log cleaner compacted ${topics.compacted}: ${records!.length} of ${last + 1n} offsets remain`)
      return
    }
    await sleep(250)
  }
  console.log(`  the log cleaner has not compacted ${topics.compacted} within 60 s; it is backed up as it is`)
}

/** The group's position: half-way through each partition of the keyed topic, and just past the aborted transaction. */
async function commitGroupOffsets(admin: Admin): Promise<void> {
  const keyed = await readTopic(topics.keyed)
  const [payments] = await readTopic(topics.transactions)
  await admin.alterConsumerGroupOffsets({
    groupId: group,
    topics: [
      {
        name: topics.keyed,
        partitionOffsets: keyed.map((records, partition) => ({
          partition,
          offset: records[Math.floor(records.length / 2)]?.offset ?? 0n
        }))
      },
      {
        name: topics.transactions,
        partitionOffsets: [{ partition: 0, offset: payments!.find(r => r.value === 'committed-11')!.offset }]
      }
    ]
  })
  console.log(`  consumer group ${group}: offsets committed on ${topics.keyed} and ${topics.transactions}`)
}

async function committedOffsets(admin: Admin, topic: string): Promise<Map<number, bigint>> {
  const listed = await admin.listConsumerGroupOffsets({ groups: [group] })
  const partitions = listed[0]?.topics.find(t => t.name === topic)?.partitions ?? []
  return new Map(partitions.map(p => [p.partitionIndex, p.committedOffset]))
}

function writeConfigs(): { backup: string; restore: string; window: string } {
  const configDir = join(demoDir, runId)
  mkdirSync(configDir, { recursive: true })
  const common = `backup_id: ${runId}\nstorage:\n  backend: filesystem\n  path: ${storagePath}\n`
  const files = {
    backup: join(configDir, 'backup.yaml'),
    restore: join(configDir, 'restore.yaml'),
    window: join(configDir, 'restore-window.yaml')
  }
  writeFileSync(
    files.backup,
    `mode: backup\n${common}source:\n  bootstrap_servers: ${bootstrapServers}\n  topics:\n    include: ["${runId}-*"]\n`
  )
  const target = `target:\n  bootstrap_servers: ${bootstrapServers}\n`
  writeFileSync(
    files.restore,
    `mode: restore\n${common}${target}restore:\n  topic_mapping:\n${Object.values(topics)
      .map(topic => `    ${topic}: ${restored(topic)}\n`)
      .join('')}  reset_consumer_offsets: true\n  consumer_groups: ["${group}"]\n`
  )
  writeFileSync(
    files.window,
    `mode: restore\n${common}${target}restore:\n  topics:\n    include: ["${topics.keyed}"]\n  topic_mapping:\n    ${topics.keyed}: ${windowTopic}\n`
  )
  return files
}

async function compare(admin: Admin): Promise<void> {
  step('reading source and restored topics back with @platformatic/kafka')
  for (const topic of Object.values(topics)) {
    const [source, target] = await Promise.all([readTopic(topic), readTopic(restored(topic))])
    for (const [partition, records] of source.entries()) {
      const expected = records.filter(r => !isAborted(r))
      const found = target[partition] ?? []
      const aborted = records.length - expected.length
      check(
        `${topic}/${partition} records`,
        content(found) === content(expected),
        `source ${expected.length}${aborted ? ` (+${aborted} aborted)` : ''}, restored ${found.length}, same keys, values, headers, timestamps`
      )
      if (aborted > 0) {
        const back = found.filter(isAborted).length
        check(`${topic}/${partition} aborted records absent`, back === 0, `source log ${aborted}, restored ${back}`)
      }
    }
  }

  const [source, window] = await Promise.all([readTopic(topics.keyed), readTopic(windowTopic)])
  for (const [partition, records] of source.entries()) {
    const expected = records.filter(r => r.timestamp >= windowStart && r.timestamp <= windowEnd)
    const found = window[partition] ?? []
    check(
      `${windowTopic}/${partition} time window`,
      content(found) === content(expected),
      `source in window ${expected.length}, restored ${found.length}`
    )
  }

  for (const topic of [topics.keyed, topics.transactions]) {
    const [sourceOffsets, targetOffsets, sourceRecords, targetRecords] = await Promise.all([
      committedOffsets(admin, topic),
      committedOffsets(admin, restored(topic)),
      readTopic(topic),
      readTopic(restored(topic))
    ])
    for (const [partition, sourceOffset] of [...sourceOffsets].sort(([a], [b]) => a - b)) {
      const targetOffset = targetOffsets.get(partition)
      const ahead = sourceRecords[partition]!.filter(r => r.offset >= sourceOffset && !isAborted(r))
      const restoredAhead =
        targetOffset === undefined ? [] : targetRecords[partition]!.filter(r => r.offset >= targetOffset)
      check(
        `group position ${topic}/${partition}`,
        targetOffset !== undefined && content(restoredAhead) === content(ahead),
        `offset ${sourceOffset} -> ${targetOffset ?? 'none'}, next ${ahead[0]?.value ?? '(end)'} on both sides, ${ahead.length} records ahead`
      )
    }
  }
}

async function main(): Promise<number> {
  let broker: RunningBroker | undefined
  if (!bootstrapServers) {
    step('starting a local Kafka broker (the first run resolves its jars with Maven)')
    broker = await startBroker('demo')
    bootstrapServers = broker.bootstrapServers
    console.log(`  broker at ${bootstrapServers}, log ${broker.logFile}`)
  }
  const admin = new Admin(client())
  const producer = new Producer(client())
  try {
    await writeSampleData(admin, producer)
    await waitForCompaction()
    await commitGroupOffsets(admin)

    const configs = writeConfigs()
    step('backup')
    kafkaBackup('backup', '--config', configs.backup)
    kafkaBackup('describe', '--path', storagePath, '--backup-id', runId)
    kafkaBackup('validate', '--path', storagePath, '--backup-id', runId, '--deep')

    step('restore under new names, with the consumer group offsets translated')
    kafkaBackup('restore', '--config', configs.restore)
    step('restore a point-in-time window')
    kafkaBackup(
      'restore',
      '--config',
      configs.window,
      '--time-start',
      new Date(Number(windowStart)).toISOString(),
      '--time-end',
      new Date(Number(windowEnd)).toISOString()
    )

    await compare(admin)
  } finally {
    await Promise.all([producer.close(), admin.close()])
    if (broker) {
      await stopBroker(broker)
    }
  }

  const failed = checks.filter(c => !c.ok).length
  console.log(
    `\ndemo ${runId}: ${failed === 0 ? `all ${checks.length} checks matched` : `${failed} of ${checks.length} checks FAILED`}; ` +
      `backup in ${relative(process.cwd(), storagePath)}/${runId}; ` +
      (broker
        ? 'the broker the demo started is stopped'
        : `the broker at ${bootstrapServers} was given by KAFKA_BOOTSTRAP_SERVERS and keeps running`)
  )
  return failed === 0 && checks.length > 0 ? 0 : 1
}

try {
  process.exitCode = await main()
} catch (error) {
  console.error(`demo failed: ${(error as Error).message}`)
  process.exitCode = 1
}
