/**
 * Reads a topic with Kafka's own Java console consumer (READ_COMMITTED): the independent
 * client the backup's records are compared with, so that a bug shared by our raw fetch and
 * our batch filter cannot hide itself. Test data must keep to printable text without tabs,
 * newlines, `,` or `:` in header keys and values, and must not use the literal `<NULL>`.
 */
import { spawn } from 'node:child_process'
import { kafkaJavaArgs } from '../../scripts/broker.ts'
import type { StoredRecord } from './backup.ts'
import { bootstrapServers } from './kafka.ts'

const NULL_LITERAL = '<NULL>'
const COLUMN = '\t'

function formatterProperties(): string[] {
  const properties = {
    'print.timestamp': 'true',
    'print.partition': 'true',
    'print.offset': 'true',
    'print.headers': 'true',
    'print.key': 'true',
    'print.value': 'true',
    'key.separator': COLUMN,
    'headers.separator': ',',
    'null.literal': NULL_LITERAL
  }
  return Object.entries(properties).flatMap(([name, value]) => ['--formatter-property', `${name}=${value}`])
}

const nullable = (text: string): string | null => (text === NULL_LITERAL ? null : text)

function parseLine(line: string): StoredRecord {
  const [timestamp, partition, offset, headers, key, ...value] = line.split(COLUMN)
  const [, time] = /^(?:CreateTime|LogAppendTime):(-?\d+)$/.exec(timestamp ?? '') ?? []
  if (time === undefined || !partition?.startsWith('Partition:') || !offset?.startsWith('Offset:')) {
    throw new Error(`unexpected console consumer line: ${JSON.stringify(line)}`)
  }
  return {
    partition: Number(partition.slice('Partition:'.length)),
    offset: BigInt(offset.slice('Offset:'.length)),
    timestamp: BigInt(time),
    key: nullable(key ?? ''),
    value: nullable(value.join(COLUMN)),
    headers:
      headers === 'NO_HEADERS'
        ? []
        : (headers ?? '').split(',').map(header => {
            const colon = header.indexOf(':')
            return [header.slice(0, colon), nullable(header.slice(colon + 1))] as [string, string | null]
          })
  }
}

/**
 * The first `expectedRecords` records of `topic` as Kafka's console consumer sees them with
 * isolation.level read_committed, sorted by partition and offset. It stops when it has read
 * them, not after an idle time: joining the group and the first fetch can take seconds on a
 * loaded machine. `timeoutMs` only bounds a topic with fewer records than expected, which
 * then comes back short (and fails the comparison); more records than expected show as a
 * different selection across partitions or in the caller's count of what it backed up.
 */
export async function consoleConsumeCommitted(
  topic: string,
  expectedRecords: number,
  timeoutMs = 120_000
): Promise<StoredRecord[]> {
  const args = kafkaJavaArgs(
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    [
      '--bootstrap-server',
      bootstrapServers(),
      '--topic',
      topic,
      '--from-beginning',
      '--isolation-level',
      'read_committed',
      '--max-messages',
      String(expectedRecords),
      '--timeout-ms',
      String(timeoutMs),
      '--command-property',
      'max.partition.fetch.bytes=8388608',
      ...formatterProperties()
    ],
    ['-Xmx512m']
  )
  const child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout.on('data', chunk => stdout.push(chunk))
  child.stderr.on('data', chunk => stderr.push(chunk))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code !== 0) {
    throw new Error(`console consumer for ${topic} exited with ${code}: ${Buffer.concat(stderr).toString()}`)
  }
  return Buffer.concat(stdout)
    .toString('latin1')
    .split('\n')
    .filter(line => line !== '')
    .map(parseLine)
    .sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0))
}
