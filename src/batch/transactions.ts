/**
 * The READ_COMMITTED batch filter (docs/architecture.md, "READ_COMMITTED filtering"): a READ_COMMITTED Fetch stops at the
 * last stable offset but still carries the batches of aborted transactions and the control
 * batches (markers); the client drops them, batch by batch, using the response's
 * aborted_transactions list.
 *
 * Why the abort state lives for one response only. The broker answers each fetch with every
 * aborted transaction that overlaps the fetched range: marker offset >= fetchOffset and first
 * offset < the end of the returned data (TransactionIndex.collectAbortedTxns). A transaction
 * whose data ends one response and whose abort marker comes in a later one is therefore listed
 * in both responses; one that started before the fetch offset is listed too. Everything needed
 * to judge a response is in it, which is also how Kafka's own consumer works (one abort state
 * per completed fetch). Carrying the set of aborted producers over from an earlier response
 * would be wrong after a refetch or a seek: a producer id could stay marked aborted past its
 * abort marker and drop a later, committed transaction. What does persist per partition is
 * only bookkeeping: the next fetch offset and counters of what was dropped.
 */
import type { RecordBatchView } from './header.ts'
import { ControlRecordType, controlRecordType } from './records.ts'

export interface AbortedTransaction {
  producerId: bigint
  firstOffset: bigint
}

export interface ReadCommittedStats {
  /** Batches kept. */
  kept: number
  /** Control batches (commit and abort markers) dropped. */
  controlDropped: number
  /** Data batches of aborted transactions dropped. */
  abortedDropped: number
  /** Batches that ended below the fetch offset (the broker starts at the batch holding it). */
  belowFetchOffsetDropped: number
}

/**
 * Yields the batches of one fetch response to keep, in order. `batches` are the whole batches
 * of the response (after split), `abortedTransactions` the response's list for the partition,
 * `fetchOffset` the offset the request asked for.
 */
export function* readCommittedBatches(
  batches: Iterable<RecordBatchView>,
  abortedTransactions: readonly AbortedTransaction[],
  fetchOffset: bigint,
  stats?: ReadCommittedStats
): Generator<RecordBatchView> {
  // Sorted by first offset, consumed from the front as batches pass it.
  const pending =
    abortedTransactions.length > 1
      ? [...abortedTransactions].sort((a, b) =>
          a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0
        )
      : abortedTransactions
  let next = 0
  const abortedProducers = new Set<bigint>()

  for (const batch of batches) {
    const isControl = batch.isControl
    const lastOffset = batch.lastOffset
    // The abort state is updated even for batches below the fetch offset: a marker there still
    // ends its transaction.
    const producerId = batch.producerId
    if (producerId >= 0n) {
      while (next < pending.length && pending[next]!.firstOffset <= lastOffset) {
        abortedProducers.add(pending[next]!.producerId)
        next++
      }
      if (isControl) {
        if (batch.recordCount > 0 && controlRecordType(batch) === ControlRecordType.abort) {
          abortedProducers.delete(producerId)
        }
        if (stats) stats.controlDropped++
        continue
      }
      if (batch.isTransactional && abortedProducers.has(producerId)) {
        if (stats) stats.abortedDropped++
        continue
      }
    }
    if (isControl) {
      if (stats) stats.controlDropped++
      continue
    }
    if (lastOffset < fetchOffset) {
      if (stats) stats.belowFetchOffsetDropped++
      continue
    }
    if (stats) stats.kept++
    yield batch
  }
}

/**
 * Per-partition READ_COMMITTED state across consecutive fetches: where the next fetch starts
 * and what was dropped. The abort state itself is per response (see the note at the top).
 */
export class TransactionFilter {
  /** The offset to fetch next: after the last whole batch seen, kept or dropped. */
  nextFetchOffset: bigint
  readonly stats: ReadCommittedStats = { kept: 0, controlDropped: 0, abortedDropped: 0, belowFetchOffsetDropped: 0 }

  constructor(fetchOffset = 0n) {
    this.nextFetchOffset = fetchOffset
  }

  /**
   * Filters the whole batches of one response to a fetch at `fetchOffset` and advances
   * `nextFetchOffset` to the end of the last one (its nextOffset: even a dropped batch, or one
   * whose tail compaction removed, moves the position).
   */
  filter(
    batches: readonly RecordBatchView[],
    abortedTransactions: readonly AbortedTransaction[],
    fetchOffset: bigint = this.nextFetchOffset
  ): RecordBatchView[] {
    const kept: RecordBatchView[] = []
    for (const batch of readCommittedBatches(batches, abortedTransactions, fetchOffset, this.stats)) {
      kept.push(batch)
    }
    const last = batches.at(-1)
    this.nextFetchOffset = last !== undefined && last.nextOffset > fetchOffset ? last.nextOffset : fetchOffset
    return kept
  }
}
