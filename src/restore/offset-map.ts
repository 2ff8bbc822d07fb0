/**
 * Exact source -> target offset translation.
 * A run says: source offsets `sourceOffset .. sourceOffset + count - 1` all exist and were
 * restored to `targetOffset .. targetOffset + count - 1`. Runs come from the base offsets the
 * broker acknowledged for each produced batch; adjacent runs merge, so a partition restored
 * without compaction holes or gaps is one run whatever its size.
 */
export interface OffsetRun {
  sourceOffset: bigint
  targetOffset: bigint
  count: number
  /**
   * Set on a sparse run (re-partitioning, docs/architecture.md): its `count` records came from
   * source offsets `sourceOffset .. sourceOffset + sourceSpan - 1`, but not from each of them (the
   * others went to other partitions). Keeping one run per few records, not per record, keeps the
   * map small; translation inside one rounds down to its first record.
   */
  sourceSpan?: number
}

/** The JSON form: decimal strings, because int64 offsets do not survive JSON numbers. */
export type SerializedOffsetRun =
  | [sourceOffset: string, targetOffset: string, count: number]
  | [sourceOffset: string, targetOffset: string, count: number, sourceSpan: number]

export class OffsetMap {
  readonly runs: OffsetRun[] = []

  /** Appends a run; runs must arrive in source order. */
  add(run: OffsetRun): void {
    if (run.count <= 0) {
      return
    }
    const last = this.runs.at(-1)
    if (
      last &&
      last.sourceSpan === undefined &&
      run.sourceSpan === undefined &&
      last.sourceOffset + BigInt(last.count) === run.sourceOffset &&
      last.targetOffset + BigInt(last.count) === run.targetOffset
    ) {
      last.count += run.count
    } else {
      this.runs.push({ ...run })
    }
  }

  /**
   * The target offset a consumer committed at source offset C should resume from: the target
   * offset of the first restored record whose source offset is >= C, or `targetEnd` (the end
   * of the restored partition) when there is none. C in a gap maps to the next restored record,
   * so a consumer may re-read but never skips (the direction MirrorMaker 2 also rounds to).
   */
  translate(committed: bigint, targetEnd: bigint): bigint {
    return this.firstAtOrAfter(committed) ?? targetEnd
  }

  /**
   * The target offset of the first restored record whose source offset is >= `committed` (for a
   * sparse run, the run's first record: re-read, never skipped), or undefined when there is none.
   */
  firstAtOrAfter(committed: bigint): bigint | undefined {
    const runs = this.runs
    let low = 0
    let high = runs.length
    while (low < high) {
      const mid = (low + high) >>> 1
      const run = runs[mid]!
      if (run.sourceOffset + BigInt(run.sourceSpan ?? run.count) - 1n < committed) {
        low = mid + 1
      } else {
        high = mid
      }
    }
    const run = runs[low]
    if (!run) {
      return undefined
    }
    if (committed <= run.sourceOffset || run.sourceSpan !== undefined) {
      return run.targetOffset
    }
    return run.targetOffset + (committed - run.sourceOffset)
  }

  toJSON(): SerializedOffsetRun[] {
    return this.runs.map(r =>
      r.sourceSpan === undefined
        ? [r.sourceOffset.toString(), r.targetOffset.toString(), r.count]
        : [r.sourceOffset.toString(), r.targetOffset.toString(), r.count, r.sourceSpan]
    )
  }

  static fromJSON(runs: SerializedOffsetRun[]): OffsetMap {
    const map = new OffsetMap()
    for (const [sourceOffset, targetOffset, count, sourceSpan] of runs) {
      map.add({
        sourceOffset: BigInt(sourceOffset),
        targetOffset: BigInt(targetOffset),
        count,
        ...(sourceSpan === undefined ? {} : { sourceSpan })
      })
    }
    return map
  }
}
