/** What every command shares: the global options, the logger, config loading, signals. */
import { constants } from 'node:os'
import type { Command } from 'commander'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { type ConfigOverrides, loadConfig } from '../config/load.ts'
import type { Config, MetricsConfig } from '../config/schema.ts'
import { BackupError } from '../errors.ts'
import { createLogger, type LogLevel } from './logger.ts'

export interface GlobalOptions {
  logLevel: LogLevel
  debug: boolean
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions
}

export function loggerFor(command: Command): Logger {
  return createLogger(globalOptions(command).logLevel)
}

export async function loadModeConfig<M extends Config['mode']>(
  file: string,
  mode: M,
  overrides: ConfigOverrides,
  log: Logger
): Promise<Extract<Config, { mode: M }>> {
  const config = await loadConfig(file, overrides, {
    onWarning: warning => log.warn({ key: warning.path }, warning.message)
  })
  if (config.mode !== mode) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${file}: mode is ${config.mode}, but \`kafka-backup ${mode}\` needs a config with mode: ${mode}`,
      { file, path: 'mode', expected: mode, found: config.mode }
    )
  }
  return config as Extract<Config, { mode: M }>
}

/**
 * An AbortSignal for SIGINT/SIGTERM: the first signal asks the work to stop cleanly (flush,
 * checkpoint); a second one exits at once. `exitCode` is the shell's code for the signal that
 * stopped the run (130 for SIGINT, 143 for SIGTERM), for runs that end before their work is done.
 */
export function stopSignal(log: Logger): { signal: AbortSignal; exitCode: () => number; dispose: () => void } {
  const controller = new AbortController()
  let exitCode = 0
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.warn(`${name} again: exiting without a final checkpoint`)
      process.exit(128 + constants.signals[name])
    }
    log.info(`${name}: stopping after the current batches are durable (send it again to exit at once)`)
    exitCode = 128 + constants.signals[name]
    controller.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return {
    signal: controller.signal,
    exitCode: () => exitCode,
    dispose: () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}

export interface RunMetrics {
  registry: Registry
  /** The metrics module, loaded only when metrics are enabled (prom-client costs ~19 MiB). */
  module: typeof import('../metrics/registry.ts')
  /** Call when the run ends: keeps the endpoint up for metrics.keep_alive_seconds, then closes it. */
  finish(signal: AbortSignal): Promise<void>
}

/** The Prometheus endpoint of a run when `metrics.enabled`, or undefined. */
export async function startMetrics(config: MetricsConfig, log: Logger): Promise<RunMetrics | undefined> {
  if (!config.enabled) {
    return undefined
  }
  const module = await import('../metrics/registry.ts')
  const { startMetricsServer } = await import('../metrics/server.ts')
  const registry = module.createRegistry()
  const server = await startMetricsServer(registry, config.host, config.port)
  log.info({ port: server.port }, `metrics on http://${config.host}:${server.port}/metrics`)
  return {
    registry,
    module,
    async finish(signal) {
      server.status = 'finished'
      if (config.keep_alive_seconds > 0 && !signal.aborted) {
        log.info(`keeping the metrics endpoint up for ${config.keep_alive_seconds} s`)
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, config.keep_alive_seconds * 1000)
          signal.addEventListener('abort', () => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
      await server.close()
    }
  }
}
