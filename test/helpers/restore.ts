/** Helpers to run the restore engine in tests. */
import type { KafkaCluster } from '../../src/kafka/cluster.ts'
import { RestoreEngine, type RestoreOptions } from '../../src/restore/engine.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { bootstrapServers } from './kafka.ts'

export function restoreOptions(
  cluster: KafkaCluster,
  storage: Storage,
  overrides: Partial<RestoreOptions> = {}
): RestoreOptions {
  return {
    backupId: 'test-backup',
    storage,
    cluster,
    bootstrapServers: [bootstrapServers()],
    topics: { include: ['*'], exclude: [] },
    sourcePartitions: {},
    topicMapping: {},
    partitionMapping: {},
    window: {},
    createTopics: true,
    defaultReplicationFactor: 1,
    dryRun: false,
    maxConcurrentPartitions: 8,
    resetConsumerOffsets: false,
    consumerGroups: ['*'],
    allowNonEmptyTarget: false,
    allowLogAppendTimeTarget: false,
    maxInFlightPerPartition: 5,
    coalesceMaxBytes: 512 * 1024,
    maxRequestBytes: 8 * 1024 * 1024,
    checkpointIntervalMs: 1000,
    ...overrides
  }
}

export function runRestore(options: RestoreOptions) {
  return new RestoreEngine(options).run()
}

/** Runs a restore and aborts it as its `requests`-th Produce request goes out: a restore stopped midway. */
export function runRestoreStoppedAt(options: RestoreOptions, requests: number) {
  const controller = new AbortController()
  let sent = 0
  return runRestore({
    ...options,
    signal: controller.signal,
    onRequest: () => {
      if (++sent === requests) {
        controller.abort()
      }
    }
  })
}
