/**
 * OAUTHBEARER tokens from an OAuth 2 token endpoint (client-credentials grant, RFC 6749 4.4).
 * The client asks for a token each time a connection authenticates, and again when the broker
 * makes it re-authenticate (connections.max.reauth.ms); a token is reused until half of its
 * lifetime has passed, so a re-authentication always presents one that is far from expiring.
 */
import { BackupError } from '../errors.ts'

export interface ClientCredentials {
  tokenEndpointUrl: string
  clientId: string
  clientSecret: string
  scope?: string
  /** The config section, for messages ("source.security"). */
  configKey: string
}

interface TokenResponse {
  access_token?: unknown
  expires_in?: unknown
}

export function clientCredentialsTokens(credentials: ClientCredentials): () => Promise<string> {
  let cached: { token: string; refreshAt: number } | undefined
  return async () => {
    if (cached !== undefined && Date.now() < cached.refreshAt) {
      return cached.token
    }
    const requestedAt = Date.now()
    const token = await requestToken(credentials)
    cached = { token: token.accessToken, refreshAt: requestedAt + (token.expiresInSecs * 1000) / 2 }
    return cached.token
  }
}

async function requestToken(credentials: ClientCredentials): Promise<{ accessToken: string; expiresInSecs: number }> {
  const { tokenEndpointUrl, clientId, clientSecret, scope, configKey } = credentials
  const form = new URLSearchParams({ grant_type: 'client_credentials' })
  if (scope !== undefined) {
    form.set('scope', scope)
  }
  // RFC 6749 2.3.1: HTTP Basic with the form-urlencoded id and secret.
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')
  const failure = (reason: string, cause?: unknown) =>
    new BackupError(
      'KB_KAFKA_AUTHENTICATION',
      `getting an OAuth token for client ${clientId} from ${tokenEndpointUrl} failed: ${reason}: check ${configKey}.sasl_oauthbearer_token_endpoint_url, sasl_oauthbearer_client_id and sasl_oauthbearer_client_secret`,
      { cause, tokenEndpointUrl, clientId }
    )
  let response: Response
  try {
    response = await fetch(tokenEndpointUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      signal: AbortSignal.timeout(30_000)
    })
  } catch (error) {
    throw failure(`no answer (${(error as Error).message})`, error)
  }
  const text = await response.text()
  if (!response.ok) {
    throw failure(`HTTP ${response.status} ${text.slice(0, 200)}`)
  }
  let body: TokenResponse
  try {
    body = JSON.parse(text) as TokenResponse
  } catch (error) {
    throw failure('the answer is not JSON', error)
  }
  if (typeof body.access_token !== 'string' || body.access_token === '') {
    throw failure('the answer has no access_token')
  }
  // Without expires_in the token's lifetime is unknown: take a new one every minute.
  const expiresInSecs = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60
  return { accessToken: body.access_token, expiresInSecs }
}
