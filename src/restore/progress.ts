/**
 * Offset bookkeeping of one target partition (or, re-partitioned, of one source partition's
 * share of it): what the target acknowledged moves the saved position and extends the offset
 * map, and so do records a previous attempt wrote without seeing the acknowledgement (found by
 * comparing the target's end offset with the saved one).
 */
import { BackupError } from '../errors.ts'
import { OffsetMap, type OffsetRun } from './offset-map.ts'
import { dropLeadingRecords, leadingRuns, type OutgoingBatch, type OutgoingRun } from './outgoing.ts'
import type { PartitionState } from './state.ts'

/**
 * Re-partitioned records of one source land on a target partition between those of others, so
 * their runs are mostly one record long; one sparse run per this many records keeps the offset
 * map (saved with every checkpoint) small, and a group translated inside one re-reads fewer.
 */
const SPARSE_RUN_RECORDS = 64

/** Sparse runs of at most SPARSE_RUN_RECORDS records; stretches without a gap stay exact. */
function sparseRuns(runs: OutgoingRun[], targetBase: bigint): OffsetRun[] {
  const result: OffsetRun[] = []
  let current: OffsetRun | undefined
  for (const run of runs) {
    for (let i = 0; i < run.count; i++) {
      const sourceOffset = run.sourceOffset + BigInt(i)
      if (!current || current.count === SPARSE_RUN_RECORDS) {
        current = { sourceOffset, targetOffset: targetBase + BigInt(run.targetDelta + i), count: 0, sourceSpan: 0 }
        result.push(current)
      }
      current.count++
      current.sourceSpan = Number(sourceOffset - current.sourceOffset) + 1
    }
  }
  return result.map(r => (r.sourceSpan === r.count ? { ...r, sourceSpan: undefined } : r))
}

export class PartitionProgress {
  readonly state: PartitionState
  readonly offsetMap: OffsetMap
  /**
   * Records erased after the last restored one of the partition: counted once the partition is
   * done, since a rerun before that reads them again.
   */
  erasedAtEnd = 0

  constructor(state: PartitionState) {
    this.state = state
    this.offsetMap = OffsetMap.fromJSON(state.offsetMap)
  }

  /** Writes the offset map into the state, for saving. */
  sync(): void {
    this.state.offsetMap = this.offsetMap.toJSON()
  }

  #record(runs: OutgoingRun[], targetBase: bigint, records: number): void {
    const offsetRuns = this.state.repartitioned
      ? sparseRuns(runs, targetBase)
      : runs.map(run => ({
          sourceOffset: run.sourceOffset,
          targetOffset: targetBase + BigInt(run.targetDelta),
          count: run.count
        }))
    for (const run of offsetRuns) {
      this.offsetMap.add(run)
    }
    this.state.targetNextOffset = (targetBase + BigInt(records)).toString()
    this.state.records += records
  }

  /** The target acknowledged `outgoing` at `baseOffset`. */
  acknowledged(outgoing: OutgoingBatch, baseOffset: bigint): void {
    this.#record(outgoing.runs, baseOffset, outgoing.batch.recordCount)
    this.state.sourceNextOffset = outgoing.sourceNextAfter.toString()
    this.state.bytes += outgoing.batch.bytes.length
    this.state.erasedRecords += outgoing.erased
  }

  /** Every record of the partition is restored (or left out): `nextOffset` is its source end. */
  finished(nextOffset: string): void {
    this.state.done = true
    this.state.sourceNextOffset = nextOffset
    this.state.erasedRecords += this.erasedAtEnd
    this.erasedAtEnd = 0
  }

  /**
   * The first `take` records of `outgoing` are in the target already, from `targetBase` on: maps
   * them and returns the rest of the batch, if any.
   */
  skipLeading(outgoing: OutgoingBatch, take: number, targetBase: bigint): OutgoingBatch | undefined {
    const runs = leadingRuns(outgoing, take)
    this.#record(runs, targetBase, take)
    if (take === outgoing.batch.recordCount) {
      this.state.sourceNextOffset = outgoing.sourceNextAfter.toString()
      this.state.erasedRecords += outgoing.erased
      return undefined
    }
    const lastRun = runs.at(-1)!
    this.state.sourceNextOffset = (lastRun.sourceOffset + BigInt(lastRun.count)).toString()
    return dropLeadingRecords(outgoing, take)
  }

  /**
   * Passes `source` on, minus its first `alreadyWritten` records, which are in the target
   * already: our producer writes each partition in order, so the records beyond the saved end
   * are exactly the next ones of the source stream. They are mapped, not sent again.
   */
  skipWritten(source: AsyncIterable<OutgoingBatch>, alreadyWritten: bigint): AsyncGenerator<OutgoingBatch> {
    const { targetTopic: topic, targetPartition: partition, targetNextOffset } = this.state
    return skipWrittenRecords(
      source,
      alreadyWritten,
      { topic, partition, targetNext: BigInt(targetNextOffset) },
      () => this
    )
  }
}

/**
 * PartitionProgress.skipWritten for a target partition that several progresses feed (one per
 * source partition when re-partitioned): `progressOf` names the one each batch belongs to, and
 * `target.targetNext` is the partition's saved end.
 */
export async function* skipWrittenRecords(
  source: AsyncIterable<OutgoingBatch>,
  alreadyWritten: bigint,
  target: { topic: string; partition: number; targetNext: bigint },
  progressOf: (outgoing: OutgoingBatch) => PartitionProgress
): AsyncGenerator<OutgoingBatch> {
  let remaining = alreadyWritten
  let targetBase = target.targetNext
  for await (const outgoing of source) {
    if (remaining === 0n) {
      yield outgoing
      continue
    }
    const count = outgoing.batch.recordCount
    const take = Number(remaining < BigInt(count) ? remaining : BigInt(count))
    const rest = progressOf(outgoing).skipLeading(outgoing, take, targetBase)
    remaining -= BigInt(take)
    targetBase += BigInt(take)
    if (rest) {
      yield rest
    }
  }
  if (remaining > 0n) {
    const { topic, partition } = target
    throw new BackupError(
      'KB_TARGET_CHANGED',
      `target partition ${topic}/${partition} holds ${remaining} more records than this restore can account for; something else wrote to it`,
      { topic, partition, offset: targetBase.toString() }
    )
  }
}
