/** `kafka-backup restore`: restore a backup described by a config file. */
import { Command } from 'commander'
import type { RestoreConfig } from '../config/schema.ts'
import { connectCluster } from '../kafka/connect.ts'
import type { RestoreMetrics } from '../metrics/registry.ts'
import { restoreOptionsFromConfig } from '../options.ts'
import { RestoreEngine, type RestoreSummary } from '../restore/engine.ts'
import { locationHelp } from '../storage/backends.ts'
import { openStorage } from '../storage/open.ts'
import { loadModeConfig, loggerFor, startMetrics, stopSignal } from './context.ts'
import { formatBytes, formatCount, formatRate, printJson, table } from './output.ts'
import { startProgress } from './progress.ts'

interface RestoreFlags {
  config: string
  backupId?: string
  bootstrapServers?: string
  topics?: string
  path?: string
  timeStart?: string
  timeEnd?: string
  dryRun?: boolean
  json?: boolean
}

/** `--time-start 1700000000000` or `--time-start 2024-05-01T12:00:00Z`. */
function timeFlag(value: string | undefined): number | string | undefined {
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : value
}

export function restoreCommand(): Command {
  return new Command('restore')
    .description('Restore a backup into a Kafka cluster: whole, to a point in time, remapped, with consumer offsets.')
    .requiredOption('-c, --config <file>', 'YAML config with mode: restore')
    .option('--backup-id <id>', 'override backup_id')
    .option('--bootstrap-servers <list>', 'override target.bootstrap_servers (comma-separated host:port)')
    .option('--topics <list>', 'override restore.topics.include (comma-separated names or * patterns)')
    .option('--path <location>', `override storage: ${locationHelp}`)
    .option('--time-start <time>', 'restore.time_window_start: epoch ms or ISO-8601 (inclusive)')
    .option('--time-end <time>', 'restore.time_window_end: epoch ms or ISO-8601 (inclusive)')
    .option('--dry-run', 'print the plan and change nothing')
    .option('--json', 'print the summary (or plan) as JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup restore --config restore.yaml --dry-run
  kafka-backup restore --config restore.yaml --time-end 2026-11-26T09:59:59.999Z
  kafka-backup restore --config restore.yaml --json | jq .consumerGroups`
    )
    .action(async (flags: RestoreFlags, command: Command) => {
      const log = loggerFor(command)
      const config = await loadModeConfig(
        flags.config,
        'restore',
        {
          backup_id: flags.backupId,
          bootstrap_servers: flags.bootstrapServers,
          topics: flags.topics,
          path: flags.path,
          time_window_start: timeFlag(flags.timeStart),
          time_window_end: timeFlag(flags.timeEnd),
          dry_run: flags.dryRun
        },
        log
      )
      const storage = await openStorage(config.storage)
      const stateStorage = config.restore.state_storage && (await openStorage(config.restore.state_storage))
      const cluster = connectCluster(config.target)
      const { signal, exitCode, dispose } = stopSignal(log)
      const restore = config.restore
      const metricsEndpoint = restore.dry_run ? undefined : await startMetrics(config.metrics, log)
      let metrics: RestoreMetrics | undefined
      const engine: RestoreEngine = new RestoreEngine({
        ...restoreOptionsFromConfig(config, { storage, cluster, stateStorage }),
        signal,
        onWarning: (message, context) => log.warn(context, message),
        onRequest: durationMs => metrics?.produceDuration.observe(durationMs / 1000),
        onAcknowledged: (records, bytes) => {
          metrics?.records.inc(records)
          metrics?.bytes.inc(bytes)
        }
      })
      if (metricsEndpoint) {
        metrics = new metricsEndpoint.module.RestoreMetrics(metricsEndpoint.registry, () => engine.remaining())
      }
      const stopProgress = startProgress(
        `restore ${config.backup_id}`,
        () => {
          const partitions = engine.progress()
          const records = partitions.reduce((sum, p) => sum + p.records, 0)
          const total = engine.plannedRecords()
          return {
            done: records,
            total,
            records,
            bytes: partitions.reduce((sum, p) => sum + p.bytes, 0),
            remaining: `${partitions.filter(p => !p.done).length} partitions left`
          }
        },
        Boolean(process.stderr.isTTY) && !flags.json && !restore.dry_run
      )
      try {
        const summary = await engine.run()
        stopProgress()
        if (flags.json) {
          printJson(summary)
        } else {
          printSummary(summary, restore)
        }
        if (summary.status === 'stopped') {
          log.warn('the restore was stopped before its end: it is incomplete; run it again to continue')
          process.exitCode = exitCode()
        }
      } finally {
        await metricsEndpoint?.finish(signal)
        stopProgress()
        dispose()
        await cluster.close()
        await storage.close()
        await stateStorage?.close()
      }
    })
}

function printSummary(summary: RestoreSummary, restore: RestoreConfig['restore']): void {
  if (summary.dryRun) {
    console.log(`restore plan for backup ${summary.backupId} (dry run, nothing changed):`)
    console.log(
      table(
        ['source', 'target', 'records', 'bytes'],
        summary.partitions.map(p => [p.source, p.target, formatCount(p.records), formatBytes(p.bytes)])
      )
    )
    console.log(
      `${formatCount(summary.records)} records, ${formatBytes(summary.bytes)}` +
        (summary.topicsCreated.length ? `; would create ${summary.topicsCreated.join(', ')}` : '') +
        (restore.time_window_start !== undefined || restore.time_window_end !== undefined
          ? ' (counts are upper bounds: whole segments overlapping the time window)'
          : '')
    )
    printNotes(summary)
    return
  }
  console.log(
    `restore ${summary.restoreId} of backup ${summary.backupId} ${summary.status}: ${formatCount(summary.records)} records, ` +
      `${formatBytes(summary.bytes)} into ${summary.partitions.length} partitions in ${(summary.durationMs / 1000).toFixed(1)} s ` +
      `(${formatRate(summary.bytes, summary.durationMs)})`
  )
  for (const group of summary.consumerGroups) {
    console.log(`  consumer group ${group.groupId}: ${group.offsets.length} partition offsets committed`)
  }
  printNotes(summary)
}

function printNotes(summary: RestoreSummary): void {
  for (const note of summary.notes) {
    console.log(`  note: ${note}`)
  }
}
