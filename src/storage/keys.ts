/**
 * Rules every backend applies to keys, prefixes and ranges, so that a backup written to one
 * backend can be copied to any other: a key that S3 would accept but a filesystem could not
 * hold (or that would escape the root) is refused everywhere, with the same message.
 */
import { BackupError } from '../errors.ts'

/**
 * Temp files a backend writes beside the final object: `.<name>.<16 hex>.tmp`. Names of that
 * shape are reserved, so list() can hide leftovers of a crash without hiding a real object.
 */
const tempName = /^\..+\.[0-9a-f]{16}\.tmp$/

export function isTempName(name: string): boolean {
  return tempName.test(name)
}

export function tempNameFor(name: string, random: string): string {
  return `.${name}.${random}.tmp`
}

/** The name of the object a temp file was written for: `.<name>.<16 hex>.tmp` -> `<name>`. */
export function tempTargetName(tempName: string): string {
  return tempName.slice(1, -'.0123456789abcdef.tmp'.length)
}

const keyExample = 'topics/orders/0/00000000000000000000.seg'

function invalidKey(what: string, value: string, location: string, operation: string, reason: string): BackupError {
  return new BackupError(
    'KB_STORAGE',
    `invalid storage ${what} ${JSON.stringify(value)} for ${operation} at ${location}: ${reason}; ` +
      `keys are relative '/'-separated paths such as ${keyExample}`,
    { location, key: value, operation }
  )
}

function segmentProblem(segment: string): string | undefined {
  if (segment === '') {
    return 'it has an empty path segment (a leading, trailing or doubled /)'
  }
  if (segment === '.' || segment === '..') {
    return `it has a "${segment}" segment`
  }
  if (isTempName(segment)) {
    return `"${segment}" has the shape of a temp file name (.<name>.<16 hex>.tmp), which is reserved`
  }
  return undefined
}

function characterProblem(value: string): string | undefined {
  if (value.includes('\\')) {
    return 'it contains a backslash'
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    return 'it contains a control character'
  }
  return undefined
}

/** Throws KB_STORAGE unless `key` is a non-empty relative '/'-separated path. */
export function checkKey(key: string, location: string, operation: string): void {
  if (typeof key !== 'string' || key === '') {
    throw invalidKey('key', String(key), location, operation, 'it is empty')
  }
  if (key.startsWith('/')) {
    throw invalidKey('key', key, location, operation, 'it is an absolute path')
  }
  const problem =
    characterProblem(key) ??
    key
      .split('/')
      .map(segmentProblem)
      .find(p => p !== undefined)
  if (problem !== undefined) {
    throw invalidKey('key', key, location, operation, problem)
  }
}

/**
 * Throws KB_STORAGE unless `prefix` is '' or the start of a valid key: its complete segments
 * (before the last '/') follow the key rules; the last, partial segment may be anything.
 */
export function checkPrefix(prefix: string, location: string, operation: string): void {
  if (typeof prefix !== 'string') {
    throw invalidKey('prefix', String(prefix), location, operation, 'it is not a string')
  }
  if (prefix.startsWith('/')) {
    throw invalidKey('prefix', prefix, location, operation, 'it is an absolute path')
  }
  const segments = prefix.split('/').slice(0, -1)
  const problem = characterProblem(prefix) ?? segments.map(segmentProblem).find(p => p !== undefined)
  if (problem !== undefined) {
    throw invalidKey('prefix', prefix, location, operation, problem)
  }
}

export function checkRange(key: string, offset: number, length: number, location: string, operation: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new BackupError(
      'KB_STORAGE',
      `invalid range for ${operation} of ${key} at ${location}: offset ${offset} and length ${length} must be non-negative integers`,
      { location, key, operation, offset, length }
    )
  }
}

/** The error for a range that does not lie wholly inside the object. */
export function rangePastEnd(
  key: string,
  offset: number,
  length: number,
  size: number,
  location: string,
  operation: string
): BackupError {
  return new BackupError(
    'KB_STORAGE',
    `range [${offset}, ${offset + length}) of ${key} at ${location} is past the end of the object (${size} bytes)`,
    { location, key, operation, offset, length, size }
  )
}

export function notFound(key: string, location: string, operation: string): BackupError {
  return new BackupError('KB_STORAGE_NOT_FOUND', `no object ${key} at ${location}`, { location, key, operation })
}

/** The error for a create whose key is taken. */
export function alreadyExists(key: string, location: string, cause?: unknown): BackupError {
  return new BackupError(
    'KB_STORAGE_EXISTS',
    `create of ${key} at ${location} refused: an object with that key exists (another writer got there first); it was not overwritten`,
    { location, key, operation: 'create', ...(cause === undefined ? {} : { cause }) }
  )
}

/** The error for a put whose source stream failed (not the storage): nothing was stored. */
export function sourceFailed(key: string, location: string, operation: string, cause: unknown): BackupError {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new BackupError(
    'KB_STORAGE',
    `${operation} of ${key} at ${location} failed because its source stream failed (${reason}); nothing was stored`,
    { location, key, operation, cause }
  )
}

/**
 * getRange of length 0 on an object store: HTTP cannot express an empty range, yet the object
 * must exist and reach `offset`, as for any other range.
 */
export async function emptyRange(
  storage: { head(key: string): Promise<{ size: number } | undefined>; location: string },
  key: string,
  offset: number
): Promise<Buffer> {
  const info = await storage.head(key)
  if (info === undefined) {
    throw notFound(key, storage.location, 'getRange')
  }
  if (offset > info.size) {
    throw rangePastEnd(key, offset, 0, info.size, storage.location, 'getRange')
  }
  return Buffer.alloc(0)
}

/**
 * A range read refused with HTTP 416 (it starts at or past the end; no size is given): the
 * error is KB_STORAGE_NOT_FOUND when the object is missing, else the range-past-end error.
 */
export async function unsatisfiableRange(
  storage: { head(key: string): Promise<{ size: number } | undefined>; location: string },
  key: string,
  offset: number,
  length: number
): Promise<BackupError> {
  const size = (await storage.head(key))?.size
  return size === undefined
    ? notFound(key, storage.location, 'getRange')
    : rangePastEnd(key, offset, length, size, storage.location, 'getRange')
}
