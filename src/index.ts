/** The library API of kafka-backup. */
export { BackupError, type ErrorCode, errorCodes, isBackupError } from './errors.ts'
export { type ClusterOptions, KafkaCluster } from './kafka/cluster.ts'
export {
  type AbortedTransaction,
  IsolationLevel,
  type RawFetchPartition,
  type RawFetchRequest,
  type RawFetchResponse,
  rawFetch
} from './kafka/raw-fetch.ts'
