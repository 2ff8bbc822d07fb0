/** `offsets plan|apply|rollback`: consumer-group offsets after a completed restore. */
import { Command, Option } from 'commander'
import type { RestoreConfig } from '../config/schema.ts'
import { connectCluster } from '../kafka/connect.ts'
import {
  applyGroupOffsets,
  findCompletedRestore,
  type OffsetPlan,
  type PlanOffsetsOptions,
  planGroupOffsets,
  readOffsetSnapshot,
  rollbackGroupOffsets
} from '../offsets/after-restore.ts'
import { openStorage } from '../storage/open.ts'
import { loadModeConfig, loggerFor } from './context.ts'
import type { Log } from './logger.ts'
import { printJson, table } from './output.ts'

interface OffsetsFlags {
  config: string
  restoreId?: string
  groups?: string
  json?: boolean
}

/** Storage, state storage and the target cluster of a restore config, closed by `run`'s end. */
async function withRestore<T>(
  flags: OffsetsFlags,
  log: Log,
  run: (
    options: PlanOffsetsOptions & { cluster: ReturnType<typeof connectCluster> },
    config: RestoreConfig
  ) => Promise<T>
): Promise<T> {
  const config = await loadModeConfig(flags.config, 'restore', {}, log)
  const storage = await openStorage(config.storage)
  const stateStorage = config.restore.state_storage ? await openStorage(config.restore.state_storage) : storage
  const cluster = connectCluster(config.target)
  try {
    return await run(
      {
        backupId: config.backup_id,
        storage,
        stateStorage,
        cluster,
        ...(flags.restoreId === undefined ? {} : { restoreId: flags.restoreId }),
        ...(flags.groups === undefined ? {} : { groups: splitList(flags.groups) })
      },
      config
    )
  } finally {
    await cluster.close()
    await storage.close()
    if (stateStorage !== storage) await stateStorage.close()
  }
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map(entry => entry.trim())
    .filter(entry => entry !== '')
}

function common(command: Command): Command {
  return command
    .requiredOption('-c, --config <file>', 'the restore config (mode: restore): storage, target and state_storage')
    .option('--restore-id <id>', "the restore (default: the backup's only completed restore)")
    .option('--groups <list>', 'group ids or * patterns, comma-separated (default: every captured group)')
    .exitOverride()
}

const csvColumns = [
  'group',
  'source_topic',
  'source_partition',
  'source_offset',
  'target_topic',
  'target_partition',
  'target_offset',
  'current_offset'
] as const

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(value: string | number | null): string {
  const text = value === null ? '' : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export function formatOffsetPlan(plan: OffsetPlan, format: 'text' | 'csv' | 'json'): string {
  const rows = plan.rows.map(row => [
    row.groupId,
    row.sourceTopic,
    row.sourcePartition,
    row.sourceOffset,
    row.targetTopic,
    row.targetPartition,
    row.targetOffset,
    row.currentOffset
  ])
  if (format === 'json') return JSON.stringify(plan, null, 2)
  if (format === 'csv') return [csvColumns.join(','), ...rows.map(row => row.map(csvField).join(','))].join('\n')
  if (plan.rows.length === 0)
    return `restore ${plan.restoreId}: no captured group has offsets on the restored partitions`
  return `restore ${plan.restoreId} of backup ${plan.backupId}\n${table(
    ['group', 'source', 'source offset', 'target', 'target offset', 'current'],
    plan.rows.map(row => [
      row.groupId,
      `${row.sourceTopic}/${row.sourcePartition}`,
      row.sourceOffset,
      `${row.targetTopic}/${row.targetPartition}`,
      row.targetOffset,
      row.currentOffset ?? '-'
    ])
  )}`
}

export function offsetsCommand(): Command {
  const plan = common(new Command('plan'))
    .description("Print each captured group's offset per restored partition, translated to the target.")
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'csv', 'json']).default('text'))
    .option('--json', 'same as --format json')
    .action(async (flags: OffsetsFlags & { format: 'text' | 'csv' | 'json' }, command: Command) => {
      const result = await withRestore(flags, loggerFor(command), options => planGroupOffsets(options))
      process.stdout.write(`${formatOffsetPlan(result, flags.json ? 'json' : flags.format)}\n`)
    })
  const apply = common(new Command('apply'))
    .description('Snapshot the groups\u2019 current offsets, then commit the plan to groups without active members.')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (flags: OffsetsFlags, command: Command) => {
      const log = loggerFor(command)
      const result = await withRestore(flags, log, options => applyGroupOffsets(options))
      if (flags.json) {
        printJson({
          snapshotId: result.snapshot.snapshotId,
          restoreId: result.snapshot.restoreId,
          committed: result.committed
        })
        return
      }
      console.log(
        `snapshot ${result.snapshot.snapshotId} saved (undo with: offsets rollback --snapshot ${result.snapshot.snapshotId})`
      )
      console.log(`committed ${result.committed.length} group(s): ${result.committed.join(', ') || '-'}`)
    })
  const rollback = common(new Command('rollback'))
    .description('Put the groups back to a snapshot taken by apply (default: the newest).')
    .option('--snapshot <id>', 'the snapshot id apply printed (default: the newest of the restore)')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (flags: OffsetsFlags & { snapshot?: string }, command: Command) => {
      const rolledBack = await withRestore(flags, loggerFor(command), async options => {
        const restore = await findCompletedRestore(options.stateStorage, options.backupId, options.restoreId)
        const snapshot = await readOffsetSnapshot(
          options.stateStorage,
          options.backupId,
          restore.restoreId,
          flags.snapshot
        )
        const groups = await rollbackGroupOffsets(options.cluster, snapshot, options.groups)
        return { snapshotId: snapshot.snapshotId, groups }
      })
      if (flags.json) {
        printJson(rolledBack)
        return
      }
      console.log(
        `rolled back ${rolledBack.groups.length} group(s) to snapshot ${rolledBack.snapshotId}: ${rolledBack.groups.join(', ') || '-'}`
      )
    })
  return new Command('offsets')
    .description('Consumer-group offsets after a restore: plan, apply (with a snapshot), roll back.')
    .addCommand(plan)
    .addCommand(apply)
    .addCommand(rollback)
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup offsets plan --config restore.yaml --format csv > offsets.csv
  kafka-backup offsets apply --config restore.yaml --groups order-processor
  kafka-backup offsets rollback --config restore.yaml`
    )
}
