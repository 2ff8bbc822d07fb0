/** `kafka-backup prune`: delete the segments older than a retention window (docs/retention.md). */
import { Command } from 'commander'
import { parseDuration, pruneBackup } from '../catalog/prune.ts'
import { BackupError } from '../errors.ts'
import { loggerFor, openLocation } from './context.ts'
import { type InspectFlags, withLocation } from './inspect.ts'
import { formatBytes, formatCount, printJson, table } from './output.ts'

interface PruneFlags extends InspectFlags {
  keepWithin?: string
  keepFrom?: string
  dryRun?: boolean
}

/** The cutoff in epoch ms from exactly one of --keep-within and --keep-from. */
function keepFromOf(flags: PruneFlags): number {
  if ((flags.keepWithin === undefined) === (flags.keepFrom === undefined)) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      'say what to keep: exactly one of --keep-within <duration> (e.g. 30d) and --keep-from <time>',
      { path: '--keep-within' }
    )
  }
  if (flags.keepWithin !== undefined) {
    return Date.now() - parseDuration(flags.keepWithin, '--keep-within')
  }
  const text = flags.keepFrom!
  const time = /^\d+$/.test(text) ? Number(text) : /(Z|[+-]\d\d:\d\d)$/.test(text) ? Date.parse(text) : Number.NaN
  if (!Number.isSafeInteger(time)) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `--keep-from: expected epoch milliseconds or an ISO-8601 date-time with a time zone (e.g. 2026-11-01T00:00:00Z), found ${JSON.stringify(text)}`,
      { path: '--keep-from', found: text }
    )
  }
  return time
}

export function pruneCommand(): Command {
  return withLocation(
    new Command('prune')
      .description(
        'Delete backed-up segments older than a retention window; every restore point inside it stays exact.'
      )
      .option('--keep-within <duration>', 'keep every record of the last <duration>: 30d, 12h, 90m, 2w')
      .option('--keep-from <time>', 'keep every record from this time on (ISO-8601 with a time zone, or epoch ms)')
      .option('--dry-run', 'list what would be deleted, delete nothing'),
    true
  )
    .addHelpText(
      'after',
      `
Per partition, the oldest segments whose records are all older than the cutoff are deleted;
the first segment holding a record at or after it is kept, with everything after it. A restore
whose time_window_start is at or after the cutoff gives exactly what it gave before. Refused
(KB_BACKUP_BUSY) while a backup run of the same backup is in progress.

Examples:
  kafka-backup prune --path /backups --backup-id nightly --keep-within 30d --dry-run
  kafka-backup prune --config backup.yaml --keep-from 2026-11-01T00:00:00Z --json`
    )
    .action(async (flags: PruneFlags, command: Command) => {
      const log = loggerFor(command)
      const keepFrom = keepFromOf(flags)
      const { storage, backupId } = await openLocation(flags, log, true)
      try {
        const summary = await pruneBackup({
          storage,
          backupId,
          keepFrom,
          dryRun: flags.dryRun,
          onWarning: (message, context) => log.warn(context, message)
        })
        if (flags.json) {
          printJson(summary)
          return
        }
        const withSegments = summary.partitions.filter(p => p.segments.length > 0)
        if (withSegments.length > 0) {
          console.log(
            table(
              ['topic/partition', 'segments', 'offsets', 'records', 'size', 'new start'],
              withSegments.map(p => [
                `${p.topic}/${p.partition}`,
                p.segments.length,
                `${p.startOffset}..${BigInt(p.newStartOffset) - 1n}`,
                formatCount(p.segments.reduce((sum, s) => sum + s.records, 0)),
                formatBytes(p.segments.reduce((sum, s) => sum + s.sizeBytes, 0)),
                p.newStartOffset
              ])
            )
          )
          if (flags.dryRun) {
            for (const segment of withSegments.flatMap(p => p.segments)) {
              console.log(`would delete ${segment.key} (${formatBytes(segment.sizeBytes)})`)
            }
          }
        }
        console.log(
          `backup ${summary.backupId}: ${flags.dryRun ? 'would delete' : 'deleted'} ${summary.segments} segments, ` +
            `${formatCount(summary.records)} records, ${formatBytes(summary.sizeBytes)} (${summary.sizeBytes} bytes); ` +
            `every record from ${summary.keptFrom} on is kept; ${flags.dryRun ? 'would delete' : 'deleted'} ` +
            `${summary.supersededRevisions} superseded catalogue revisions`
        )
      } finally {
        await storage.close()
      }
    })
}
