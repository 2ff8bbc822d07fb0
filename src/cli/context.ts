/** What every command shares: the global options, the logger, config loading. */
import type { Command } from 'commander'
import type { Logger } from 'pino'
import { type ConfigOverrides, loadConfig } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
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
