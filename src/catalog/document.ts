/**
 * Reading a JSON document of the catalogue from storage. Nothing read from storage is trusted:
 * the document is parsed, its format and version checked, then its schema (types and bounds)
 * and finally its own consistency rules, so that every later use can rely on it. Any failure
 * is KB_BACKUP_CORRUPT naming the file and the field, never a TypeError deep in an engine.
 */
import type { z } from 'zod'
import { BackupError, isBackupError } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'

export interface DocumentKind<T> {
  /** How messages name it: `manifest`, `partition index`, `restore state`. */
  name: string
  /** The `format` field every document of this kind carries. */
  format: string
  /** The newest `formatVersion` this code reads. */
  formatVersion: number
  schema: z.ZodType<T>
  /** Error context naming what the document is about (e.g. its topic and partition). */
  context?: Record<string, unknown>
  /** Consistency rules beyond the schema; report a violation with `fail` (and the offset it is about). */
  check?: (document: T, fail: (field: string, problem: string, found?: unknown, offset?: string) => never) => void
}

/** `topics[0].partitionCount`, the way a person finds the field in the file. */
function fieldPath(path: readonly PropertyKey[]): string {
  let text = ''
  for (const key of path) {
    text += typeof key === 'number' ? `[${key}]` : `${text === '' ? '' : '.'}${String(key)}`
  }
  return text || '(document)'
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input
  for (const key of path) {
    if (value === null || typeof value !== 'object') {
      return undefined
    }
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

function documentCorrupt(
  kind: { name: string; context?: Record<string, unknown> },
  location: string,
  key: string,
  field: string,
  problem: string,
  found?: unknown,
  offset?: string
): BackupError {
  return new BackupError(
    'KB_BACKUP_CORRUPT',
    `${kind.name} ${location}/${key}: ${field}: ${problem}${found === undefined ? '' : ` (found ${shown(found)})`}`,
    {
      key,
      field,
      ...kind.context,
      ...(found === undefined ? {} : { found }),
      ...(offset === undefined ? {} : { offset })
    }
  )
}

/**
 * zod compiles a parser for an object schema on its first parse (`new Function`): 8–13 ms of CPU
 * for the manifest and partition index schemas, against 3–5 ms to check both without it, before a
 * restore's first Produce. Compiled parsing is ~1.8× faster per document (a 200-segment index),
 * which repays the compiling after a few tens of documents; so each schema checks its first
 * documents without compiling, and later ones (a restore plan of many partitions) compiled
 * (docs/benchmarks.md, "Start-up").
 */
const parsesBeforeCompiling = 16
const parsesBySchema = new WeakMap<object, number>()

function parseOptions(schema: object): { jitless: boolean } {
  const parses = parsesBySchema.get(schema) ?? 0
  parsesBySchema.set(schema, parses + 1)
  return { jitless: parses < parsesBeforeCompiling }
}

/** The checked document at `key`, or undefined when there is none. */
export async function readDocument<T>(storage: Storage, key: string, kind: DocumentKind<T>): Promise<T | undefined> {
  let bytes: Buffer
  try {
    // One request: a HEAD first costs another round trip (or stat) per document.
    bytes = await storage.get(key)
  } catch (error) {
    if (isBackupError(error, 'KB_STORAGE_NOT_FOUND')) {
      return undefined
    }
    throw error
  }
  let input: unknown
  try {
    input = JSON.parse(bytes.toString('utf8'))
  } catch (error) {
    throw new BackupError('KB_BACKUP_CORRUPT', `${kind.name} ${storage.location}/${key} is not valid JSON`, {
      cause: error,
      key
    })
  }
  const header = (input ?? {}) as { format?: unknown; formatVersion?: unknown }
  if (header.format !== kind.format || typeof header.formatVersion !== 'number') {
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `${kind.name} ${storage.location}/${key} is not a ${kind.format} document (no "format": "${kind.format}" with a formatVersion)`,
      { key }
    )
  }
  if (header.formatVersion > kind.formatVersion) {
    throw new BackupError(
      'KB_BACKUP_CORRUPT',
      `${kind.name} ${storage.location}/${key} has format version ${header.formatVersion}; this kafka-backup reads up to ${kind.formatVersion}`,
      { key, expected: kind.formatVersion, found: header.formatVersion }
    )
  }
  const parsed = kind.schema.safeParse(input, parseOptions(kind.schema))
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw documentCorrupt(kind, storage.location, key, fieldPath(issue.path), issue.message, valueAt(input, issue.path))
  }
  kind.check?.(parsed.data, (field, problem, found, offset) => {
    throw documentCorrupt(kind, storage.location, key, field, problem, found, offset)
  })
  return parsed.data
}
