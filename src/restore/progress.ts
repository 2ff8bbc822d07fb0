/**
 * Offset bookkeeping of one target partition: what the target acknowledged moves the saved
 * position and extends the offset map, and so do records a previous attempt wrote without
 * seeing the acknowledgement (found by comparing the target's end offset with the saved one).
 */
import { BackupError } from '../errors.ts'
import { OffsetMap } from './offset-map.ts'
import { dropLeadingRecords, leadingRuns, type OutgoingBatch, type OutgoingRun } from './outgoing.ts'
import type { PartitionState } from './state.ts'

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
    for (const run of runs) {
      this.offsetMap.add({
        sourceOffset: run.sourceOffset,
        targetOffset: targetBase + BigInt(run.targetDelta),
        count: run.count
      })
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
   * Passes `source` on, minus its first `alreadyWritten` records, which are in the target
   * already: our producer writes each partition in order, so the records beyond the saved end
   * are exactly the next ones of the source stream. They are mapped, not sent again.
   */
  async *skipWritten(source: AsyncIterable<OutgoingBatch>, alreadyWritten: bigint): AsyncGenerator<OutgoingBatch> {
    let remaining = alreadyWritten
    for await (const outgoing of source) {
      if (remaining === 0n) {
        yield outgoing
        continue
      }
      const count = outgoing.batch.recordCount
      const take = Number(remaining < BigInt(count) ? remaining : BigInt(count))
      const runs = leadingRuns(outgoing, take)
      this.#record(runs, BigInt(this.state.targetNextOffset), take)
      remaining -= BigInt(take)
      if (take === count) {
        this.state.sourceNextOffset = outgoing.sourceNextAfter.toString()
        this.state.erasedRecords += outgoing.erased
        continue
      }
      const lastRun = runs.at(-1)!
      this.state.sourceNextOffset = (lastRun.sourceOffset + BigInt(lastRun.count)).toString()
      const rest = dropLeadingRecords(outgoing, take)
      if (rest) {
        yield rest
      }
    }
    if (remaining > 0n) {
      const { targetTopic: topic, targetPartition: partition } = this.state
      throw new BackupError(
        'KB_TARGET_CHANGED',
        `target partition ${topic}/${partition} holds ${remaining} more records than this restore can account for; something else wrote to it`,
        { topic, partition, offset: this.state.targetNextOffset }
      )
    }
  }
}
