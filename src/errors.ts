/**
 * Every error a user or the data can cause carries a stable `KB_` code and the context that
 * names what was involved (path, topic, partition, offset, expected, found), enumerable so that
 * logs and `--json` output show it.
 */
export const errorCodes = [
  'KB_CONFIG_INVALID',
  'KB_KAFKA',
  'KB_KAFKA_UNREACHABLE',
  'KB_BATCH_CORRUPT',
  'KB_SEGMENT_CORRUPT',
  'KB_STORAGE',
  'KB_STORAGE_NOT_FOUND',
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
