/** What every command shares: the global options, the logger, config loading, the backup location. */

import type { Command } from 'commander'
import { type ConfigOverrides, loadConfig, storageFromLocation } from '../config/load.ts'
import { type Config, type StorageConfig, storageSchema } from '../config/schema.ts'
import type { KeyringSource } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { openStorage } from '../storage/open.ts'
import type { Storage } from '../storage/storage.ts'
import { createLogger, type Log, type LogLevel } from './logger.ts'

export interface GlobalOptions {
  logLevel: LogLevel
  debug: boolean
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions
}

export function loggerFor(command: Command): Log {
  return createLogger(globalOptions(command).logLevel)
}

export async function loadModeConfig<M extends Config['mode']>(
  file: string,
  mode: M,
  overrides: ConfigOverrides,
  log: Log
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

export interface LocationFlags {
  path?: string
  config?: string
  backupId?: string
}

export interface Location {
  storage: Storage
  backupId?: string
  /** A restore config's restore.state_storage, where its restores keep their state. */
  stateStorage?: StorageConfig
  /** The config's backup.encryption or restore.encryption: the keyring that reads its segments. */
  encryption?: KeyringSource
}

/**
 * The storage of `--path`, or of `--config` (with `--path` laid over it) and that config's
 * backup_id. With `needsBackupId`, a missing `--backup-id` is refused before anything is opened.
 */
export async function openLocation(
  flags: LocationFlags,
  log: Log,
  needsBackupId: true
): Promise<Location & { backupId: string }>
export async function openLocation(flags: LocationFlags, log: Log, needsBackupId?: false): Promise<Location>
export async function openLocation(flags: LocationFlags, log: Log, needsBackupId = false): Promise<Location> {
  if (flags.config) {
    const config = await loadConfig(flags.config, flags.path ? { path: flags.path } : {}, {
      onWarning: warning => log.debug({ key: warning.path }, warning.message)
    })
    return {
      storage: await openStorage(config.storage),
      backupId: flags.backupId ?? config.backup_id,
      stateStorage: config.mode === 'restore' ? config.restore.state_storage : undefined,
      encryption: config.mode === 'restore' ? config.restore.encryption : config.backup.encryption
    }
  }
  if (!flags.path) {
    throw new BackupError('KB_CONFIG_INVALID', 'say where the backups are: --path <location> or --config <file>', {
      path: '--path'
    })
  }
  if (needsBackupId && !flags.backupId) {
    throw new BackupError('KB_CONFIG_INVALID', 'which backup? give --backup-id <id> (or --config with a backup_id)', {
      path: '--backup-id'
    })
  }
  const parsed = storageSchema.safeParse(storageFromLocation(flags.path))
  if (!parsed.success) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `--path ${flags.path}: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
      {
        path: '--path'
      }
    )
  }
  return { storage: await openStorage(parsed.data), backupId: flags.backupId }
}
