/** `kafka-backup backup`: run a backup described by a config file. */

import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { Command } from 'commander'
import type { WorkersOptions } from '../backup/engine.ts'
import { BackupEngine, type BackupSummary } from '../backup/engine.ts'
import { summarizeProgress } from '../backup/progress.ts'
import type { BackupConfig } from '../config/schema.ts'
import { loadKeyring } from '../crypto/keys.ts'
import { connectCluster } from '../kafka/connect.ts'
import type { BackupMetrics } from '../metrics/registry.ts'
import { backupOptionsFromConfig } from '../options.ts'
import { loggerFor } from './context.ts'
import { formatBytes, formatCount, formatRate } from './output.ts'
import { type RunFlags, runCommand, runEngine } from './run.ts'

export function backupCommand(): Command {
  return runCommand('backup', 'Back up Kafka topics to storage (one-shot, or continuous with backup.continuous: true).')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup backup --config backup.yaml
  kafka-backup backup --config backup.yaml --topics 'orders,payments-*' --path /backups
  kafka-backup backup --config backup.yaml --json | jq .records`
    )
    .action((flags: RunFlags, command: Command) =>
      runEngine<'backup', BackupSummary>({
        command,
        mode: 'backup',
        flags,
        stoppedWarning: config =>
          config.backup.continuous
            ? undefined
            : 'the one-shot backup was stopped before its end: it is incomplete; run it again to continue',
        engine: async ({ config, storage, cluster, signal, onWarning, closeWithRun }) => {
          let metrics: BackupMetrics | undefined
          const engine: BackupEngine = new BackupEngine({
            ...backupOptionsFromConfig(config, {
              storage,
              cluster,
              keys: config.backup.encryption && (await loadKeyring(config.backup.encryption, onWarning))
            }),
            ...(config.backup.workers.enabled && { workers: workersOptions(config, command, closeWithRun) }),
            signal,
            onWarning,
            onFetch: durationMs => metrics?.fetchDuration.observe(durationMs / 1000),
            onBatchesWritten: (records, bytes, durationMs) => metrics?.batchesWritten(records, bytes, durationMs),
            onSegmentDurable: segment => metrics?.segmentDurable(segment.bytes, segment.sizeBytes, segment.durationMs)
          })
          return {
            run: () => engine.run(),
            observe: endpoint => {
              metrics = new endpoint.module.BackupMetrics(endpoint.registry, () => engine.progress())
            },
            progress: () => {
              const progress = summarizeProgress(engine.progress())
              const furthest = progress.furthestBehind.map(
                p => `${p.topic}/${p.partition} ${formatCount(p.offsetsLeft)}`
              )
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
            printSummary: summary => {
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
          }
        }
      })
    )
}

/**
 * backup.workers: the group gets its own connections (src/group/work-group.ts says why), under a
 * client id naming this worker, so that other workers can tell it is alive (DescribeGroups).
 */
function workersOptions(
  config: BackupConfig,
  command: Command,
  closeWithRun: (resource: { close(): Promise<void> }) => void
): WorkersOptions {
  const workers = config.backup.workers
  const workerId = `kafka-backup-worker-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`
  const cluster = connectCluster({ ...config.source, client_id: workerId })
  closeWithRun(cluster)
  return {
    cluster,
    groupId: workers.group_id ?? `kafka-backup.${config.backup_id}`,
    workerId,
    sessionTimeoutMs: workers.session_timeout_ms,
    heartbeatIntervalMs: workers.heartbeat_interval_ms,
    rebalanceTimeoutMs: workers.rebalance_timeout_ms ?? 60_000,
    logger: loggerFor(command)
  }
}
