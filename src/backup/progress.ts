/**
 * How far a backup run is, from its partitions' positions: the offsets it set out to cover,
 * those covered so far, and the partitions furthest from their end (a stuck one shows there).
 * Continuous runs have no stop offset; their partitions count as covered up to where they are.
 */
import type { PartitionProgress } from './engine.ts'

export interface BackupProgressSummary {
  /** Offsets covered by this run so far, and in all (offsets, not records: gaps and markers count). */
  offsetsDone: number
  offsetsTotal: number
  records: number
  bytes: number
  /** How many partitions have offsets left. */
  partitionsBehind: number
  /** The partitions with the most offsets left, most first. */
  furthestBehind: Array<{ topic: string; partition: number; offsetsLeft: number }>
}

export function summarizeProgress(partitions: PartitionProgress[], furthest = 3): BackupProgressSummary {
  let offsetsDone = 0
  let offsetsTotal = 0
  let records = 0
  let bytes = 0
  const behind: BackupProgressSummary['furthestBehind'] = []
  for (const p of partitions) {
    const start = Number(p.startOffset)
    const fetched = Number(p.fetchOffset)
    const stop = p.stopOffset === null ? fetched : Number(p.stopOffset)
    offsetsTotal += Math.max(stop - start, 0)
    offsetsDone += Math.max(Math.min(fetched, stop) - start, 0)
    records += p.records
    bytes += p.bytes
    if (stop > fetched) {
      behind.push({ topic: p.topic, partition: p.partition, offsetsLeft: stop - fetched })
    }
  }
  return {
    offsetsDone,
    offsetsTotal,
    records,
    bytes,
    partitionsBehind: behind.length,
    furthestBehind: behind.sort((a, b) => b.offsetsLeft - a.offsetsLeft).slice(0, furthest)
  }
}
