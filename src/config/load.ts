/**
 * Reads a YAML config file, substitutes `${VAR}`, applies CLI overrides, validates it against
 * the schema and returns the complete, typed config. Every failure is a BackupError with a code
 * (KB_CONFIG_NOT_FOUND, KB_CONFIG_PARSE, KB_CONFIG_INVALID, KB_CONFIG_ENV) and a one-line
 * message that names the file, the line and the key path. Secret values are never shown.
 */
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml'
import { BackupError } from '../errors.ts'
import { compressionLevels } from '../segment/levels.ts'
import { backendName, backendOf, backendOfScheme, locationSchemes, orList } from '../storage/backends.ts'
import { type Env, substituteEnv } from './env.ts'
import { configInvalidError } from './issues.ts'
import { translateOsoKeys } from './oso.ts'
import { type Config, configSchema, isSecretKey } from './schema.ts'
import { formatPath, schemaAt, typesOf, valueAt } from './schema-paths.ts'

export type { Env } from './env.ts'

/** Values given on the command line; they replace the file's values before validation. */
export interface ConfigOverrides {
  /** `--backup-id`: sets `backup_id`. */
  backup_id?: string
  /** `--bootstrap-servers`: sets `source.bootstrap_servers` (backup) or `target.bootstrap_servers` (restore). */
  bootstrap_servers?: string | string[]
  /** `--topics`: sets `source.topics.include` (backup) or `restore.topics.include` (restore). */
  topics?: string | string[]
  /**
   * `--path`: where backups live. A folder sets `storage: { backend: filesystem, path }` (relative
   * to the working directory); `s3://bucket/prefix`, `az://container/prefix` and
   * `gs://bucket/prefix` set the backend, bucket or container and prefix, keeping the file's other
   * storage keys (credentials, region, endpoint) when the backend is the same.
   */
  path?: string
  /** `--time-start`: sets `restore.time_window_start` (epoch ms or ISO-8601). */
  time_window_start?: number | string
  /** `--time-end`: sets `restore.time_window_end` (epoch ms or ISO-8601). */
  time_window_end?: number | string
  /** `--dry-run`: sets `restore.dry_run`. */
  dry_run?: boolean
}

const overrideFlags: Record<keyof ConfigOverrides, string> = {
  backup_id: '--backup-id',
  bootstrap_servers: '--bootstrap-servers',
  topics: '--topics',
  path: '--path',
  time_window_start: '--time-start',
  time_window_end: '--time-end',
  dry_run: '--dry-run'
}

export interface ConfigWarning {
  /** Key path the warning is about, e.g. `backup.batch_size`. */
  path: string
  message: string
}

export interface ParseOptions {
  /** Receives keys that are accepted but have no effect. */
  onWarning?: (warning: ConfigWarning) => void
  /** Base of relative `--path` values. Default: process.cwd(). */
  cwd?: string
}

export interface LoadOptions extends ParseOptions {
  /** Variables for `${VAR}`. Default: process.env. */
  env?: Env
}

/** Reads, substitutes, overrides and validates the config file `file`. */
export async function loadConfig(
  file: string,
  overrides: ConfigOverrides = {},
  options: LoadOptions = {}
): Promise<Config> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw unreadable(file, error)
  }
  return parseConfig(text, file, options.env ?? process.env, overrides, options)
}

function unreadable(file: string, error: unknown): BackupError {
  const code = (error as NodeJS.ErrnoException).code
  const reason =
    code === 'ENOENT'
      ? 'does not exist'
      : code === 'EACCES' || code === 'EPERM'
        ? 'cannot be read: permission denied'
        : code === 'EISDIR'
          ? 'is a folder, not a file'
          : `cannot be read (${code ?? String(error)})`
  return new BackupError('KB_CONFIG_NOT_FOUND', `config file ${file} ${reason}`, { file, cause: error })
}

/**
 * Parses config text. `fileName` names the file in messages and is the base of relative paths
 * in the file (`storage.path`, `ssl_*_location`, a `service_account_json` file).
 */
export function parseConfig(
  text: string,
  fileName: string,
  env: Env = process.env,
  overrides: ConfigOverrides = {},
  options: ParseOptions = {}
): Config {
  const cwd = options.cwd ?? process.cwd()
  const source = parseYaml(text, fileName)
  const substituted: PropertyKey[][] = []
  let input = substituteTree(source.value, [], env, fileName, source.lineOf, substituted)
  for (const path of substituted) input = typeSubstitutedValue(input, path)
  // Before overrides, so that a flag still wins over a key written in OSO's layout.
  const osoWarnings = isRecord(input) ? translateOsoKeys(input, fileName, source.lineOf) : []
  const flags = new Map<string, string>()
  if (isRecord(input)) applyOverrides(input, overrides, cwd, flags, fileName)

  if (input === null || input === undefined) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${fileName}: the config file is empty; expected a mapping with mode, backup_id, storage and source or target`,
      { file: fileName, path: '(top level)', expected: 'a mapping', found: 'nothing' }
    )
  }
  const result = configSchema.safeParse(input, { reportInput: true, jitless: true })
  if (!result.success) {
    throw configInvalidError(result.error.issues, { file: fileName, input, lineOf: source.lineOf, flags })
  }
  const config = result.data
  normalisePaths(config, dirname(resolve(cwd, fileName)))
  if (options.onWarning !== undefined) {
    for (const warning of [...osoWarnings, ...warningsFor(config, input)]) options.onWarning(warning)
  }
  return config
}

// ---- YAML ------------------------------------------------------------------------------------

interface ParsedYaml {
  value: unknown
  lineOf(path: readonly PropertyKey[]): number | undefined
}

function parseYaml(text: string, file: string): ParsedYaml {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true })
  const error = doc.errors[0]
  if (error !== undefined) {
    const { line, col } = lineCounter.linePos(error.pos[0])
    // Only the first line of the parser's message: it names the problem, never the file's text.
    const reason = (error.message.split('\n')[0] ?? error.code).replace(/ at line \d+, column \d+:?$/, '')
    throw new BackupError('KB_CONFIG_PARSE', `${file}:${line}:${col}: not valid YAML: ${reason}`, {
      file,
      line,
      column: col,
      yamlCode: error.code
    })
  }
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (cause) {
    throw new BackupError('KB_CONFIG_PARSE', `${file}: not valid YAML: ${(cause as Error).message}`, { file, cause })
  }
  const lineOfNode = (node: Node | null | undefined): number | undefined =>
    node?.range === undefined || node.range === null ? undefined : lineCounter.linePos(node.range[0]).line
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    for (let depth = path.length; depth > 0; depth--) {
      const parent = doc.getIn(path.slice(0, depth - 1), true)
      const key = path[depth - 1]
      if (isMap(parent)) {
        const pair = parent.items.find(item => isScalar(item.key) && String(item.key.value) === String(key))
        if (pair !== undefined) return lineOfNode(pair.key as Node)
      } else if (isSeq(parent) && typeof key === 'number') {
        const line = lineOfNode(parent.items[key] as Node | undefined)
        if (line !== undefined) return line
      }
    }
    return undefined
  }
  return { value, lineOf }
}

// ---- ${VAR} ----------------------------------------------------------------------------------

function substituteTree(
  value: unknown,
  path: PropertyKey[],
  env: Env,
  file: string,
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
  substituted: PropertyKey[][]
): unknown {
  if (typeof value === 'string') {
    const result = substituteEnv(value, env)
    if (result.ok) {
      if (result.substituted) substituted.push(path)
      return result.value
    }
    const where = formatPath(path)
    const line = lineOf(path)
    const location = line === undefined ? `${file}: ` : `${file}:${line}: `
    if (result.problem === 'unset') {
      throw new BackupError(
        'KB_CONFIG_ENV',
        `${location}${where}: environment variable ${result.variable} is not set (set it, or write \${${result.variable}:-default})`,
        { file, path: where, variable: result.variable, ...(line === undefined ? {} : { line }) }
      )
    }
    throw new BackupError(
      'KB_CONFIG_ENV',
      `${location}${where}: malformed variable reference: write \${NAME} or \${NAME:-default}, or $\${ for a literal \${`,
      { file, path: where, ...(line === undefined ? {} : { line }) }
    )
  }
  if (Array.isArray(value)) {
    return value.map((item, index) => substituteTree(item, [...path, index], env, file, lineOf, substituted))
  }
  if (isRecord(value)) {
    const copy: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) {
      define(copy, key, substituteTree(item, [...path, key], env, file, lineOf, substituted))
    }
    return copy
  }
  return value
}

/**
 * A substituted value is text; where the schema wants a number or a boolean (`port: ${PORT}`),
 * the text is read as one. Keys that take text (a password of digits) keep it as text.
 */
function typeSubstitutedValue(input: unknown, path: PropertyKey[]): unknown {
  const value = valueAt(input, path)
  const node = typeof value === 'string' ? schemaAt(path, input) : undefined
  if (node === undefined || typeof value !== 'string') return input
  const types = typesOf(node)
  const text = value.trim()
  let typed: unknown = value
  if ((types.has('integer') || types.has('number')) && /^-?\d+(\.\d+)?$/.test(text)) typed = Number(text)
  else if (types.has('boolean') && (text === 'true' || text === 'false')) typed = text === 'true'
  if (typed === value) return input
  if (path.length === 0) return typed
  const parent = valueAt(input, path.slice(0, -1)) as Record<PropertyKey, unknown>
  parent[path[path.length - 1] as PropertyKey] = typed
  return input
}

// ---- CLI overrides ---------------------------------------------------------------------------

function applyOverrides(
  input: Record<string, unknown>,
  overrides: ConfigOverrides,
  cwd: string,
  flags: Map<string, string>,
  file: string
): void {
  const restore = input['mode'] === 'restore'
  const set = (path: string[], value: unknown, flag: keyof ConfigOverrides): void => {
    let parent = input
    for (const key of path.slice(0, -1)) {
      const child = parent[key]
      if (child === undefined || child === null) {
        const created: Record<string, unknown> = {}
        define(parent, key, created)
        parent = created
      } else if (isRecord(child)) {
        parent = child
      } else {
        return // the section itself has the wrong type; validation reports it
      }
    }
    define(parent, path[path.length - 1] as string, value)
    flags.set(formatPath(path), overrideFlags[flag])
  }
  if (overrides.backup_id !== undefined) set(['backup_id'], overrides.backup_id, 'backup_id')
  if (overrides.bootstrap_servers !== undefined) {
    set([restore ? 'target' : 'source', 'bootstrap_servers'], overrides.bootstrap_servers, 'bootstrap_servers')
  }
  if (overrides.topics !== undefined) {
    set(restore ? ['restore', 'topics', 'include'] : ['source', 'topics', 'include'], overrides.topics, 'topics')
  }
  for (const key of ['time_window_start', 'time_window_end'] as const) {
    const value = overrides[key]
    if (value !== undefined)
      set(['restore', key], typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value, key)
  }
  if (overrides.dry_run !== undefined) set(['restore', 'dry_run'], overrides.dry_run, 'dry_run')
  if (overrides.path !== undefined) {
    const location = storageFromLocation(overrides.path, cwd, file)
    const current = input['storage']
    const storage =
      isRecord(current) && current['backend'] === location['backend'] && location['backend'] !== 'filesystem'
        ? { ...current, ...location }
        : location
    define(input, 'storage', storage)
    for (const key of Object.keys(location)) flags.set(`storage.${key}`, overrideFlags.path)
  }
}

/**
 * The storage keys a location names: a folder (relative to `cwd`) or a URL of a backend that
 * has one (backends.ts: `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`).
 */
export function storageFromLocation(location: string, cwd = process.cwd(), file = '--path'): Record<string, unknown> {
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/]*)\/*(.*)$/.exec(location)
  if (url === null) return { backend: 'filesystem', path: resolve(cwd, location) }
  const [, scheme = '', name = '', prefix = ''] = url
  const entry = backendOfScheme(scheme)
  if (entry?.url === undefined) {
    const expected = `a folder or an ${orList(locationSchemes)} URL`
    throw new BackupError('KB_CONFIG_INVALID', `${file}: --path: expected ${expected}, found ${scheme}://`, {
      file,
      path: 'storage',
      expected,
      found: `${scheme}://`,
      flag: '--path'
    })
  }
  return { backend: backendName(entry), [entry.url.nameKey]: name, prefix: prefix.replace(/\/+$/, '') }
}

// ---- after validation ------------------------------------------------------------------------

function normalisePaths(config: Config, base: string): void {
  const against = (path: string): string => (isAbsolute(path) ? path : resolve(base, path))
  const stateStorage = config.mode === 'restore' ? config.restore.state_storage : undefined
  for (const storage of stateStorage ? [config.storage, stateStorage] : [config.storage]) {
    if ('prefix' in storage) storage.prefix = storage.prefix.replace(/^\/+|\/+$/g, '')
    backendOf(storage).resolvePaths?.(storage, against)
  }
  const erase = config.mode === 'restore' ? config.restore.erase : undefined
  if (erase?.keys_file !== undefined) erase.keys_file = against(erase.keys_file)
  const security = config.mode === 'backup' ? config.source.security : config.target.security
  for (const key of ['ssl_ca_location', 'ssl_certificate_location', 'ssl_key_location'] as const) {
    const path = security[key]
    if (path !== undefined) security[key] = against(path)
  }
  const encryption = config.mode === 'backup' ? config.backup.encryption : config.restore.encryption
  if (encryption?.keyring_file !== undefined) encryption.keyring_file = against(encryption.keyring_file)
  if (config.mode === 'restore' && config.restore.scram_users_file !== undefined) {
    config.restore.scram_users_file = against(config.restore.scram_users_file)
  }
}

function warningsFor(config: Config, input: unknown): ConfigWarning[] {
  const warnings: ConfigWarning[] = []
  if (config.mode === 'backup') {
    if (config.backup.batch_size !== undefined) {
      warnings.push({
        path: 'backup.batch_size',
        message:
          "backup.batch_size has no effect: kafka-backup copies the brokers' record batches whole; tune source.kafka_config fetch sizes and backup.max_bytes_in_flight instead"
      })
    }
    if (config.source.kafka_config['socket.receive.buffer.bytes'] !== undefined) {
      warnings.push({
        path: 'source.kafka_config.socket.receive.buffer.bytes',
        message:
          'source.kafka_config.socket.receive.buffer.bytes has no effect: Node.js cannot set SO_RCVBUF; the operating system sizes the buffer'
      })
    }
    const levelWritten = valueAt(input, ['backup', 'compression_level']) !== undefined
    if (levelWritten && compressionLevels[config.backup.compression] === undefined) {
      warnings.push({
        path: 'backup.compression_level',
        message: `backup.compression_level is ignored with compression ${config.backup.compression}`
      })
    }
  } else {
    if (config.target.kafka_config['linger.ms'] !== undefined) {
      warnings.push({
        path: 'target.kafka_config.linger.ms',
        message:
          'target.kafka_config.linger.ms has no effect: restore sends each Produce request as soon as it is full or the data runs out'
      })
    }
    if (config.target.kafka_config['socket.send.buffer.bytes'] !== undefined) {
      warnings.push({
        path: 'target.kafka_config.socket.send.buffer.bytes',
        message:
          'target.kafka_config.socket.send.buffer.bytes has no effect: Node.js cannot set SO_SNDBUF; the operating system sizes the buffer'
      })
    }
  }
  return warnings
}

/** A copy of the config (or any part of it) with every secret value replaced by `***`, for printing. */
export function redactConfig<T>(config: T): T {
  return redact(config, undefined) as T
}

function redact(value: unknown, key: string | undefined): unknown {
  if (key !== undefined && isSecretKey(key) && value !== undefined && value !== null) return '***'
  if (Array.isArray(value)) return value.map(item => redact(item, undefined))
  if (isRecord(value)) {
    const copy: Record<string, unknown> = {}
    for (const [name, item] of Object.entries(value)) define(copy, name, redact(item, name))
    return copy
  }
  return value
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** Sets an own property even for a key like `__proto__`, which plain assignment would not. */
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}
