/**
 * A small OAuth 2 authorization server on loopback for the OAUTHBEARER tests: `/jwks` serves
 * the public key the broker validates tokens with, `/token` hands out RS256-signed JWTs for the
 * client-credentials grant (form body or HTTP Basic), signed with jose.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

export const oauthIssuer = 'kafka-backup-test-issuer'
export const oauthAudience = 'kafka'

export interface OAuthServer {
  jwksUrl: string
  tokenUrl: string
  /** Tokens issued so far, per client id. */
  issued: Map<string, number>
  close(): Promise<void>
}

export interface OAuthServerOptions {
  /** Client id -> its secret and the audience its tokens name (default: `oauthAudience`; another one makes the broker reject them). */
  clients: Record<string, { secret: string; audience?: string }>
  tokenLifetimeSecs: number
}

function credentialsOf(authorization: string | undefined, form: URLSearchParams): [string, string] {
  if (authorization?.startsWith('Basic ')) {
    const [id = '', secret = ''] = Buffer.from(authorization.slice(6), 'base64').toString('utf8').split(':')
    return [decodeURIComponent(id), decodeURIComponent(secret)]
  }
  return [form.get('client_id') ?? '', form.get('client_secret') ?? '']
}

export async function startOAuthServer(options: OAuthServerOptions): Promise<OAuthServer> {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' }
  const issued = new Map<string, number>()
  const server: Server = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8').on('data', chunk => {
      body += chunk
    })
    request.on('end', async () => {
      if (request.url === '/jwks') {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }))
        return
      }
      if (request.url !== '/token' || request.method !== 'POST') {
        response.writeHead(404).end()
        return
      }
      const form = new URLSearchParams(body)
      const [clientId, secret] = credentialsOf(request.headers.authorization, form)
      if (form.get('grant_type') !== 'client_credentials' || options.clients[clientId]?.secret !== secret) {
        response.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_client' }))
        return
      }
      const token = await new SignJWT({ scope: form.get('scope') ?? '' })
        .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
        .setSubject(clientId)
        .setIssuer(oauthIssuer)
        .setAudience(options.clients[clientId]?.audience ?? oauthAudience)
        .setIssuedAt()
        .setExpirationTime(`${options.tokenLifetimeSecs}s`)
        .sign(privateKey)
      issued.set(clientId, (issued.get(clientId) ?? 0) + 1)
      response
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: options.tokenLifetimeSecs }))
    })
  })
  await new Promise<void>(done => server.listen(0, '127.0.0.1', done))
  const { port } = server.address() as AddressInfo
  return {
    jwksUrl: `http://127.0.0.1:${port}/jwks`,
    tokenUrl: `http://127.0.0.1:${port}/token`,
    issued,
    close: () => new Promise(done => server.close(() => done()))
  }
}
