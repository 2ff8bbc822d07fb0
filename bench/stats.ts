/**
 * Small statistics for benchmark figures: medians with their spread, latency percentiles; and
 * the markdown table they are printed in.
 */

export interface Figure {
  median: number
  min: number
  max: number
  runs: number
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

export function figure(values: readonly number[]): Figure {
  if (values.length === 0) {
    return { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: 0 }
  }
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length }
}

/** (max - min) / median, as a percentage: how far apart the runs were. */
export function spreadPercent(value: Figure): number {
  return value.median === 0 ? 0 : ((value.max - value.min) / value.median) * 100
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) {
    return Number.NaN
  }
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1]!
}

/** The lines of a markdown table: the header, its rule, a line per row. */
export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)]
}
