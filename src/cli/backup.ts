/** `kafka-backup backup`: run a backup described by a config file. */
import { Command } from 'commander'
import { BackupEngine } from '../backup/engine.ts'
import { summarizeProgress } from '../backup/progress.ts'
import { connectCluster } from '../kafka/connect.ts'
import type { BackupMetrics } from '../metrics/registry.ts'
import { backupOptionsFromConfig } from '../options.ts'
import { locationHelp } from '../storage/backends.ts'
import { openStorage } from '../storage/open.ts'
import { loadModeConfig, loggerFor, startMetrics, stopSignal } from './context.ts'
import { formatBytes, formatCount, formatRate, printJson } from './output.ts'
import { startProgress } from './progress.ts'

interface BackupFlags {
  config: string
  backupId?: string
  bootstrapServers?: string
  topics?: string
  path?: string
  json?: boolean
}

export function backupCommand(): Command {
  return new Command('backup')
    .description('Back up Kafka topics to storage (one-shot, or continuous with backup.continuous: true).')
    .requiredOption('-c, --config <file>', 'YAML config with mode: backup')
    .option('--backup-id <id>', 'override backup_id')
    .option('--bootstrap-servers <list>', 'override source.bootstrap_servers (comma-separated host:port)')
    .option('--topics <list>', 'override source.topics.include (comma-separated names or * patterns)')
    .option('--path <location>', `override storage: ${locationHelp}`)
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup backup --config backup.yaml
  kafka-backup backup --config backup.yaml --topics 'orders,payments-*' --path /backups
  kafka-backup backup --config backup.yaml --json | jq .records`
    )
    .action(async (flags: BackupFlags, command: Command) => {
      const log = loggerFor(command)
      const config = await loadModeConfig(
        flags.config,
        'backup',
        {
          backup_id: flags.backupId,
          bootstrap_servers: flags.bootstrapServers,
          topics: flags.topics,
          path: flags.path
        },
        log
      )
      const storage = await openStorage(config.storage)
      const cluster = connectCluster(config.source)
      const { signal, exitCode, dispose } = stopSignal(log)
      const metricsEndpoint = await startMetrics(config.metrics, log)
      let metrics: BackupMetrics | undefined
      const engine: BackupEngine = new BackupEngine({
        ...backupOptionsFromConfig(config, { storage, cluster }),
        signal,
        onWarning: (message, context) => log.warn(context, message),
        onFetch: durationMs => metrics?.fetchDuration.observe(durationMs / 1000),
        onBatchesWritten: (records, bytes, durationMs) => metrics?.batchesWritten(records, bytes, durationMs),
        onSegmentDurable: segment => metrics?.segmentDurable(segment.bytes, segment.sizeBytes, segment.durationMs)
      })
      if (metricsEndpoint) {
        metrics = new metricsEndpoint.module.BackupMetrics(metricsEndpoint.registry, () => engine.progress())
      }
      const stopProgress = startProgress(
        `backup ${config.backup_id}`,
        () => {
          const progress = summarizeProgress(engine.progress())
          const furthest = progress.furthestBehind.map(p => `${p.topic}/${p.partition} ${formatCount(p.offsetsLeft)}`)
          return {
            done: progress.offsetsDone,
            total: progress.offsetsTotal,
            records: progress.records,
            bytes: progress.bytes,
            remaining:
              `${formatCount(Math.max(progress.offsetsTotal - progress.offsetsDone, 0))} offsets left in ${progress.partitionsBehind} partitions` +
              (furthest.length > 0 ? ` (${furthest.join(', ')})` : '')
          }
        },
        Boolean(process.stderr.isTTY) && !flags.json
      )
      try {
        const summary = await engine.run()
        stopProgress()
        if (flags.json) {
          printJson(summary)
        } else {
          console.log(
            `backup ${summary.backupId} ${summary.status}: ${formatCount(summary.records)} records, ` +
              `${formatBytes(summary.bytes)} (${formatBytes(summary.storedBytes)} stored) from ` +
              `${summary.partitions} partitions of ${summary.topics} topics in ${(summary.durationMs / 1000).toFixed(1)} s ` +
              `(${formatRate(summary.bytes, summary.durationMs)}) to ${summary.location}`
          )
          if (summary.pruned) {
            console.log(
              `  retention: deleted ${summary.pruned.segments} segments (${formatCount(summary.pruned.records)} records, ` +
                `${formatBytes(summary.pruned.sizeBytes)}); every record from ${summary.pruned.keptFrom} on is kept`
            )
          }
          for (const gap of summary.gaps) {
            console.log(
              `  gap ${gap.topic}/${gap.partition}: offsets ${gap.fromOffset}..${BigInt(gap.toOffset) - 1n} were deleted by retention before they could be backed up`
            )
          }
        }
        if (summary.status === 'stopped' && !config.backup.continuous) {
          log.warn('the one-shot backup was stopped before its end: it is incomplete; run it again to continue')
          process.exitCode = exitCode()
        }
        await metricsEndpoint?.finish(signal)
      } finally {
        stopProgress()
        dispose()
        await cluster.close()
        await storage.close()
      }
    })
}
