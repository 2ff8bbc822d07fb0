/**
 * From a validated config to complete engine options: the one place where the operators'
 * snake_case keys meet the engines' typed options. Callers add the signal and hooks.
 */
import type { BackupOptions } from './backup/engine.ts'
import { parseDuration } from './catalog/prune.ts'
import type { BackupConfig, RestoreConfig } from './config/schema.ts'
import type { KeyProvider } from './crypto/keys.ts'
import type { KafkaCluster } from './kafka/cluster.ts'
import type { RestoreOptions } from './restore/engine.ts'
import type { Storage } from './storage/storage.ts'
import { MiB } from './units.ts'

export interface EngineIo {
  storage: Storage
  cluster: KafkaCluster
  /** Restore only: where restore state is kept when `restore.state_storage` is set. */
  stateStorage?: Storage
  /** The keyring of the config's `encryption` block (crypto/keys.ts loadKeyring). */
  keys?: KeyProvider
}

export function backupOptionsFromConfig(config: BackupConfig, { storage, cluster, keys }: EngineIo): BackupOptions {
  const backup = config.backup
  const kafka = config.source.kafka_config
  return {
    backupId: config.backup_id,
    storage,
    cluster,
    bootstrapServers: config.source.bootstrap_servers,
    topics: config.source.topics,
    includeInternalTopics: backup.include_internal_topics,
    compression: backup.compression,
    compressionLevel: backup.compression_level,
    frameMaxBytes: backup.frame_max_bytes,
    storeRecords: backup.store_records,
    ...(keys && { keys }),
    segmentMaxBytes: backup.segment_max_bytes,
    segmentMaxIntervalMs: backup.segment_max_interval_ms,
    checkpointIntervalMs: backup.checkpoint_interval_secs * 1000,
    continuous: backup.continuous,
    startOffset: backup.start_offset,
    maxBytesInFlight: backup.max_bytes_in_flight,
    maxConcurrentPartitions: backup.max_concurrent_partitions,
    maxPartitionBufferedBytes: backup.max_batch_bytes,
    clusterMetadata: backup.metadata,
    rateLimitBytesPerSec: backup.rate_limit_bytes_per_sec || undefined,
    ...(backup.retention && {
      retention: { keepWithinMs: parseDuration(backup.retention.keep_within, 'backup.retention.keep_within') }
    }),
    fetch: {
      maxWaitMs: kafka['fetch.max.wait.ms'],
      minBytes: kafka['fetch.min.bytes'],
      maxBytes: kafka['fetch.max.bytes'],
      partitionMaxBytes: kafka['max.partition.fetch.bytes']
    }
  }
}

/** Produce requests stay well under the broker's socket.request.max.bytes (100 MiB). */
const MAX_PRODUCE_REQUEST_BYTES = 16 * MiB

export function restoreOptionsFromConfig(
  config: RestoreConfig,
  { storage, cluster, stateStorage, keys }: EngineIo
): RestoreOptions {
  const restore = config.restore
  return {
    backupId: config.backup_id,
    storage,
    ...(keys && { keys }),
    stateStorage,
    cluster,
    bootstrapServers: config.target.bootstrap_servers,
    topics: restore.topics,
    sourcePartitions: restore.source_partitions ?? {},
    topicMapping: restore.topic_mapping,
    partitionMapping: restore.partition_mapping,
    window: {
      start: restore.time_window_start === undefined ? undefined : BigInt(restore.time_window_start),
      end: restore.time_window_end === undefined ? undefined : BigInt(restore.time_window_end)
    },
    createTopics: restore.create_topics,
    // -1 lets the target broker apply its default.replication.factor.
    defaultReplicationFactor: restore.default_replication_factor ?? -1,
    dryRun: restore.dry_run,
    maxConcurrentPartitions: restore.max_concurrent_partitions,
    rateLimitBytesPerSec: restore.rate_limit_bytes_per_sec || undefined,
    resetConsumerOffsets: restore.reset_consumer_offsets,
    consumerGroups: restore.consumer_groups,
    allowNonEmptyTarget: restore.allow_non_empty_target,
    allowLogAppendTimeTarget: restore.allow_log_append_time_target,
    maxInFlightPerPartition: restore.produce_max_in_flight,
    coalesceMaxBytes: config.target.kafka_config['batch.size'],
    maxRequestBytes: MAX_PRODUCE_REQUEST_BYTES,
    checkpointIntervalMs: restore.checkpoint_interval_secs * 1000,
    erase: restore.erase && {
      keysFile: restore.erase.keys_file,
      keys: restore.erase.keys,
      patterns: restore.erase.patterns
    },
    repartition: restore.repartition.enabled,
    targetPartitions: restore.repartition.partitions,
    clusterMetadata: restore.metadata,
    scramUsersFile: restore.scram_users_file
  }
}
