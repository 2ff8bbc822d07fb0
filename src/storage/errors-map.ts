import { Readable } from 'node:stream'
/**
 * The error messages the object-store backends (S3, Azure Blob, GCS) share, so that a missing
 * bucket, refused credentials or a failed request read the same whichever cloud it is: what
 * failed, where, and which setting to check. Secrets never appear: a message names the
 * setting that holds a credential, not its value.
 */
import { BackupError, isBackupError } from '../errors.ts'
import { alreadyExists, notFound } from './keys.ts'

export type ObjectOperation =
  | 'put'
  | 'create'
  | 'replace'
  | 'get'
  | 'getRange'
  | 'stream'
  | 'head'
  | 'list'
  | 'delete'
  | 'open'
  | 'abortUploads'

/** The facts about a backend that its messages name. */
export interface ObjectStoreNames {
  /** `s3://bucket/prefix`, as Storage.location. */
  location: string
  /** What the top-level namespace is called: `bucket` or `container`. */
  containerKind: 'bucket' | 'container'
  /** The bucket or container name. */
  containerName: string
  /** The config key that names it, e.g. `storage.bucket`. */
  containerSetting: string
  /** What to check when the store refuses the credentials, e.g. `storage.access_key and storage.secret_key`. */
  credentialHint: string
}

/** What a backend found out about a failed request. */
export type FailureKind = 'key-exists' | 'key-not-found' | 'container-not-found' | 'access-denied' | 'other'

/** `Name: first line of the message`; servers append request ids and times on later lines. */
export function reasonOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    const name = error.name !== 'Error' ? error.name : typeof code === 'string' ? code : ''
    const firstLine = error.message.split('\n', 1)[0]!.trim()
    const message = firstLine === '' || firstLine === name ? '' : firstLine
    return name !== '' && message !== '' ? `${name}: ${message}` : name || message || 'unknown error'
  }
  return String(error)
}

/** Maps a failed request to our codes; a BackupError passes through unchanged. */
export function objectStoreFailure(
  names: ObjectStoreNames,
  kind: FailureKind,
  error: unknown,
  key: string,
  operation: ObjectOperation
): BackupError {
  if (isBackupError(error)) {
    return error
  }
  const { location, containerKind, containerName, containerSetting, credentialHint } = names
  const context = { location, key, operation, cause: error }
  const reason = reasonOf(error)
  // list() passes its prefix as the key.
  const target = operation === 'list' ? `objects under ${JSON.stringify(key)}` : key
  switch (kind) {
    case 'key-not-found':
      return notFound(key, location, operation)
    case 'key-exists':
      return alreadyExists(key, location, error)
    case 'container-not-found':
      return new BackupError(
        'KB_STORAGE_NOT_FOUND',
        `the ${containerKind} ${containerName} does not exist (${operation} of ${target} at ${location}); ` +
          `create it or check ${containerSetting} and the endpoint`,
        { ...context, [containerKind]: containerName }
      )
    case 'access-denied':
      return new BackupError(
        'KB_STORAGE_ACCESS_DENIED',
        `access denied to ${operation} ${target} at ${location} (${reason}); check ${credentialHint}, ` +
          `and that they grant access to the ${containerKind} ${containerName}`,
        context
      )
    default:
      return new BackupError('KB_STORAGE', `${operation} of ${target} at ${location} failed: ${reason}`, context)
  }
}

/**
 * The chunks of a put's source, noting whether the source itself failed: an error that its
 * read raised is the source's (the segment writer crashed), while an error thrown in from
 * downstream (an upload that failed tears the pipeline down) is not, and must not be reported
 * as one.
 */
function trackSource(body: AsyncIterable<unknown>): {
  chunks: AsyncGenerator<Buffer, void, undefined>
  sourceError: () => unknown
} {
  let failure: unknown
  const chunks = (async function* () {
    const iterator = body[Symbol.asyncIterator]()
    try {
      for (;;) {
        let next: IteratorResult<unknown>
        try {
          next = await iterator.next()
        } catch (error) {
          failure = error
          throw error
        }
        if (next.done) {
          return
        }
        const chunk = next.value
        yield typeof chunk === 'string'
          ? Buffer.from(chunk)
          : Buffer.isBuffer(chunk)
            ? chunk
            : Buffer.from(chunk as Uint8Array)
      }
    } finally {
      await iterator.return?.()
    }
  })()
  return { chunks, sourceError: () => failure }
}

/**
 * The first step of a streamed put: reads `body` up to `limit` bytes. `whole` when it ended
 * there (one small PUT), otherwise `rest`, a stream of all of it that the uploader reads part by
 * part, with `sourceError` telling a failure of the source from one of the upload. A read that
 * fails destroys the source and throws `failure(error, sourceError)`.
 */
export async function readHead(
  body: Readable,
  limit: number,
  failure: (error: unknown, sourceError: unknown) => BackupError
): Promise<{ whole: Buffer; rest?: undefined } | { whole?: undefined; rest: Readable; sourceError: () => unknown }> {
  const { chunks, sourceError } = trackSource(body)
  const head: Buffer[] = []
  let headBytes = 0
  try {
    while (headBytes < limit || headBytes === 0) {
      const next = await chunks.next()
      if (next.done) {
        return { whole: head.length === 1 ? head[0]! : Buffer.concat(head, headBytes) }
      }
      head.push(next.value)
      headBytes += next.value.length
    }
  } catch (error) {
    const mapped = failure(error, sourceError())
    if (!body.destroyed) {
      body.destroy()
    }
    throw mapped
  }
  // One chunk of read-ahead: the uploader's part buffers are the memory bound, not this.
  const rest = Readable.from(
    (async function* () {
      yield* head.splice(0)
      yield* chunks
    })(),
    { highWaterMark: 1 }
  )
  return { rest, sourceError }
}
