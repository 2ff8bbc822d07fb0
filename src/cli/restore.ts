/** `kafka-backup restore`: restore a backup described by a config file. */

import type { Command } from 'commander'
import type { RestoreConfig } from '../config/schema.ts'
import { loadKeyring } from '../crypto/keys.ts'
import { aclName, quotaEntityName } from '../kafka/cluster-metadata-codes.ts'
import { connectCluster } from '../kafka/connect.ts'
import type { RestoreMetrics } from '../metrics/registry.ts'
import { restoreOptionsFromConfig } from '../options.ts'
import { RestoreEngine, type RestoreSummary, type RestoreWorkers } from '../restore/engine.ts'
import { openStorage } from '../storage/open.ts'
import { loggerFor } from './context.ts'
import { formatBytes, formatCount, formatRate, table } from './output.ts'
import { type RunFlags, runCommand, runEngine } from './run.ts'

interface RestoreFlags extends RunFlags {
  timeStart?: string
  timeEnd?: string
  dryRun?: boolean
}

/** `--time-start 1700000000000` or `--time-start 2024-05-01T12:00:00Z`. */
function timeFlag(value: string | undefined): number | string | undefined {
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : value
}

export function restoreCommand(): Command {
  return runCommand(
    'restore',
    'Restore a backup into a Kafka cluster: whole, to a point in time, remapped, with consumer offsets.'
  )
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
    .action((flags: RestoreFlags, command: Command) =>
      runEngine<'restore', RestoreSummary>({
        command,
        mode: 'restore',
        flags,
        overrides: {
          time_window_start: timeFlag(flags.timeStart),
          time_window_end: timeFlag(flags.timeEnd),
          dry_run: flags.dryRun
        },
        dryRun: config => config.restore.dry_run,
        stoppedWarning: () => 'the restore was stopped before its end: it is incomplete; run it again to continue',
        engine: async ({ config, storage, cluster, signal, onWarning, closeWithRun }) => {
          const stateStorage = config.restore.state_storage && (await openStorage(config.restore.state_storage))
          if (stateStorage) {
            closeWithRun(stateStorage)
          }
          const workers = config.restore.workers
          // Set in a dry run too, which then checks what a sharded run checks (and joins nothing).
          const workGroup: RestoreWorkers | undefined = workers.enabled
            ? {
                groupId: workers.group_id,
                join: async (groupId, items, onAssignment) => {
                  const { runWorkGroup } = await import('../group/work-group.ts')
                  // The group needs connections of its own: JoinGroup is held at the coordinator.
                  const groupCluster = connectCluster(config.target)
                  closeWithRun(groupCluster)
                  await runWorkGroup(
                    {
                      cluster: groupCluster,
                      groupId,
                      items,
                      sessionTimeoutMs: workers.session_timeout_ms,
                      heartbeatIntervalMs: workers.heartbeat_interval_ms,
                      rebalanceTimeoutMs: workers.rebalance_timeout_ms ?? 60_000,
                      signal,
                      logger: loggerFor(command)
                    },
                    onAssignment
                  )
                }
              }
            : undefined
          let metrics: RestoreMetrics | undefined
          const engine: RestoreEngine = new RestoreEngine({
            ...restoreOptionsFromConfig(config, {
              storage,
              cluster,
              stateStorage,
              keys: config.restore.encryption && (await loadKeyring(config.restore.encryption, onWarning))
            }),
            workers: workGroup,
            signal,
            onWarning,
            onRequest: durationMs => metrics?.produceDuration.observe(durationMs / 1000),
            onAcknowledged: (records, bytes, erased) => {
              metrics?.records.inc(records)
              metrics?.bytes.inc(bytes)
              metrics?.erased.inc(erased)
            }
          })
          return {
            run: () => engine.run(),
            observe: endpoint => {
              metrics = new endpoint.module.RestoreMetrics(endpoint.registry, () => engine.remaining())
            },
            progress: () => {
              const partitions = engine.progress()
              const records = partitions.reduce((sum, p) => sum + p.records, 0)
              return {
                done: records,
                total: engine.plannedRecords(),
                records,
                bytes: partitions.reduce((sum, p) => sum + p.bytes, 0),
                remaining: `${partitions.filter(p => !p.done).length} partitions left`
              }
            },
            printSummary: summary => printSummary(summary, config.restore)
          }
        }
      })
    )
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
    printMetadata(summary, 'would create')
    printNotes(summary)
    return
  }
  console.log(
    `restore ${summary.restoreId} of backup ${summary.backupId} ${summary.status}: ${formatCount(summary.records)} records, ` +
      `${formatBytes(summary.bytes)} into ${summary.partitions.length} partitions in ${(summary.durationMs / 1000).toFixed(1)} s ` +
      `(${formatRate(summary.bytes, summary.durationMs)})` +
      (restore.erase ? `; ${formatCount(summary.erasedRecords)} records erased (restore.erase)` : '')
  )
  if (summary.worker) {
    console.log(
      `  this worker (group ${summary.worker.groupId}) restored ${summary.worker.partitions.length} of the partitions: ` +
        `${formatCount(summary.worker.records)} records, ${formatBytes(summary.worker.bytes)}`
    )
  }
  for (const group of summary.consumerGroups) {
    console.log(`  consumer group ${group.groupId}: ${group.offsets.length} partition offsets committed`)
  }
  printMetadata(summary, 'created')
  printNotes(summary)
}

/** One line per ACL, quota entity and SCRAM credential created (or to create), then what was there. */
function printMetadata(summary: RestoreSummary, verb: string): void {
  const metadata = summary.metadata
  if (!metadata) {
    return
  }
  for (const acl of metadata.acls) {
    console.log(`  ${verb} ACL: ${aclName(acl)}`)
  }
  for (const quota of metadata.quotas) {
    const values = Object.entries(quota.values).map(([key, value]) => `${key}=${value}`)
    console.log(`  ${verb} quota: ${quotaEntityName(quota.entity)} ${values.join(', ')}`)
  }
  for (const credential of metadata.scramUsers) {
    console.log(
      `  ${verb} SCRAM credential: ${credential.user} ${credential.mechanism} (${credential.iterations} iterations)`
    )
  }
  const { acls, quotas, scramUsers } = metadata.unchanged
  console.log(
    `  already on the target: ${acls} ACLs, ${quotas} quota values, ${scramUsers} SCRAM credentials (left as they are)`
  )
}

function printNotes(summary: RestoreSummary): void {
  for (const note of summary.notes) {
    console.log(`  note: ${note}`)
  }
}
