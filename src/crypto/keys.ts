/**
 * Key-encryption keys (docs/encryption.md). A segment's frames are sealed with a random data key
 * of its own; a `KeyProvider` wraps that data key with a key-encryption key (KEK) named by an
 * id, and the segment header stores the id and the wrapped key. Rotation is adding a key: new
 * segments use the active (newest) key, older segments name the key that still unwraps them.
 *
 * The keyring file is the one provider kafka-backup ships; a cloud KMS would implement the same
 * interface (wrap and unwrap by key id) and is not included because it cannot be tested here.
 * No message or error built here contains key bytes: they name the keyring's file or variable,
 * the line and the key id.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { BackupError } from '../errors.ts'

export const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16
/** Ids are written into segment headers and logs: short, printable, never secret. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/

export interface KeyProvider {
  /** Where the keys come from, for messages: `keyring file /etc/kb/keyring`, never key bytes. */
  readonly description: string
  /** The key new segments are wrapped with. */
  readonly activeKeyId: string
  /** Wraps a data key with key `keyId`; `context` is authenticated with it and must be given to unwrap. */
  wrap(keyId: string, dataKey: Buffer, context: Buffer): Promise<Buffer>
  /**
   * The data key, or KB_KEY_NOT_FOUND (no key `keyId`) / KB_DECRYPT_FAILED (key `keyId` did not
   * wrap it: a different key under that id, or changed bytes). `where` names the segment.
   */
  unwrap(keyId: string, wrapped: Buffer, context: Buffer, where: string): Promise<Buffer>
}

export function keyNotFound(keyId: string, where: string, description: string | undefined): BackupError {
  const reason = description === undefined ? 'no keyring was given' : `${description} has no key ${keyId}`
  return new BackupError(
    'KB_KEY_NOT_FOUND',
    `${where} is encrypted with key id ${keyId}, and ${reason} (give the keyring holding key ${keyId}: encryption.keyring_file or keyring_env)`,
    { keyId, segment: where }
  )
}

/** AES-256-GCM key wrapping: `iv(12) | wrapped key | tag(16)`. */
class Keyring implements KeyProvider {
  readonly description: string
  readonly activeKeyId: string
  readonly #keys: ReadonlyMap<string, Buffer>

  constructor(description: string, keys: ReadonlyMap<string, Buffer>, activeKeyId: string) {
    this.description = description
    this.#keys = keys
    this.activeKeyId = activeKeyId
  }

  async wrap(keyId: string, dataKey: Buffer, context: Buffer): Promise<Buffer> {
    const kek = this.#keys.get(keyId)
    if (kek === undefined) {
      throw keyNotFound(keyId, 'a new segment', this.description)
    }
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', kek, iv)
    cipher.setAAD(context)
    const sealed = Buffer.concat([iv, cipher.update(dataKey), cipher.final()])
    return Buffer.concat([sealed, cipher.getAuthTag()])
  }

  async unwrap(keyId: string, wrapped: Buffer, context: Buffer, where: string): Promise<Buffer> {
    const kek = this.#keys.get(keyId)
    if (kek === undefined) {
      throw keyNotFound(keyId, where, this.description)
    }
    if (wrapped.length !== IV_BYTES + KEY_BYTES + TAG_BYTES) {
      throw unwrapFailed(keyId, where, this.description)
    }
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, IV_BYTES))
    decipher.setAAD(context)
    decipher.setAuthTag(wrapped.subarray(IV_BYTES + KEY_BYTES))
    try {
      return Buffer.concat([decipher.update(wrapped.subarray(IV_BYTES, IV_BYTES + KEY_BYTES)), decipher.final()])
    } catch {
      // OpenSSL's own message says nothing more than "unable to authenticate data".
      throw unwrapFailed(keyId, where, this.description)
    }
  }
}

function unwrapFailed(keyId: string, where: string, description: string): BackupError {
  return new BackupError(
    'KB_DECRYPT_FAILED',
    `${where}: key ${keyId} of ${description} does not unwrap its data key: a different key under the same id, or the header was changed`,
    { keyId, segment: where, part: 'header' }
  )
}

function invalid(description: string, problem: string, field: string): BackupError {
  return new BackupError('KB_KEYRING_INVALID', `${description}: ${problem}`, { keyring: description, field })
}

/**
 * Parses keyring text: one key a line, `<id> <key>`, the key 32 bytes as 64 hex digits or
 * base64; `#` starts a comment. The last key is the active one. Errors name the line and the
 * field, never the line's text (it holds a key).
 */
export function parseKeyring(text: string, description: string): KeyProvider {
  const keys = new Map<string, Buffer>()
  let active: string | undefined
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') {
      continue
    }
    const where = `line ${i + 1}`
    const fields = line.split(/\s+/)
    if (fields.length !== 2) {
      throw invalid(description, `${where}: expected "<key id> <key>", found ${fields.length} fields`, where)
    }
    const [id, encoded] = fields as [string, string]
    if (!KEY_ID_PATTERN.test(id)) {
      throw invalid(description, `${where}: key id: expected 1 to 64 of A-Z a-z 0-9 . _ -`, `${where} key id`)
    }
    if (keys.has(id)) {
      throw invalid(description, `${where}: key id ${id} appears twice`, `${where} key id`)
    }
    const key = decodeKey(encoded)
    if (key === undefined) {
      throw invalid(
        description,
        `${where}: key ${id}: expected ${KEY_BYTES} bytes as 64 hex digits or base64 (e.g. from "openssl rand -hex 32")`,
        `${where} key`
      )
    }
    keys.set(id, key)
    active = id
  }
  if (active === undefined) {
    throw invalid(description, 'holds no key (expected lines "<key id> <key>")', 'keys')
  }
  return new Keyring(description, keys, active)
}

function decodeKey(encoded: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(encoded)) {
    return Buffer.from(encoded, 'hex')
  }
  if (/^[A-Za-z0-9+/]{43}=$/.test(encoded)) {
    return Buffer.from(encoded, 'base64')
  }
  return undefined
}

export interface KeyringSource {
  keyring_file?: string | undefined
  keyring_env?: string | undefined
}

/**
 * The keyring of a config's `encryption` block (file or environment variable). A file others
 * may read is used with a warning: secret mounts are often 0644, and refusing them would only
 * push operators to weaker workarounds.
 */
export async function loadKeyring(
  source: KeyringSource,
  onWarning?: (message: string, context: Record<string, unknown>) => void
): Promise<KeyProvider> {
  if (source.keyring_env !== undefined) {
    const description = `keyring in environment variable ${source.keyring_env}`
    const text = process.env[source.keyring_env]
    if (text === undefined || text.trim() === '') {
      throw invalid(description, 'the variable is unset or empty', source.keyring_env)
    }
    return parseKeyring(text, description)
  }
  const path = source.keyring_file
  if (path === undefined) {
    throw new BackupError('KB_CONFIG_INVALID', 'encryption: expected keyring_file or keyring_env', {
      path: 'encryption'
    })
  }
  const description = `keyring file ${path}`
  let text: string
  try {
    const info = await stat(path)
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      onWarning?.(`${description} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`, {
        path
      })
    }
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw invalid(description, `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, 'keyring_file')
  }
  return parseKeyring(text, description)
}
