/** `status`: progress per partition of a backup and its restores, from their checkpoints in storage. */
import { setTimeout as sleep } from 'node:timers/promises'
import { Command, InvalidArgumentError } from 'commander'
import { hasFailed, isRunning, type JobStatus, readJobStatus } from '../status/job-status.ts'
import { locationHelp } from '../storage/backends.ts'
import { openStorage } from '../storage/open.ts'
import { type LocationFlags, loggerFor, openLocation } from './context.ts'
import { formatBytes, formatCount, table, toJson } from './output.ts'

interface StatusFlags extends LocationFlags {
  restoreId?: string
  json?: boolean
  watch?: number | true
}

function seconds(value: string): number {
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError('expected a number of seconds above 0')
  return parsed
}

export function formatJobStatus(status: JobStatus, now = Date.now()): string {
  const { backup } = status
  const age = (iso: string) => `${Math.max(0, Math.round((now - Date.parse(iso)) / 1000))} s ago`
  const run = backup.run
  const lines = [
    `backup ${backup.backupId}: ${run === null ? 'no run yet' : `${run.status} (run started ${run.startedAt}${run.finishedAt ? `, finished ${run.finishedAt}` : ''})`}${run?.error ? `: ${run.error}` : ''}`,
    ...(backup.workers.length > 0 ? [`  ${backup.workers.length} workers running (backup.workers)`] : []),
    `  ${formatCount(backup.records)} records, ${formatBytes(backup.bytes)} stored, last checkpoint ${age(backup.updatedAt)}`,
    table(
      ['partition', 'start', 'checkpoint', 'records', 'stored', 'segments', 'checkpointed'],
      backup.partitions.map(p => [
        `${p.topic}/${p.partition}`,
        p.startOffset,
        p.checkpointOffset,
        formatCount(p.records),
        formatBytes(p.bytes),
        p.segments,
        age(p.updatedAt)
      ])
    )
      .split('\n')
      .map(line => `  ${line}`)
      .join('\n')
  ]
  for (const restore of status.restores) {
    const done = restore.partitions.filter(p => p.done).length
    lines.push(
      '',
      `restore ${restore.restoreId}: ${restore.status} (started ${restore.startedAt}, updated ${age(restore.updatedAt)})${restore.error ? `: ${restore.error}` : ''}`,
      `  ${formatCount(restore.records)} records, ${formatBytes(restore.bytes)}, ${done} of ${restore.partitions.length} partitions done`,
      table(
        ['source', 'target', 'source position', 'backup end', 'target end', 'records', 'done'],
        restore.partitions.map(p => [
          `${p.sourceTopic}/${p.sourcePartition}`,
          `${p.targetTopic}/${p.targetPartition}`,
          p.sourceNextOffset,
          p.sourceEndOffset ?? '-',
          p.targetNextOffset,
          formatCount(p.records),
          p.done ? 'yes' : p.percent === null ? 'no' : `${p.percent}%`
        ])
      )
        .split('\n')
        .map(line => `  ${line}`)
        .join('\n')
    )
  }
  return lines.join('\n')
}

export function statusCommand(): Command {
  return new Command('status')
    .description('Show the progress per partition of a running or finished backup and its restores.')
    .option('--path <location>', `where backups live: ${locationHelp}`)
    .option('-c, --config <file>', 'take storage, backup_id (and restore.state_storage) from a config instead')
    .option('--backup-id <id>', 'the backup (default: backup_id of --config)')
    .option('--restore-id <id>', 'only this restore')
    .option('--watch [seconds]', 'show it again every few seconds (default 2) until nothing runs', seconds)
    .option('--json', 'print JSON on stdout (with --watch: one JSON document per line)')
    .addHelpText(
      'after',
      `
Exit status: 1 when the newest backup run failed or was interrupted, or a restore shown failed.

Examples:
  kafka-backup status --config backup.yaml
  kafka-backup status --path /backups --backup-id nightly --watch
  kafka-backup status --config restore.yaml --json | jq '.restores[0].partitions'`
    )
    .action(async (flags: StatusFlags, command: Command) => {
      const location = await openLocation(flags, loggerFor(command), true)
      const { storage, backupId } = location
      const stateStorage = location.stateStorage && (await openStorage(location.stateStorage))
      const intervalMs = flags.watch === undefined ? 0 : (flags.watch === true ? 2 : flags.watch) * 1000
      const redraw = Boolean(process.stdout.isTTY) && !flags.json && intervalMs > 0
      try {
        for (;;) {
          const status = await readJobStatus({
            backupId,
            storage,
            ...(stateStorage === undefined ? {} : { stateStorage }),
            ...(flags.restoreId === undefined ? {} : { restoreId: flags.restoreId })
          })
          const text = flags.json
            ? intervalMs > 0
              ? JSON.stringify(JSON.parse(toJson(status)))
              : toJson(status)
            : formatJobStatus(status)
          process.stdout.write(`${redraw ? '\x1b[2J\x1b[H' : ''}${text}\n`)
          // --watch ends with the job; Ctrl-C ends it earlier (nothing to clean up: it only reads).
          if (intervalMs === 0 || !isRunning(status)) {
            if (hasFailed(status)) process.exitCode = 1
            return
          }
          await sleep(intervalMs)
        }
      } finally {
        await storage.close()
        if (stateStorage !== undefined) await stateStorage.close()
      }
    })
}
