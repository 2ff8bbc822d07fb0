/**
 * Point-in-time selection. The window is inclusive at both ends, in epoch milliseconds, and a
 * record's time is what a consumer of the source saw: its CreateTime, or the batch's append
 * time for LogAppendTime batches.
 *
 * A batch header carries the largest timestamp of its records but not the smallest (the first
 * record's time is not a lower bound: producers may set any timestamp). So the header alone
 * decides a batch only when it proves the answer: maxTimestamp before the window start (none
 * in), or, without a start, maxTimestamp within the end (all in). Otherwise the record
 * timestamps are scanned; only a batch that really straddles an edge is rebuilt.
 */
import type { RecordBatchView } from '../batch/header.ts'
import { iterateRecords } from '../batch/records.ts'

export interface TimeWindow {
  start?: bigint
  end?: bigint
}

export type WindowMatch = 'all' | 'none' | 'some'

export function isUnbounded(window: TimeWindow): boolean {
  return window.start === undefined && window.end === undefined
}

export function inWindow(window: TimeWindow, timestamp: bigint): boolean {
  return (
    (window.start === undefined || timestamp >= window.start) && (window.end === undefined || timestamp <= window.end)
  )
}

/** Whether a frame or segment with this largest timestamp can hold records in the window. */
export function mayOverlap(window: TimeWindow, maxTimestamp: bigint): boolean {
  return window.start === undefined || maxTimestamp >= window.start
}

export function matchBatch(batch: RecordBatchView, window: TimeWindow): WindowMatch {
  if (isUnbounded(window)) {
    return 'all'
  }
  const maxTimestamp = batch.maxTimestamp
  if (batch.isLogAppendTime) {
    return inWindow(window, maxTimestamp) ? 'all' : 'none'
  }
  if (window.start !== undefined && maxTimestamp < window.start) {
    return 'none'
  }
  if (window.start === undefined && window.end !== undefined && maxTimestamp <= window.end) {
    return 'all'
  }
  let inside = 0
  let outside = 0
  const baseTimestamp = batch.baseTimestamp
  for (const record of iterateRecords(batch)) {
    if (inWindow(window, baseTimestamp + record.timestampDelta)) {
      inside++
    } else {
      outside++
    }
  }
  return outside === 0 ? 'all' : inside === 0 ? 'none' : 'some'
}
