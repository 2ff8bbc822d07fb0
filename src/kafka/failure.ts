/**
 * Turns what our protocol layer (src/kafka/wire/) and Node's TLS layer throw into one of our
 * codes with a message an operator can act on. A broken connection is a NetworkError whose
 * cause is what broke it, so the reason is found by walking the error's `errors` and `cause`
 * chain: a SASL failure, a TLS verification error or an authorization error code must not
 * read as "no answer from Kafka".
 */
import { BackupError } from '../errors.ts'
import { AuthenticationError, NetworkError } from './wire/errors.ts'

export interface FailureContext {
  /** What was being done, e.g. "listing topics". */
  what: string
  bootstrapServers: string[]
  /** The config section of the cluster, e.g. "source", for key paths in messages. */
  configKey: string
  sasl?: { mechanism: string; username?: unknown }
}

interface ErrorNode {
  code?: unknown
  /** A Kafka error code's name (ProtocolError). */
  errorName?: unknown
  message?: unknown
  serverMessage?: unknown
  host?: unknown
  reason?: unknown
  cert?: { subjectaltname?: unknown; subject?: { CN?: unknown } }
  errors?: unknown[]
  cause?: unknown
}

/** The error and every error it wraps, outermost first. */
function chainOf(error: unknown): ErrorNode[] {
  const nodes: ErrorNode[] = []
  const pending = [error]
  while (pending.length > 0) {
    const node = pending.shift()
    if (typeof node !== 'object' || node === null || nodes.includes(node as ErrorNode)) {
      continue
    }
    nodes.push(node as ErrorNode)
    pending.push(...((node as ErrorNode).errors ?? []), (node as ErrorNode).cause)
  }
  return nodes
}

/** Node's certificate verification errors (OpenSSL's X509_V_ERR names) and what each means. */
const certificateErrors: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'is not signed by a CA this tool trusts',
  UNABLE_TO_GET_ISSUER_CERT: 'is not signed by a CA this tool trusts',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'is not signed by a CA this tool trusts',
  SELF_SIGNED_CERT_IN_CHAIN: 'chains to a CA this tool does not trust',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'is self-signed and not trusted',
  CERT_UNTRUSTED: 'is not trusted',
  CERT_SIGNATURE_FAILURE: 'has an invalid signature',
  CERT_HAS_EXPIRED: 'has expired',
  CERT_NOT_YET_VALID: 'is not valid yet'
}

/**
 * OpenSSL alerts the broker sends when it refuses the client's certificate (mutual TLS). Node
 * names them after OpenSSL's reason, e.g. ERR_SSL_SSL/TLS_ALERT_BAD_CERTIFICATE or
 * ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED, depending on the OpenSSL version.
 */
const clientCertificateAlert =
  /^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED)$/

const saslErrors = new Set(['SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE'])

function tlsFailure(nodes: ErrorNode[], context: FailureContext): string | undefined {
  const security = `${context.configKey}.security`
  for (const node of nodes) {
    const code = typeof node.code === 'string' ? node.code : ''
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      const names = node.cert?.subjectaltname ?? node.cert?.subject?.CN ?? 'none'
      return `the broker's TLS certificate is not valid for host ${String(node.host)} (it names ${String(names)}): connect by a name the certificate holds, or reissue the certificate`
    }
    const meaning = certificateErrors[code]
    if (meaning !== undefined) {
      return `the broker's TLS certificate ${meaning} (${code}): set ${security}.ssl_ca_location to a PEM file of the CA that signed it`
    }
    if (clientCertificateAlert.test(code)) {
      return `the broker refused this client's TLS certificate (${code}): it requires one signed by a CA it trusts, set in ${security}.ssl_certificate_location and ssl_key_location`
    }
    if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
      return `the broker does not speak TLS on this port (${code}): check ${security}.security_protocol and the port`
    }
    if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
      return `the TLS handshake failed (${code}: ${String(node.message)})`
    }
    if (typeof node.message === 'string' && node.message.startsWith('TLS handshake failed')) {
      return `the broker closed the connection during the TLS handshake: it does not speak TLS on this port, check ${security}.security_protocol and the port`
    }
    if (node.message === 'Broker requires TLS.') {
      return `the broker speaks TLS on this port: set ${security}.security_protocol to SSL or SASL_SSL`
    }
  }
  return undefined
}

function authenticationFailure(nodes: ErrorNode[], context: FailureContext): string | undefined {
  const protocolError = nodes.find(n => typeof n.errorName === 'string' && saslErrors.has(n.errorName))
  const clientError = nodes.find(n => n instanceof AuthenticationError)
  if (protocolError === undefined && clientError === undefined) {
    return undefined
  }
  const who =
    context.sasl === undefined
      ? 'authentication'
      : `SASL ${context.sasl.mechanism} authentication${typeof context.sasl.username === 'string' ? ` as ${context.sasl.username}` : ''}`
  const security = `${context.configKey}.security`
  if (protocolError?.errorName === 'UNSUPPORTED_SASL_MECHANISM') {
    return `${who} failed: the broker does not enable ${context.sasl?.mechanism ?? 'this mechanism'} on this listener: set ${security}.sasl_mechanism to one it enables`
  }
  const detail = protocolError?.serverMessage ?? protocolError?.message ?? clientError?.message
  const keys =
    context.sasl?.mechanism === 'OAUTHBEARER'
      ? `the token from ${security}.sasl_oauthbearer_token_endpoint_url (issuer, audience, expiry) against the broker's OAUTHBEARER settings`
      : `${security}.sasl_username, sasl_password and sasl_mechanism`
  return `${who} failed: ${String(detail)}: check ${keys}`
}

/**
 * The authorization error of a failed call, if any, with the principal's missing right. Kafka
 * names only the resource type; `acl` (from the caller) names the operation and resources.
 */
function authorizationFailure(nodes: ErrorNode[], acl: string | undefined): string | undefined {
  const denied = nodes.find(n => typeof n.errorName === 'string' && n.errorName.endsWith('_AUTHORIZATION_FAILED'))
  if (denied === undefined) {
    return undefined
  }
  return `not authorized (${String(denied.errorName)})${acl ? `: the principal needs ${acl}` : ''}`
}

/** Our error for a failed Kafka call; `acl` names the ACL the call needs, for authorization failures. */
export function kafkaFailure(error: unknown, context: FailureContext, acl?: string): BackupError {
  if (error instanceof BackupError) {
    return error
  }
  const nodes = chainOf(error)
  // Our own error inside the client's (a failed OAuth token request) already says what failed.
  const ours = nodes.find(node => node instanceof BackupError)
  if (ours !== undefined) {
    return ours as BackupError
  }
  const servers = context.bootstrapServers.join(',')
  const denied = authorizationFailure(nodes, acl)
  if (denied !== undefined) {
    return new BackupError('KB_KAFKA_AUTHORIZATION', `${context.what} on ${servers} failed: ${denied}`, {
      cause: error,
      acl
    })
  }
  const tls = tlsFailure(nodes, context)
  if (tls !== undefined) {
    return new BackupError('KB_KAFKA_TLS', `${context.what} failed: TLS with ${servers}: ${tls}`, { cause: error })
  }
  const authentication = authenticationFailure(nodes, context)
  if (authentication !== undefined) {
    return new BackupError('KB_KAFKA_AUTHENTICATION', `${context.what} failed at ${servers}: ${authentication}`, {
      cause: error
    })
  }
  const innermost = nodes.at(-1)?.message ?? String(error)
  if (nodes.some(n => n instanceof NetworkError)) {
    return new BackupError(
      'KB_KAFKA_UNREACHABLE',
      `${context.what} failed: no answer from Kafka at ${servers} (${String(innermost)})`,
      { cause: error, bootstrapServers: context.bootstrapServers }
    )
  }
  return new BackupError('KB_KAFKA', `${context.what} failed on ${servers}: ${String(innermost)}`, { cause: error })
}
