/**
 * SASL authentication on a new connection (KIP-152): SaslHandshake names the mechanism, then
 * SaslAuthenticate carries its messages. PLAIN, SCRAM-SHA-256/512 (RFC 5802, RFC 7677) and
 * OAUTHBEARER (RFC 7628, the token from src/kafka/oauth.ts).
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { AuthenticationError, checkErrorCode, ProtocolError } from './errors.ts'
import type { Reader } from './reader.ts'
import type { Writer } from './writer.ts'

export type SaslMechanism = 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512' | 'OAUTHBEARER'

export interface SaslOptions {
  mechanism: SaslMechanism
  username?: string
  password?: string
  /** OAUTHBEARER: the token, or a function that returns a fresh one for each authentication. */
  token?: string | (() => Promise<string> | string)
}

type Send = <T>(apiKey: number, version: number, encode: (w: Writer) => void, decode: (r: Reader) => T) => Promise<T>

const SASL_HANDSHAKE = 17
const SASL_AUTHENTICATE = 36

const pbkdf2Async = promisify(pbkdf2)

/** Runs the SASL exchange; returns the session lifetime the broker granted (0: unlimited). */
export async function authenticate(options: SaslOptions, send: Send): Promise<number> {
  await send(
    SASL_HANDSHAKE,
    1,
    w => w.appendString(options.mechanism, false),
    r => {
      const errorCode = r.readInt16()
      const enabled = r.readArray(r => r.readString(false), false)
      checkErrorCode(errorCode, 'SaslHandshake', errorCode === 0 ? null : `the broker enables ${enabled.join(', ')}`)
    }
  )
  const exchange = async (bytes: Buffer) => {
    const response = await send(
      SASL_AUTHENTICATE,
      2,
      w => w.appendBytes(bytes).appendTaggedFields(),
      r => {
        const errorCode = r.readInt16()
        const errorMessage = r.readNullableString()
        const authBytes = Buffer.from(r.readBytes())
        const sessionLifetimeMs = Number(r.readInt64())
        r.skipTaggedFields()
        return { errorCode, errorMessage, authBytes, sessionLifetimeMs }
      }
    )
    checkErrorCode(response.errorCode, 'SaslAuthenticate', response.errorMessage)
    return response
  }
  switch (options.mechanism) {
    case 'PLAIN': {
      const response = await exchange(Buffer.from(`\0${options.username ?? ''}\0${options.password ?? ''}`))
      return response.sessionLifetimeMs
    }
    case 'SCRAM-SHA-256':
    case 'SCRAM-SHA-512':
      return scram(options, exchange)
    case 'OAUTHBEARER': {
      const token = typeof options.token === 'function' ? await options.token() : options.token
      const response = await exchange(Buffer.from(`n,,\x01auth=Bearer ${token ?? ''}\x01\x01`))
      if (response.authBytes.length > 0) {
        // RFC 7628 3.2.2: the server's error (JSON) comes as a challenge; the client answers
        // with a bare separator and the broker then fails the exchange.
        const detail = response.authBytes.toString('utf8')
        await exchange(Buffer.from('\x01')).catch(error => {
          throw error instanceof ProtocolError
            ? new ProtocolError(error.errorCode, 'SaslAuthenticate', `${error.serverMessage ?? ''} (${detail})`)
            : error
        })
        throw new AuthenticationError(`the broker refused the OAuth token: ${detail}`)
      }
      return response.sessionLifetimeMs
    }
    default:
      throw new AuthenticationError(`SASL mechanism ${String(options.mechanism)} is not supported`)
  }
}

/** RFC 5802 `saslname`: `=` and `,` escaped. */
function saslName(name: string): string {
  return name.replaceAll('=', '=3D').replaceAll(',', '=2C')
}

function attributes(message: string): Map<string, string> {
  return new Map(message.split(',').map(part => [part.slice(0, 1), part.slice(2)]))
}

export interface ScramProof {
  clientFinal: string
  serverSignature: Buffer
}

/**
 * The client-final message and the server signature to expect, from the server-first
 * message (RFC 5802 section 3). Exported for the unit test against RFC 7677's example.
 */
export async function scramProof(
  algorithm: 'sha256' | 'sha512',
  password: string,
  clientFirstBare: string,
  serverFirst: string,
  clientNonce: string
): Promise<ScramProof> {
  const server = attributes(serverFirst)
  const nonce = server.get('r') ?? ''
  const salt = Buffer.from(server.get('s') ?? '', 'base64')
  const iterations = Number(server.get('i'))
  if (!nonce.startsWith(clientNonce) || salt.length === 0 || !Number.isInteger(iterations) || iterations < 1) {
    throw new AuthenticationError(`the broker's SCRAM challenge is malformed: ${serverFirst}`)
  }
  const hmac = (key: Buffer, data: string) => createHmac(algorithm, key).update(data).digest()
  const keyLength = algorithm === 'sha256' ? 32 : 64
  const saltedPassword = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, keyLength, algorithm)
  const clientKey = hmac(saltedPassword, 'Client Key')
  const storedKey = createHash(algorithm).update(clientKey).digest()
  const clientFinalWithoutProof = `c=biws,r=${nonce}`
  const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`
  const clientSignature = hmac(storedKey, authMessage)
  const proof = Buffer.alloc(clientKey.length)
  for (let i = 0; i < proof.length; i++) {
    proof[i] = clientKey[i]! ^ clientSignature[i]!
  }
  return {
    clientFinal: `${clientFinalWithoutProof},p=${proof.toString('base64')}`,
    serverSignature: hmac(hmac(saltedPassword, 'Server Key'), authMessage)
  }
}

async function scram(
  options: SaslOptions,
  exchange: (bytes: Buffer) => Promise<{ authBytes: Buffer; sessionLifetimeMs: number }>
): Promise<number> {
  const algorithm = options.mechanism === 'SCRAM-SHA-256' ? 'sha256' : 'sha512'
  const clientNonce = randomBytes(24).toString('base64')
  const clientFirstBare = `n=${saslName(options.username ?? '')},r=${clientNonce}`
  const first = await exchange(Buffer.from(`n,,${clientFirstBare}`))
  const serverFirst = first.authBytes.toString('utf8')
  const { clientFinal, serverSignature } = await scramProof(
    algorithm,
    options.password ?? '',
    clientFirstBare,
    serverFirst,
    clientNonce
  )
  const final = await exchange(Buffer.from(clientFinal))
  const serverFinal = attributes(final.authBytes.toString('utf8'))
  const verifier = Buffer.from(serverFinal.get('v') ?? '', 'base64')
  if (verifier.length !== serverSignature.length || !timingSafeEqual(verifier, serverSignature)) {
    throw new AuthenticationError(
      `the broker's SCRAM signature does not match: it does not know this user's password${serverFinal.has('e') ? ` (${serverFinal.get('e')})` : ''}`
    )
  }
  return final.sessionLifetimeMs
}
