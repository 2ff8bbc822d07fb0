/**
 * Erasure on restore (`restore.erase`): records whose key is named are left out of the restore,
 * so that a data subject's erasure request made after a backup is honoured by every restore of
 * it. Keys are named exactly (a file of keys, one per line, or a list in the config) or by
 * patterns; docs/config.md has the format.
 *
 * A key is compared as bytes: a line is the UTF-8 text of the key, or `base64:` followed by the
 * key's bytes in base64 (binary keys, keys with line breaks, an empty key, a key that starts
 * with `#` or `base64:`). Patterns match the key decoded as UTF-8 in full: `*` any run of
 * characters, `?` one character. A record without a key is never erased (nothing names it).
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { BackupError } from '../errors.ts'

export interface EraseSpec {
  /** A file of keys, one per line (absolute, or relative to the working directory). */
  keysFile?: string
  keys: string[]
  patterns: string[]
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** One key as written in the file or the list: UTF-8 text, or `base64:` and the bytes. */
function parseKey(text: string, where: () => string): Buffer {
  if (!text.startsWith('base64:')) {
    return Buffer.from(text, 'utf8')
  }
  const encoded = text.slice('base64:'.length)
  if (encoded.length % 4 !== 0 || !BASE64.test(encoded)) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${where()}: expected base64 after "base64:" (A-Z, a-z, 0-9, +, /, padded with = to a multiple of 4 characters), found ${JSON.stringify(encoded)}`,
      { path: 'restore.erase', found: encoded }
    )
  }
  return Buffer.from(encoded, 'base64')
}

function globToRegExp(pattern: string): string {
  return pattern
    .split('')
    .map(c => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('')
}

export class KeyEraser {
  /** Exact keys, as latin1 strings: one character per byte, so that any bytes compare exactly. */
  readonly #keys: Set<string>
  readonly #pattern: RegExp | undefined
  /** Identifies what is erased, so a restore with another erase list is another restore. */
  readonly fingerprint: string
  readonly keyCount: number

  constructor(keys: readonly Buffer[], patterns: readonly string[]) {
    this.#keys = new Set(keys.map(key => key.toString('latin1')))
    this.keyCount = this.#keys.size
    this.#pattern =
      patterns.length === 0 ? undefined : new RegExp(`^(?:${patterns.map(globToRegExp).join('|')})$`, 'su')
    const hash = createHash('sha256')
    for (const key of [...this.#keys].sort()) {
      hash.update(`${Buffer.byteLength(key, 'latin1')}:`).update(key, 'latin1')
    }
    hash.update(JSON.stringify([...patterns].sort()))
    this.fingerprint = hash.digest('hex').slice(0, 16)
  }

  matches(key: Buffer | null): boolean {
    if (key === null) {
      return false
    }
    return this.#keys.has(key.toString('latin1')) || (this.#pattern?.test(key.toString('utf8')) ?? false)
  }

  /** Builds the eraser `spec` names, reading its keys file; undefined when it names nothing. */
  static async load(spec: EraseSpec | undefined): Promise<KeyEraser | undefined> {
    if (!spec || (spec.keysFile === undefined && spec.keys.length === 0 && spec.patterns.length === 0)) {
      return undefined
    }
    const keys = spec.keys.map((text, i) => parseKey(text, () => `restore.erase.keys[${i}]`))
    if (spec.keysFile !== undefined) {
      const file = spec.keysFile
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (error) {
        throw new BackupError(
          'KB_CONFIG_INVALID',
          `restore.erase.keys_file ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); nothing was restored`,
          { path: 'restore.erase.keys_file', file, cause: error }
        )
      }
      for (const [i, line] of text.split('\n').entries()) {
        const key = line.endsWith('\r') ? line.slice(0, -1) : line
        if (key === '' || key.startsWith('#')) {
          continue
        }
        keys.push(parseKey(key, () => `restore.erase.keys_file ${file} line ${i + 1}`))
      }
    }
    return new KeyEraser(keys, spec.patterns)
  }
}
