/** Serves `/metrics` (Prometheus text) and `/health` on metrics.host:metrics.port. */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { BackupError } from '../errors.ts'

export interface MetricsServer {
  port: number
  /** What `/health` reports; set to 'finished' after a one-shot run, while keep_alive_seconds lasts. */
  status: 'running' | 'finished'
  close(): Promise<void>
}

export async function startMetricsServer(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const state = { status: 'running' as MetricsServer['status'] }
  const server: Server = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    if (path === '/metrics') {
      try {
        const body = await registry.metrics()
        response.writeHead(200, { 'content-type': registry.contentType }).end(body)
      } catch (error) {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(String(error))
      }
    } else if (path === '/health') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: state.status }))
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', error =>
      reject(
        new BackupError('KB_CONFIG_INVALID', `metrics.port: cannot listen on ${host}:${port} (${error.message})`, {
          path: 'metrics.port',
          cause: error
        })
      )
    )
    server.listen(port, host, resolve)
  })
  return {
    port: (server.address() as AddressInfo).port,
    get status() {
      return state.status
    },
    set status(value) {
      state.status = value
    },
    close: () =>
      new Promise<void>(resolve => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
