/**
 * Signing a verification report with Ed25519 (node:crypto) and checking it
 * (docs/verification-report.md). What is signed is the report's canonical JSON: object keys
 * sorted, no whitespace. Every number in a report is an integer and every int64 a string, so
 * this is the JSON Canonicalization Scheme (RFC 8785) for these documents, and anyone can
 * recompute the signed bytes from the file with any JSON library.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { BackupError } from '../errors.ts'
import type { VerificationReport } from './compare.ts'

export interface SignedReport {
  report: VerificationReport
  signature: {
    algorithm: 'Ed25519'
    /** The signer's public key, SubjectPublicKeyInfo DER in base64. */
    publicKey: string
    value: string
  }
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

async function readKey(file: string, kind: 'private' | 'public', option: string): Promise<KeyObject> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new BackupError('KB_CONFIG_NOT_FOUND', `${option} ${file}: cannot read the key file`, {
      cause: error,
      path: option,
      file
    })
  }
  let key: KeyObject
  try {
    key = kind === 'private' ? createPrivateKey(text) : createPublicKey(text)
  } catch (error) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${option} ${file}: expected a PEM ${kind} key (${(error as Error).message})`,
      {
        cause: error,
        path: option,
        file
      }
    )
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${option} ${file}: expected an Ed25519 key, found ${key.asymmetricKeyType}`,
      {
        path: option,
        file,
        expected: 'ed25519',
        found: key.asymmetricKeyType
      }
    )
  }
  return key
}

export const readPrivateKey = (file: string, option: string) => readKey(file, 'private', option)
export const readPublicKey = (file: string, option: string) => readKey(file, 'public', option)

export function signReport(report: VerificationReport, privateKey: KeyObject): SignedReport {
  return {
    report,
    signature: {
      algorithm: 'Ed25519',
      publicKey: createPublicKey(privateKey).export({ type: 'spki', format: 'der' }).toString('base64'),
      value: sign(null, Buffer.from(canonicalJson(report)), privateKey).toString('base64')
    }
  }
}

/**
 * Throws KB_REPORT_INVALID unless `signed` was signed by the holder of `trusted`'s private key
 * and not changed since. The key embedded in the report only says who claims to have signed.
 */
export function checkSignature(signed: SignedReport, trusted: KeyObject, file: string): void {
  const trustedDer = trusted.export({ type: 'spki', format: 'der' }).toString('base64')
  if (signed.signature?.algorithm !== 'Ed25519' || typeof signed.signature.value !== 'string') {
    throw new BackupError('KB_REPORT_INVALID', `${file}: signature: expected an Ed25519 signature`, {
      file,
      field: 'signature'
    })
  }
  if (signed.signature.publicKey !== trustedDer) {
    throw new BackupError(
      'KB_REPORT_INVALID',
      `${file}: signed with another key than the trusted public key given (signature.publicKey differs)`,
      { file, field: 'signature.publicKey' }
    )
  }
  if (
    !verify(null, Buffer.from(canonicalJson(signed.report)), trusted, Buffer.from(signed.signature.value, 'base64'))
  ) {
    throw new BackupError(
      'KB_REPORT_INVALID',
      `${file}: the signature does not match the report: the report was changed after it was signed`,
      { file, field: 'signature.value' }
    )
  }
}
