/**
 * Every error a user or the data can cause carries a stable `KB_` code and the context that
 * names what was involved (path, topic, partition, offset, expected, found), enumerable so that
 * logs and `--json` output show it.
 */
export const errorCodes = [
  /** The config file is missing or unreadable. */
  'KB_CONFIG_NOT_FOUND',
  /** The config file is not valid YAML. */
  'KB_CONFIG_PARSE',
  /** A config key has a wrong type or value, is missing, or is unknown. */
  'KB_CONFIG_INVALID',
  /** A `${VAR}` in the config names an unset environment variable. */
  'KB_CONFIG_ENV',
  'KB_KAFKA',
  /** No broker answered (refused, timed out) for longer than the cluster's `unreachable_timeout_secs`. */
  'KB_KAFKA_UNREACHABLE',
  /** A broker refused the SASL credentials or mechanism. */
  'KB_KAFKA_AUTHENTICATION',
  /** The TLS handshake with a broker failed (untrusted CA, host name, client certificate, no TLS). */
  'KB_KAFKA_TLS',
  /** The authenticated principal lacks an ACL for an operation on a resource. */
  'KB_KAFKA_AUTHORIZATION',
  'KB_TOPIC_NOT_FOUND',
  /** A backed-up topic was deleted and recreated under the same name (a new topic id). */
  'KB_TOPIC_RECREATED',
  /** A source partition's log ends below the backup's checkpoint: offsets went backwards. */
  'KB_SOURCE_TRUNCATED',
  /**
   * A source partition's log no longer holds the leader epoch of the backup's last batch through
   * its offset: truncated and written again since (an unclean leader election).
   */
  'KB_SOURCE_DIVERGED',
  /** A RecordBatch is malformed or fails its CRC. */
  'KB_BATCH_CORRUPT',
  /** A segment's magic, version, trailer, footer or a frame checksum is wrong. */
  'KB_SEGMENT_CORRUPT',
  'KB_UNSUPPORTED_CODEC',
  /** The keyring file or variable is unreadable or malformed (names the file or variable, the line and the field). */
  'KB_KEYRING_INVALID',
  /** An encrypted segment names a key id that no keyring given holds (or no keyring was given). */
  'KB_KEY_NOT_FOUND',
  /**
   * An authentication tag fails: the key under that id is not the one that encrypted the segment,
   * or a frame, its index row or the header was changed.
   */
  'KB_DECRYPT_FAILED',
  'KB_STORAGE',
  'KB_STORAGE_NOT_FOUND',
  'KB_STORAGE_ACCESS_DENIED',
  /**
   * A create-only write found its key taken: another writer (a second process on the same
   * backup, or a stale owner) got there first. Nothing was overwritten.
   */
  'KB_STORAGE_EXISTS',
  'KB_BACKUP_NOT_FOUND',
  /** A manifest or index of a backup is unreadable or inconsistent. */
  'KB_BACKUP_CORRUPT',
  /**
   * Another process is writing the backup: a prune refuses while a backup run is in progress,
   * and a backup run refuses while a prune holds the backup's lock.
   */
  'KB_BACKUP_BUSY',
  /**
   * With workers (backup.workers): another worker claimed a partition this one was writing (it
   * lost the partition in the group, e.g. after a pause past its session timeout). Its write was
   * refused; the worker drops the partition and rejoins the group.
   */
  'KB_PARTITION_FENCED',
  /** A stopped restore cannot continue: the backup was pruned past the offset it stopped at. */
  'KB_BACKUP_PRUNED',
  /** A backup or restore differs from the cluster it was compared with (verification report). */
  'KB_VERIFY_MISMATCH',
  /** A verification report's signature or contents do not check out. */
  'KB_REPORT_INVALID',
  /** A restore target partition already holds records. */
  'KB_TARGET_NOT_EMPTY',
  /**
   * A restore target no longer holds what the restore state says this restore wrote there, or
   * holds records the restore cannot account for.
   */
  'KB_TARGET_CHANGED',
  /** A consumer group to reset has active members on the target. */
  'KB_GROUP_ACTIVE',
  'KB_INTERNAL'
] as const

export type ErrorCode = (typeof errorCodes)[number]

export interface ErrorContext {
  cause?: unknown
  [field: string]: unknown
}

export class BackupError extends Error {
  readonly code: ErrorCode;
  [field: string]: unknown

  constructor(code: ErrorCode, message: string, { cause, ...context }: ErrorContext = {}) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'BackupError'
    this.code = code
    Object.assign(this, context)
  }
}

export function isBackupError(error: unknown, code?: ErrorCode): error is BackupError {
  return error instanceof BackupError && (code === undefined || error.code === code)
}
