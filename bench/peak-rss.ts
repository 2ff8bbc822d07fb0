/**
 * Preloaded into the CLI processes the end-to-end benchmark starts (`node --import
 * bench/peak-rss.ts src/cli/main.ts ...`): at exit it writes the process's peak resident set
 * (VmHWM from /proc/self/status, kept by the kernel, so no sample can miss the peak) and the
 * largest V8 heap and Buffer memory seen by a 500 ms sampler, and the CPU time the process used
 * (all its threads, the libuv pool's compression included) to BENCH_PEAK_RSS_FILE as JSON.
 * Does nothing when that variable is unset.
 */
import { readFileSync, writeFileSync } from 'node:fs'

export interface PeakMemory {
  /** Peak resident set size (VmHWM), bytes. */
  peakRssBytes: number
  /** Largest sampled V8 heap in use, bytes. */
  peakHeapUsedBytes: number
  /** Largest sampled memory of ArrayBuffers and Buffers (outside the V8 heap), bytes. */
  peakArrayBuffersBytes: number
  /** Largest sampled `external` (ArrayBuffers plus native memory V8 knows of), bytes. */
  peakExternalBytes: number
  /** User + system CPU time of the whole process at exit, microseconds. */
  cpuMicros: number
}

const file = process.env.BENCH_PEAK_RSS_FILE
if (file) {
  const peak: PeakMemory = {
    peakRssBytes: 0,
    peakHeapUsedBytes: 0,
    peakArrayBuffersBytes: 0,
    peakExternalBytes: 0,
    cpuMicros: 0
  }
  const sample = () => {
    const usage = process.memoryUsage()
    peak.peakHeapUsedBytes = Math.max(peak.peakHeapUsedBytes, usage.heapUsed)
    peak.peakArrayBuffersBytes = Math.max(peak.peakArrayBuffersBytes, usage.arrayBuffers)
    peak.peakExternalBytes = Math.max(peak.peakExternalBytes, usage.external)
  }
  // process.memoryUsage() cost the CLI 3-4 ms of its event loop per call on this machine: every
  // 50 ms it was 7% of a backup's main-thread time. The peak RSS (VmHWM) is exact anyway.
  setInterval(sample, 500).unref()
  process.on('exit', () => {
    sample()
    const kiB = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
    peak.peakRssBytes = kiB === undefined ? process.memoryUsage().rss : Number(kiB) * 1024
    const cpu = process.cpuUsage()
    peak.cpuMicros = cpu.user + cpu.system
    writeFileSync(file, JSON.stringify(peak))
  })
}
