/**
 * The Prometheus metrics of a backup or restore run (prom-client), with the names the seed
 * document's dashboards query (`kafka_backup_records_total`, ...), plus the default process
 * metrics (`process_resident_memory_bytes`, event-loop lag, GC).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/** Per-partition series beyond this many would swamp Prometheus; lag is then reported per topic. */
export const MAX_PARTITION_SERIES = 1000

/** Seconds; per-batch work is milliseconds, storage closes can take seconds. */
const latencyBuckets = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 5, 10, 30]

export interface PartitionLag {
  topic: string
  partition: number
  lagRecords: number | null
}

export function createRegistry(): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  return registry
}

/** Sets a gauge per partition, or per topic (partition="all") past MAX_PARTITION_SERIES. */
function setLag(gauge: Gauge<'topic' | 'partition'>, partitions: PartitionLag[]): void {
  gauge.reset()
  if (partitions.length <= MAX_PARTITION_SERIES) {
    for (const p of partitions) {
      if (p.lagRecords !== null) {
        gauge.set({ topic: p.topic, partition: String(p.partition) }, p.lagRecords)
      }
    }
    return
  }
  const byTopic = new Map<string, number>()
  for (const p of partitions) {
    byTopic.set(p.topic, (byTopic.get(p.topic) ?? 0) + (p.lagRecords ?? 0))
  }
  for (const [topic, lag] of byTopic) {
    gauge.set({ topic, partition: 'all' }, lag)
  }
}

export class BackupMetrics {
  readonly records: Counter
  readonly bytes: Counter
  readonly batchDuration: Histogram
  readonly fetchDuration: Histogram
  readonly storageWriteLatency: Histogram
  readonly compressionRatio: Gauge
  readonly lag: Gauge<'topic' | 'partition'>
  #batchBytes = 0
  #storedBytes = 0

  constructor(registry: Registry, lag: () => PartitionLag[]) {
    const registers = [registry]
    this.records = new Counter({
      name: 'kafka_backup_records_total',
      help: 'Records written to backup segments',
      registers
    })
    this.bytes = new Counter({
      name: 'kafka_backup_bytes_total',
      help: 'RecordBatch bytes written to backup segments (before segment compression)',
      registers
    })
    this.batchDuration = new Histogram({
      name: 'kafka_backup_batch_duration_seconds',
      help: 'Time from a Fetch response to its batches being appended to their segment',
      buckets: latencyBuckets,
      registers
    })
    this.fetchDuration = new Histogram({
      name: 'kafka_backup_fetch_duration_seconds',
      help: 'Round trip of one Fetch request, including the broker wait (fetch.max.wait.ms)',
      buckets: latencyBuckets,
      registers
    })
    this.storageWriteLatency = new Histogram({
      name: 'kafka_backup_storage_write_latency_seconds',
      help: 'Time to close a segment: last frame, footer, and the upload completing in storage',
      buckets: latencyBuckets,
      registers
    })
    const ratio = () => (this.#storedBytes > 0 ? this.#batchBytes / this.#storedBytes : 0)
    this.compressionRatio = new Gauge({
      name: 'kafka_backup_compression_ratio',
      help: 'Batch bytes / stored bytes over the segments made durable in this run',
      registers,
      collect() {
        this.set(ratio())
      }
    })
    this.lag = new Gauge({
      name: 'kafka_backup_lag_records',
      help: `Records in the partition beyond the backup's fetch position (per topic when over ${MAX_PARTITION_SERIES} partitions)`,
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        setLag(this, lag())
      }
    })
  }

  segmentDurable(bytes: number, sizeBytes: number, durationMs: number): void {
    this.#batchBytes += bytes
    this.#storedBytes += sizeBytes
    this.storageWriteLatency.observe(durationMs / 1000)
  }

  batchesWritten(records: number, bytes: number, durationMs: number): void {
    this.records.inc(records)
    this.bytes.inc(bytes)
    this.batchDuration.observe(durationMs / 1000)
  }
}

export class RestoreMetrics {
  readonly records: Counter
  readonly bytes: Counter
  readonly erased: Counter
  readonly produceDuration: Histogram
  readonly remaining: Gauge<'topic' | 'partition'>

  constructor(registry: Registry, remaining: () => PartitionLag[]) {
    const registers = [registry]
    this.records = new Counter({
      name: 'kafka_restore_records_total',
      help: 'Records acknowledged by the target cluster',
      registers
    })
    this.bytes = new Counter({
      name: 'kafka_restore_bytes_total',
      help: 'RecordBatch bytes acknowledged by the target cluster',
      registers
    })
    this.erased = new Counter({
      name: 'kafka_restore_erased_records_total',
      help: 'Records left out of the restore because restore.erase names their key',
      registers
    })
    this.produceDuration = new Histogram({
      name: 'kafka_restore_batch_duration_seconds',
      help: 'Round trip of one Produce request (acks=all), from send to acknowledgement',
      buckets: latencyBuckets,
      registers
    })
    this.remaining = new Gauge({
      name: 'kafka_restore_lag_records',
      help: `Planned records not yet restored, per target partition (an upper bound with a time window)`,
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        setLag(this, remaining())
      }
    })
  }
}
