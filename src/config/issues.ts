/**
 * Turns schema violations into one KB_CONFIG_INVALID error an operator can act on:
 * `backup.yaml:14: backup.compression_level: expected an integer from 1 to 19 for zstd, found 25`.
 * Values at secret keys are never shown, only their kind.
 */
import type { z } from 'zod'
import { BackupError } from '../errors.ts'
import { isSecretKey, modeSections } from './schema.ts'
import { allKeyPaths, formatPath, knownKeysAt, schemaAt, typesOf, valueAt } from './schema-paths.ts'

type Issue = z.core.$ZodIssue

export interface IssueContext {
  file: string
  /** The config as validated (after `${VAR}` substitution and CLI overrides). */
  input: unknown
  /** Line (1-based) of the key at `path` in the file, if it is there. */
  lineOf(path: readonly PropertyKey[]): number | undefined
  /** CLI flag that set the value at a formatted path, e.g. `--backup-id`. */
  flags: ReadonlyMap<string, string>
}

export interface ConfigProblem {
  path: string
  message: string
  line?: number
  expected?: string
  found?: string
  flag?: string
}

const typeNames: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
  null: 'nothing'
}

/** Builds the error for a failed validation: the first problem in its message, all of them in `issues`. */
export function configInvalidError(issues: readonly Issue[], context: IssueContext): BackupError {
  const problems = issues.flatMap(issue => describeIssue(issue, [], context))
  // A misspelt key usually also shows up as a missing one; the misspelling is the one to fix.
  problems.sort((a, b) => rank(a) - rank(b) || (a.line ?? Infinity) - (b.line ?? Infinity))
  const first = problems[0] ?? { path: '(top level)', message: 'the config is invalid' }
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : ''
  return new BackupError('KB_CONFIG_INVALID', `${locate(first, context)}${first.message}${more}`, {
    file: context.file,
    path: first.path,
    ...(first.line === undefined ? {} : { line: first.line }),
    expected: first.expected,
    found: first.found,
    ...(first.flag === undefined ? {} : { flag: first.flag }),
    issues: problems.map(problem => `${locate(problem, context)}${problem.message}`)
  })
}

function rank(problem: ConfigProblem): number {
  return problem.message.includes('unknown key') || problem.message.includes('only allowed with mode') ? 0 : 1
}

function locate(problem: ConfigProblem, context: IssueContext): string {
  return problem.line === undefined ? `${context.file}: ` : `${context.file}:${problem.line}: `
}

function describeIssue(issue: Issue, prefix: readonly PropertyKey[], context: IssueContext): ConfigProblem[] {
  const path = [...prefix, ...issue.path]
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map(key => unknownKey([...path, key], context))
    case 'invalid_union': {
      // zod reports a union only when no member got further than its type check; when one member
      // failed deeper inside (a list with one bad entry), that member's problems are the real ones.
      const deeper = issue.errors.filter(errors =>
        errors.some(inner => inner.path.length > 0 || inner.code !== 'invalid_type')
      )
      if (deeper.length === 1) return (deeper[0] ?? []).flatMap(inner => describeIssue(inner, path, context))
      if ('note' in issue && issue.note === 'No matching discriminator' && 'options' in issue) {
        const options = (issue.options as unknown[]).map(String).join(', ')
        // The issue's input is the mapping; what was found is the discriminator's own value.
        return [problem(path, `one of ${options}`, { ...issue, input: undefined }, context)]
      }
      const expected = issue.message.startsWith('expected ')
        ? issue.message.slice('expected '.length)
        : unionExpected(issue.errors, path, context)
      return [problem(path, expected, issue, context)]
    }
    case 'invalid_key': {
      const key = path[path.length - 1]
      const inner = issue.issues[0]
      const expected = inner === undefined ? 'a valid key' : expectedOf(inner, path, context)
      return [problem(path, expected, issue, context, `the key ${JSON.stringify(String(key))}`)]
    }
    case 'custom': {
      if (issue.message.startsWith('expected ')) {
        const params = issue.params as { expected?: string; found?: unknown } | undefined
        const expected = params?.expected ?? issue.message.slice('expected '.length)
        const hasFound = params !== undefined && 'found' in params
        return [problem(path, expected, issue, context, hasFound ? renderValue(params.found, path) : undefined)]
      }
      return [sentence(path, issue.message, context)]
    }
    default:
      return [problem(path, expectedOf(issue, path, context), issue, context)]
  }
}

function unionExpected(branches: readonly (readonly Issue[])[], path: PropertyKey[], context: IssueContext): string {
  const expected = branches.flatMap(errors => errors.slice(0, 1).map(inner => expectedOf(inner, path, context)))
  return [...new Set(expected)].join(' or ')
}

function expectedOf(issue: Issue, path: readonly PropertyKey[], context: IssueContext): string {
  if (issue.message.startsWith('expected ')) return issue.message.slice('expected '.length)
  switch (issue.code) {
    case 'invalid_type': {
      // zod reports an integer key given text as "expected number"; the schema knows better.
      const node = issue.expected === 'number' ? schemaAt(path, context.input) : undefined
      if (node !== undefined && typesOf(node).has('integer') && !typesOf(node).has('number')) return 'an integer'
      return typeNames[issue.expected] ?? issue.expected
    }
    case 'too_small': {
      const minimum = Number(issue.minimum)
      if (issue.origin === 'array' || issue.origin === 'set') {
        return `at least ${minimum} ${minimum === 1 ? 'entry' : 'entries'}`
      }
      if (issue.origin === 'string') return minimum === 1 ? 'a non-empty string' : `at least ${minimum} characters`
      return issue.inclusive
        ? `a number of at least ${withUnit(minimum)}`
        : `a number greater than ${withUnit(minimum)}`
    }
    case 'too_big': {
      const maximum = Number(issue.maximum)
      if (issue.origin === 'array' || issue.origin === 'set') return `at most ${maximum} entries`
      if (issue.origin === 'string') return `at most ${maximum} characters`
      return issue.inclusive ? `a number of at most ${withUnit(maximum)}` : `a number less than ${withUnit(maximum)}`
    }
    case 'invalid_value':
      return issue.values.length === 1 ? String(issue.values[0]) : `one of ${issue.values.map(String).join(', ')}`
    case 'invalid_format':
      return `a value in ${issue.format} format`
    case 'not_multiple_of':
      return `a multiple of ${String(issue.divisor)}`
    default:
      return 'a valid value'
  }
}

/** 5242880 -> "5242880 (5 MiB)", so byte limits read at a glance. */
function withUnit(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024]
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes} (${bytes / size} ${unit})`
  }
  return String(bytes)
}

function problem(
  path: PropertyKey[],
  expected: string,
  issue: Issue,
  context: IssueContext,
  foundText?: string
): ConfigProblem {
  const where = formatPath(path)
  const flag = context.flags.get(where)
  const line = flag === undefined ? context.lineOf(path) : undefined
  const written = valueAt(context.input, path)
  // A refinement's input is the whole mapping it checked, not the key it names.
  const value = issue.code !== 'custom' && 'input' in issue && issue.input !== undefined ? issue.input : written
  if (foundText === undefined && value === undefined) {
    return {
      path: where,
      message: `${where}: required key is missing (expected ${expected})`,
      ...(line === undefined ? {} : { line }),
      expected,
      found: 'nothing'
    }
  }
  let found = foundText ?? renderValue(value, path)
  if (written === undefined && foundText !== undefined && flag === undefined) {
    found += ' (the default)'
  }
  return {
    path: where,
    message: `${where}: expected ${expected}, found ${found}${flag === undefined ? '' : ` (from ${flag})`}`,
    ...(line === undefined ? {} : { line }),
    expected,
    found,
    ...(flag === undefined ? {} : { flag })
  }
}

function sentence(path: PropertyKey[], message: string, context: IssueContext): ConfigProblem {
  const where = formatPath(path)
  const line = context.lineOf(path)
  return { path: where, message: `${where}: ${message}`, ...(line === undefined ? {} : { line }) }
}

function unknownKey(path: PropertyKey[], context: IssueContext): ConfigProblem {
  const where = formatPath(path)
  const key = String(path[path.length - 1])
  const parent = path.slice(0, -1)
  const line = context.lineOf(path)
  const flag = context.flags.get(where)
  const at = line === undefined ? {} : { line }
  const sectionMode = parent.length === 0 ? modeSections[key] : undefined
  const mode = valueAt(context.input, ['mode'])
  if (sectionMode !== undefined && typeof mode === 'string') {
    return {
      path: where,
      message: `${where}: only allowed with mode: ${sectionMode} (this file has mode: ${mode}); keep one config file per mode${flag === undefined ? '' : ` (from ${flag})`}`,
      ...at,
      expected: `no ${key} section in mode ${mode}`,
      found: key
    }
  }
  const known = knownKeysAt(parent, context.input)
  const hint = hintForUnknownKey(key, known, parent, mode)
  return {
    path: where,
    message: `${where}: unknown key${hint === undefined ? '' : ` (${hint})`}`,
    ...at,
    expected: known.length === 0 ? 'no further keys' : `one of ${known.join(', ')}`,
    found: key
  }
}

/**
 * A hint for an unknown key: the known key it most likely misspells (`did you mean
 * backup.compression?`), the same key in another section of this mode, or the storage backend
 * it belongs to (`only with backend: s3`).
 */
export function hintForUnknownKey(
  key: string,
  known: readonly string[],
  parent: readonly PropertyKey[],
  mode: unknown
): string | undefined {
  const prefix = parent.length === 0 ? '' : `${formatPath(parent)}.`
  const squash = (name: string): string => name.toLowerCase().replace(/[-_.\s]/g, '')
  const same = known.find(candidate => squash(candidate) === squash(key))
  if (same !== undefined) return `did you mean ${prefix}${same}?`
  const limit = key.length <= 4 ? 1 : Math.max(2, Math.floor(key.length / 4))
  let best: { candidate: string; distance: number } | undefined
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { candidate, distance }
  }
  if (best !== undefined) return `did you mean ${prefix}${best.candidate}?`
  const inThisMode = allKeyPaths().filter(entry =>
    entry.conditions.every(condition => !condition.startsWith('mode: ') || condition === `mode: ${String(mode)}`)
  )
  const matches = inThisMode.filter(entry => squash(entry.path[entry.path.length - 1] as string) === squash(key))
  const here = `${prefix}${key}`
  const variants = matches.filter(entry => entry.path.join('.') === here)
  if (variants.length > 0) {
    const conditions = [...new Set(variants.flatMap(entry => entry.conditions.filter(c => !c.startsWith('mode: '))))]
    if (conditions.length > 0) return `only with ${conditions.join(' or ')}`
  }
  const elsewhere = matches.find(entry => entry.path.join('.') !== here)
  return elsewhere === undefined ? undefined : `did you mean ${elsewhere.path.join('.')}?`
}

/** Optimal string alignment distance: Levenshtein plus adjacent transpositions (`prot` -> `port` is 1). */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1
  const columns = b.length + 1
  const d = new Array<number>(rows * columns).fill(0)
  const at = (i: number, j: number): number => d[i * columns + j] as number
  for (let i = 0; i < rows; i++) d[i * columns] = i
  for (let j = 0; j < columns; j++) d[j] = j
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < columns; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let value = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        value = Math.min(value, at(i - 2, j - 2) + 1)
      d[i * columns + j] = value
    }
  }
  return at(a.length, b.length)
}

/** How a found value is shown: short and quoted; at a secret key only its kind. */
export function renderValue(value: unknown, path: readonly PropertyKey[]): string {
  const kind = kindOf(value)
  if (path.some(isSecretKey) && value !== undefined && value !== null) return `${kind} (not shown: secret)`
  if (typeof value === 'string') {
    if (value === '') return 'an empty string'
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (value === null) return 'an empty value'
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length}`
  return kind
}

function kindOf(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'an empty value'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number'
  if (typeof value === 'boolean') return 'a boolean'
  return typeof value
}
