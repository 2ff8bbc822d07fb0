/**
 * The contents of a signed report: its own figures agree with its verdicts, and, given the
 * backup, the backup still holds what the report says it held (docs/verification-report.md).
 */
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'
import { REPORT_FORMAT, REPORT_VERSION, summarizeBackup } from './compare.ts'
import { type RecordSummary, summaryDifferences } from './digest.ts'
import type { SignedReport } from './sign.ts'

export function parseSignedReport(text: string, file: string): SignedReport {
  let document: SignedReport
  try {
    document = JSON.parse(text) as SignedReport
  } catch (error) {
    throw new BackupError('KB_REPORT_INVALID', `${file} is not valid JSON`, { cause: error, file })
  }
  const report = document?.report
  if (
    report?.format !== REPORT_FORMAT ||
    typeof report.formatVersion !== 'number' ||
    !Array.isArray(report.partitions)
  ) {
    throw new BackupError(
      'KB_REPORT_INVALID',
      `${file} is not a kafka-backup verification report (report.format "${REPORT_FORMAT}")`,
      {
        file
      }
    )
  }
  if (report.formatVersion > REPORT_VERSION) {
    throw new BackupError(
      'KB_REPORT_INVALID',
      `${file} has report format version ${report.formatVersion}; this kafka-backup reads up to ${REPORT_VERSION}`,
      { file, expected: REPORT_VERSION, found: report.formatVersion }
    )
  }
  return document
}

const where = (p: { source: { topic: string; partition: number } }) => `${p.source.topic}/${p.source.partition}`

/**
 * Throws KB_REPORT_INVALID when a partition's verdict or the overall result does not follow
 * from the report's own figures, or (with `storage`) when the backup's records of a partition
 * no longer sum up to what the report says.
 */
export async function checkReportContents(
  signed: SignedReport,
  file: string,
  storage?: Storage,
  keys?: KeyProvider
): Promise<void> {
  const { report } = signed
  for (const [i, p] of report.partitions.entries()) {
    const differences = summaryDifferences(p.backup, p.cluster, report.comparesOffsets)
    if (differences.join() !== p.differences.join()) {
      throw new BackupError(
        'KB_REPORT_INVALID',
        `${file}: partitions[${i}] (${where(p)}) says it differs in [${p.differences.join(', ')}], its figures differ in [${differences.join(', ')}]`,
        { file, field: `partitions[${i}].differences` }
      )
    }
  }
  const result = report.partitions.every(p => p.differences.length === 0) ? 'match' : 'mismatch'
  if (report.result !== result) {
    throw new BackupError('KB_REPORT_INVALID', `${file}: result says ${report.result}, its partitions say ${result}`, {
      file,
      field: 'result'
    })
  }
  if (storage) {
    for (const [i, p] of report.partitions.entries()) {
      const now: RecordSummary = await summarizeBackup(storage, report.backupId, p.source, keys)
      const differences = summaryDifferences(p.backup, now, true)
      if (differences.length > 0) {
        throw new BackupError(
          'KB_REPORT_INVALID',
          `${file}: partitions[${i}]: backup ${report.backupId} at ${storage.location} no longer holds what the report says of ${where(p)} ` +
            `offsets ${p.source.fromOffset}..${p.source.toOffset} (${differences.join(', ')} differ)`,
          { file, field: `partitions[${i}].backup`, topic: p.source.topic, partition: p.source.partition }
        )
      }
    }
  }
}
