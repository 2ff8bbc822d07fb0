/**
 * Progress of long work on a terminal (stderr), quiet in pipes and with --json. One bar over
 * the offsets to cover, with records, throughput and what remains.
 */
import { formatBytes } from './output.ts'

// The bar is only ever drawn on a terminal: runs from cron, CI or Kubernetes never load it.
const cliProgress = process.stderr.isTTY ? (await import('cli-progress')).default : undefined

export interface ProgressSnapshot {
  /** Units of work done and in total (offsets for backup, records for restore). */
  done: number
  total: number
  records: number
  bytes: number
  /** What is left, for the line: e.g. "3 partitions left". */
  remaining: string
}

export function startProgress(label: string, sample: () => ProgressSnapshot, enabled: boolean): () => void {
  if (!enabled || cliProgress === undefined) {
    return () => {}
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {records} records | {size} | {rate} | {remaining}`,
      hideCursor: true,
      stream: process.stderr,
      etaBuffer: 20,
      clearOnComplete: false
    },
    cliProgress.Presets.shades_classic
  )
  const startedAt = performance.now()
  const render = () => {
    const snapshot = sample()
    const seconds = (performance.now() - startedAt) / 1000
    bar.setTotal(Math.max(snapshot.total, 1))
    bar.update(Math.min(snapshot.done, Math.max(snapshot.total, 1)), {
      records: snapshot.records.toLocaleString('en-US'),
      size: formatBytes(snapshot.bytes),
      rate: seconds > 0 ? `${(snapshot.bytes / 1e6 / seconds).toFixed(1)} MB/s` : '-',
      remaining: snapshot.remaining
    })
  }
  bar.start(1, 0, { records: '0', size: '0 B', rate: '-', remaining: '' })
  const timer = setInterval(render, 500)
  let stopped = false
  return () => {
    if (!stopped) {
      stopped = true
      clearInterval(timer)
      render()
      bar.stop()
    }
  }
}
