/**
 * `report` and `verify-report`: a signed comparison of a backup (or a restore) with the cluster,
 * for auditors, and its check (docs/verification-report.md).
 */

import { readFile, writeFile } from 'node:fs/promises'
import { Command } from 'commander'
import { loadConfig } from '../config/load.ts'
import { loadKeyring } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { connectCluster } from '../kafka/connect.ts'
import { checkReportContents, parseSignedReport } from '../report/check.ts'
import { reportBackup, reportRestore, type VerificationReport } from '../report/compare.ts'
import { checkSignature, readPrivateKey, readPublicKey, signReport } from '../report/sign.ts'
import { openStorage } from '../storage/open.ts'
import { loggerFor, openLocation } from './context.ts'
import type { InspectFlags } from './inspect.ts'
import { formatCount, printJson } from './output.ts'

interface ReportFlags {
  config: string
  key: string
  output: string
  restoreId?: string
  json?: boolean
}

/** The first differing partition as an error, so a mismatch exits non-zero with a one-line reason. */
function mismatchError(report: VerificationReport, file: string): BackupError {
  const differing = report.partitions.filter(p => p.differences.length > 0)
  const first = differing[0]!
  return new BackupError(
    'KB_VERIFY_MISMATCH',
    `${report.kind === 'backup' ? 'backup' : `restore ${report.restore?.restoreId}`} of ${report.backupId} differs from the cluster in ${differing.length} of ${report.partitions.length} partitions, ` +
      `first ${first.source.topic}/${first.source.partition} -> ${first.other.topic}/${first.other.partition}: ${first.differences.join(', ')} ` +
      `(backup ${first.backup.records} records, cluster ${first.cluster.records}); signed report written to ${file}`,
    {
      topic: first.source.topic,
      partition: first.source.partition,
      offset: first.source.fromOffset,
      file
    }
  )
}

function printSummary(report: VerificationReport, file: string): void {
  const records = report.partitions.reduce((sum, p) => sum + p.backup.records, 0)
  console.log(
    `${report.kind} of ${report.backupId}: ${report.partitions.length} partitions, ${formatCount(records)} records compared ` +
      `with ${report.cluster.bootstrapServers.join(',')}: ${report.result.toUpperCase()}; signed report in ${file}`
  )
}

export function reportCommand(): Command {
  return new Command('report')
    .description('Compare a backup (or a restore) with the cluster, per partition, and write a signed JSON report.')
    .requiredOption(
      '-c, --config <file>',
      'a backup config (compares with source) or restore config (compares the restore target)'
    )
    .requiredOption('--key <file>', 'Ed25519 private key (PEM) to sign the report with')
    .requiredOption('-o, --output <file>', 'where to write the signed report')
    .option('--restore-id <id>', 'with a restore config: which restore (default: the newest)')
    .option('--json', 'print the report on stdout as well')
    .addHelpText(
      'after',
      `
Per partition: record count, offset and time ranges and a SHA-256 of the record contents, on
both sides. Exit 1 (KB_VERIFY_MISMATCH) when any partition differs; the report is written
either way.

Examples:
  openssl genpkey -algorithm ed25519 -out report-key.pem
  kafka-backup report --config backup.yaml --key report-key.pem --output backup-report.json
  kafka-backup report --config restore.yaml --key report-key.pem --output restore-report.json`
    )
    .action(async (flags: ReportFlags, command: Command) => {
      const log = loggerFor(command)
      const privateKey = await readPrivateKey(flags.key, '--key')
      const config = await loadConfig(flags.config, {}, { onWarning: w => log.debug({ key: w.path }, w.message) })
      const storage = await openStorage(config.storage)
      const side = config.mode === 'backup' ? config.source : config.target
      const cluster = connectCluster(side)
      const stateStorage =
        config.mode === 'restore' && config.restore.state_storage
          ? await openStorage(config.restore.state_storage)
          : storage
      try {
        const encryption = config.mode === 'backup' ? config.backup.encryption : config.restore.encryption
        const keys = encryption && (await loadKeyring(encryption, (message, context) => log.warn(context, message)))
        const report =
          config.mode === 'backup'
            ? await reportBackup(storage, config.backup_id, cluster, side.bootstrap_servers, keys)
            : await reportRestore(
                storage,
                stateStorage,
                config.backup_id,
                flags.restoreId,
                cluster,
                side.bootstrap_servers,
                keys
              )
        const signed = signReport(report, privateKey)
        await writeFile(flags.output, `${JSON.stringify(signed, null, 2)}\n`)
        if (flags.json) {
          printJson(signed)
        } else {
          printSummary(report, flags.output)
        }
        if (report.result !== 'match') {
          throw mismatchError(report, flags.output)
        }
      } finally {
        await cluster.close()
        await storage.close()
        if (stateStorage !== storage) {
          await stateStorage.close()
        }
      }
    })
}

interface VerifyFlags extends InspectFlags {
  report: string
  publicKey: string
}

export function verifyReportCommand(): Command {
  return new Command('verify-report')
    .description('Check a signed report: the signature against a trusted public key, and its contents.')
    .requiredOption('--report <file>', 'the signed report')
    .requiredOption('--public-key <file>', 'the trusted Ed25519 public key (PEM) of the signer')
    .option('--path <location>', 'also check the backup still holds what the report says (its location)')
    .option('-c, --config <file>', 'the same, with storage from a config')
    .option('--backup-id <id>', "the backup to check against (default: the report's)")
    .option('--json', 'print the verified report on stdout')
    .addHelpText(
      'after',
      `
Exit 0 only when the signature is valid for the trusted key, the verdicts follow from the
report's figures, the backup (when given) still sums up to them, and the report says match.

Examples:
  openssl pkey -in report-key.pem -pubout -out report-key.pub.pem
  kafka-backup verify-report --report backup-report.json --public-key report-key.pub.pem
  kafka-backup verify-report --report backup-report.json --public-key report-key.pub.pem --path /backups`
    )
    .action(async (flags: VerifyFlags, command: Command) => {
      const trusted = await readPublicKey(flags.publicKey, '--public-key')
      let text: string
      try {
        text = await readFile(flags.report, 'utf8')
      } catch (error) {
        throw new BackupError('KB_CONFIG_NOT_FOUND', `--report ${flags.report}: cannot read the report`, {
          cause: error,
          path: '--report'
        })
      }
      const signed = parseSignedReport(text, flags.report)
      checkSignature(signed, trusted, flags.report)
      const location = flags.path || flags.config ? await openLocation(flags, loggerFor(command)) : undefined
      try {
        if (location?.backupId && location.backupId !== signed.report.backupId) {
          throw new BackupError(
            'KB_REPORT_INVALID',
            `${flags.report} is a report on backup ${signed.report.backupId}, not ${location.backupId}`,
            { file: flags.report, expected: location.backupId, found: signed.report.backupId }
          )
        }
        const log = loggerFor(command)
        const keys =
          location?.encryption &&
          (await loadKeyring(location.encryption, (message, context) => log.warn(context, message)))
        await checkReportContents(signed, flags.report, location?.storage, keys)
      } finally {
        await location?.storage.close()
      }
      const { report } = signed
      if (flags.json) {
        printJson(signed)
      } else {
        console.log(
          `${flags.report}: signature valid, contents consistent${location ? ` and backed by ${location.storage.location}` : ''}; ` +
            `${report.kind} of ${report.backupId} compared at ${report.createdAt} with ${report.cluster.bootstrapServers.join(',')}: ${report.result.toUpperCase()}`
        )
      }
      if (report.result !== 'match') {
        throw new BackupError(
          'KB_VERIFY_MISMATCH',
          `${flags.report} is authentic and records a mismatch: ${report.partitions.filter(p => p.differences.length > 0).length} of ${report.partitions.length} partitions differ`,
          { file: flags.report }
        )
      }
    })
}
