/** Shared output helpers of the CLI: JSON for scripts, tables and sizes for people. */
import { BackupError } from '../errors.ts'

/** JSON with int64 values as strings (offsets, timestamps) and errors with their context. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, item) => (typeof item === 'bigint' ? item.toString() : item), 2)
}

export function printJson(value: unknown): void {
  process.stdout.write(`${toJson(value)}\n`)
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

export function formatCount(count: number | bigint): string {
  return count.toLocaleString('en-US')
}

export function formatRate(bytes: number, durationMs: number): string {
  return durationMs > 0 ? `${(bytes / 1e6 / (durationMs / 1000)).toFixed(1)} MB/s` : '-'
}

export function formatTime(epochMs: string | number | bigint): string {
  const value = Number(epochMs)
  return value < 0 ? '-' : new Date(value).toISOString()
}

/** A plain left-aligned text table. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map(row => row.map(String))]
  const widths = headers.map((_, column) => Math.max(...cells.map(row => row[column]?.length ?? 0)))
  return cells
    .map(row =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

/** Exit codes: 2 for what the user can fix in the config or command line, 1 for the rest. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof BackupError && error.code.startsWith('KB_CONFIG')) {
    return 2
  }
  return 1
}

export function errorJson(error: unknown): Record<string, unknown> {
  if (error instanceof BackupError) {
    const { name: _name, message, code, ...context } = error
    return { code, message, ...context }
  }
  return { code: 'KB_INTERNAL', message: (error as Error)?.message ?? String(error) }
}
