/**
 * The library API of kafka-backup: the engines, the storage backends, the config loader and
 * the byte-level building blocks, for programs that embed backups instead of running the CLI.
 *
 *   const config = await loadConfig('backup.yaml')
 *   if (config.mode !== 'backup') throw new Error('not a backup config')
 *   const io = { storage: await openStorage(config.storage), cluster: connectCluster(config.source) }
 *   const summary = await new BackupEngine(backupOptionsFromConfig(config, io)).run()
 */
export { BackupEngine, type BackupOptions, type BackupSummary, type PartitionProgress } from './backup/engine.ts'
export { type BackupProgressSummary, summarizeProgress } from './backup/progress.ts'
export { crc32c } from './batch/crc.ts'
export { Attribute, Codec, RecordBatchView } from './batch/header.ts'
export { murmur2, partitionForKey } from './batch/partitioner.ts'
export { decodeRecords, encodeBatch, type KafkaRecord, type RecordInput } from './batch/records.ts'
export { coalesce, prepareForRestore, rewriteForRestore } from './batch/rewrite.ts'
export { RecordSetReader, splitRecordSet } from './batch/split.ts'
export { readCommittedBatches, TransactionFilter } from './batch/transactions.ts'
export {
  type BackupDescription,
  type BackupListing,
  describeBackup,
  listBackups,
  type ValidationProblem,
  type ValidationReport,
  validateBackup
} from './catalog/inspect.ts'
export {
  type Manifest,
  type PartitionIndex,
  readManifest,
  readPartitionIndex,
  type SegmentEntry
} from './catalog/manifest.ts'
export { type ConfigOverrides, loadConfig, parseConfig, redactConfig } from './config/load.ts'
export type { BackupConfig, Config, RestoreConfig, StorageConfig } from './config/schema.ts'
export { type KeyProvider, type KeyringSource, loadKeyring, parseKeyring } from './crypto/keys.ts'
export { BackupError, type ErrorCode, errorCodes, isBackupError } from './errors.ts'
export { type ClusterOptions, KafkaCluster } from './kafka/cluster.ts'
export { connectCluster } from './kafka/connect.ts'
export { IsolationLevel, type RawFetchRequest, type RawFetchResponse, rawFetch } from './kafka/raw-fetch.ts'
export { initProducerId, type RawProduceRequest, type RawProduceResponse, rawProduce } from './kafka/raw-produce.ts'
export {
  type ApplyResult,
  applyGroupOffsets,
  findCompletedRestore,
  type OffsetPlan,
  type OffsetPlanRow,
  type OffsetSnapshot,
  type PlanOffsetsOptions,
  planGroupOffsets,
  readOffsetSnapshot,
  rollbackGroupOffsets
} from './offsets/after-restore.ts'
export { backupOptionsFromConfig, type EngineIo, restoreOptionsFromConfig } from './options.ts'
export { RestoreEngine, type RestoreOptions, type RestoreSummary } from './restore/engine.ts'
export type { EraseSpec } from './restore/erase.ts'
export { OffsetMap, type OffsetRun } from './restore/offset-map.ts'
export { listRestoreStates, type RestoreState, readRestoreState } from './restore/state.ts'
export { readSegmentBatches, readSegmentIndex, validateSegment } from './segment/reader.ts'
export { type SegmentSummary, SegmentWriter } from './segment/writer.ts'
export { FilesystemStorage } from './storage/filesystem.ts'
export { MemoryStorage } from './storage/memory.ts'
export { openStorage } from './storage/open.ts'
export type { ObjectInfo, Storage } from './storage/storage.ts'
