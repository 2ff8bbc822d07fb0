/** `list`, `describe`, `validate` and `offset-map`: read-only looks at backups in storage. */
import { Command } from 'commander'
import { describeBackup, listBackups, requireManifest, validateBackup } from '../catalog/inspect.ts'
import { loadKeyring } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { listRestoreStates } from '../restore/state.ts'
import { locationHelp } from '../storage/backends.ts'
import { openStorage } from '../storage/open.ts'
import { type LocationFlags, loggerFor, openLocation } from './context.ts'
import { formatBytes, formatCount, formatTime, printJson, table } from './output.ts'
import { startProgress } from './progress.ts'

export interface InspectFlags extends LocationFlags {
  json?: boolean
}

export function withLocation(command: Command, needsBackupId: boolean): Command {
  command
    .option('--path <location>', `where backups live: ${locationHelp}`)
    .option('-c, --config <file>', 'take storage (and backup_id) from a backup or restore config instead')
    .option('--json', 'print JSON on stdout')
  if (needsBackupId) {
    command.option('--backup-id <id>', 'the backup (default: backup_id of --config)')
  }
  return command
}

export function listCommand(): Command {
  return withLocation(new Command('list').description('List the backups under a storage location.'), false)
    .addHelpText(
      'after',
      '\nA backup whose manifest cannot be read is listed with its error, and the exit code is 1.\n\nExamples:\n  kafka-backup list --path /backups\n  kafka-backup list --path s3://my-bucket/kafka --json'
    )
    .action(async (flags: InspectFlags, command: Command) => {
      const { storage } = await openLocation(flags, loggerFor(command))
      try {
        const backups = await listBackups(storage)
        if (flags.json) {
          printJson(backups)
        } else if (backups.length === 0) {
          console.log(`no backups at ${storage.location}`)
        } else {
          console.log(
            table(
              ['backup', 'topics', 'created', 'updated', 'last run'],
              backups.map(b =>
                'error' in b
                  ? [b.backupId, '-', '-', '-', `UNREADABLE (${b.error.code})`]
                  : [b.backupId, b.topics, b.createdAt, b.updatedAt, b.lastRun ?? '-']
              )
            )
          )
          for (const b of backups) {
            if ('error' in b) {
              console.log(`error   ${b.error.code}: ${b.error.message}`)
            }
          }
        }
        if (backups.some(b => 'error' in b)) {
          process.exitCode = 1
        }
      } finally {
        await storage.close()
      }
    })
}

export function describeCommand(): Command {
  return withLocation(
    new Command('describe').description('Describe a backup: topics, partitions, offset and time ranges, sizes.'),
    true
  )
    .addHelpText(
      'after',
      '\nExamples:\n  kafka-backup describe --path /backups --backup-id nightly\n  kafka-backup describe --config backup.yaml --json'
    )
    .action(async (flags: InspectFlags, command: Command) => {
      const { storage, backupId } = await openLocation(flags, loggerFor(command), true)
      try {
        const description = await describeBackup(storage, backupId)
        if (flags.json) {
          printJson(description)
          return
        }
        console.log(`backup ${description.backupId} at ${description.location}`)
        console.log(
          `  ${formatCount(description.records)} records, ${formatBytes(description.bytes)} of batches, ` +
            `${formatBytes(description.storedBytes)} stored (${description.compression.codec} level ${description.compression.level}` +
            `${description.compressionRatio ? `, ratio ${description.compressionRatio.toFixed(2)}` : ''})`
        )
        console.log(
          `  source cluster ${description.source.clusterId ?? '?'} (${description.source.bootstrapServers.join(',')})`
        )
        if (description.encryption) {
          console.log(`  encrypted with key ids ${description.encryption.keyIds.join(', ')}`)
        }
        console.log(
          `  created ${description.createdAt}, updated ${description.updatedAt}, ${description.runs.length} runs`
        )
        console.log('')
        console.log(
          table(
            ['topic/partition', 'offsets', 'records', 'size', 'stored', 'first time', 'last time', 'gaps'],
            description.topics.flatMap(t =>
              t.partitions.map(p => [
                `${p.topic}/${p.partition}`,
                `${p.startOffset}..${BigInt(p.nextOffset) - 1n}`,
                formatCount(p.records),
                formatBytes(p.bytes),
                formatBytes(p.storedBytes),
                p.minTimestamp === null ? '-' : formatTime(p.minTimestamp),
                p.maxTimestamp === null ? '-' : formatTime(p.maxTimestamp),
                p.gaps.length
              ])
            )
          )
        )
        if (description.consumerGroups.length > 0) {
          console.log('')
          console.log(
            table(
              ['consumer group', 'state', 'partitions', 'captured'],
              description.consumerGroups.map(g => [g.groupId, g.state, g.offsets.length, g.capturedAt])
            )
          )
        }
      } finally {
        await storage.close()
      }
    })
}

export function validateCommand(): Command {
  return withLocation(
    new Command('validate')
      .description('Check a backup: manifest, indexes and segments agree, offsets continue, gaps reported.')
      .option('--deep', 'also read every frame: every checksum and every Kafka batch CRC')
      .option('--keyring-file <file>', 'keyring of an encrypted backup, for --deep (default: encryption of --config)')
      .option('--keyring-env <var>', 'environment variable holding that keyring instead'),
    true
  )
    .addHelpText(
      'after',
      '\nExit code 0 when valid, 1 when an error was found (warnings do not fail).\n\nExamples:\n  kafka-backup validate --path /backups --backup-id nightly --deep'
    )
    .action(
      async (flags: InspectFlags & { deep?: boolean; keyringFile?: string; keyringEnv?: string }, command: Command) => {
        const log = loggerFor(command)
        const { storage, backupId, encryption } = await openLocation(flags, log, true)
        try {
          const keyring =
            flags.keyringFile || flags.keyringEnv
              ? { keyring_file: flags.keyringFile, keyring_env: flags.keyringEnv }
              : encryption
          const keys =
            flags.deep && keyring
              ? await loadKeyring(keyring, (message, context) => log.warn(context, message))
              : undefined
          const id = backupId
          let checked = 0
          let total = 0
          const stopProgress = startProgress(
            `validate ${id}`,
            () => ({ done: checked, total, records: 0, bytes: 0, remaining: `${total - checked} segments left` }),
            Boolean(flags.deep && process.stderr.isTTY && !flags.json)
          )
          const report = await validateBackup(storage, id, {
            deep: flags.deep,
            keys,
            onSegment: (segmentsChecked, segments) => {
              checked = segmentsChecked
              total = segments
            }
          })
          stopProgress()
          if (flags.json) {
            printJson(report)
          } else {
            for (const problem of report.problems) {
              console.log(`${problem.severity.padEnd(7)} ${problem.code}: ${problem.message}`)
            }
            console.log(
              `backup ${id} is ${report.valid ? 'valid' : 'INVALID'}: ${report.partitions} partitions, ${report.segments} segments` +
                `${report.deep ? `, ${report.frames} frames read and checked` : ''}, ${formatCount(report.records)} records, ` +
                `${report.problems.filter(p => p.severity === 'error').length} errors, ${report.problems.filter(p => p.severity === 'warning').length} warnings`
            )
          }
          if (!report.valid) {
            process.exitCode = 1
          }
        } finally {
          await storage.close()
        }
      }
    )
}

export function offsetMapCommand(): Command {
  return withLocation(
    new Command('offset-map')
      .description('Print how source offsets map to restored offsets, per restore of a backup.')
      .option('--restore-id <id>', 'only this restore'),
    true
  )
    .addHelpText(
      'after',
      '\nExamples:\n  kafka-backup offset-map --path /backups --backup-id nightly\n  kafka-backup offset-map --path /backups --backup-id nightly --json'
    )
    .action(async (flags: InspectFlags & { restoreId?: string }, command: Command) => {
      const { storage, backupId, stateStorage } = await openLocation(flags, loggerFor(command), true)
      // A restore config with restore.state_storage keeps its restores there.
      const states = stateStorage ? await openStorage(stateStorage) : storage
      try {
        const id = backupId
        await requireManifest(storage, id)
        const restores = (await listRestoreStates(states, id)).filter(
          r => !flags.restoreId || r.restoreId === flags.restoreId
        )
        if (flags.restoreId && restores.length === 0) {
          throw new BackupError('KB_BACKUP_NOT_FOUND', `backup ${id} has no restore ${flags.restoreId}`, {
            backupId: id,
            restoreId: flags.restoreId
          })
        }
        if (flags.json) {
          printJson(
            restores.map(r => ({
              restoreId: r.restoreId,
              status: r.status,
              target: r.target,
              window: r.window,
              partitions: r.partitions.map(p => ({
                source: { topic: p.sourceTopic, partition: p.sourcePartition },
                target: { topic: p.targetTopic, partition: p.targetPartition },
                runs: p.offsetMap.map(([sourceOffset, targetOffset, count]) => ({ sourceOffset, targetOffset, count }))
              })),
              consumerGroups: r.consumerGroups
            }))
          )
          return
        }
        if (restores.length === 0) {
          console.log(`backup ${id} has not been restored yet`)
        }
        for (const restore of restores) {
          console.log(
            `restore ${restore.restoreId} (${restore.status}, ${restore.updatedAt}) to ${restore.target.bootstrapServers.join(',')}`
          )
          console.log(
            table(
              ['source', 'target', 'source offsets', 'target offsets'],
              restore.partitions.flatMap(p =>
                p.offsetMap.map(([source, target, count]) => [
                  `${p.sourceTopic}/${p.sourcePartition}`,
                  `${p.targetTopic}/${p.targetPartition}`,
                  `${source}..${BigInt(source) + BigInt(count) - 1n}`,
                  `${target}..${BigInt(target) + BigInt(count) - 1n}`
                ])
              )
            )
          )
          for (const group of restore.consumerGroups) {
            console.log(
              `  group ${group.groupId}: ${group.offsets.map(o => `${o.topic}/${o.partition} ${o.sourceOffset}->${o.targetOffset}`).join(', ')}`
            )
          }
        }
      } finally {
        await storage.close()
        if (states !== storage) {
          await states.close()
        }
      }
    })
}
