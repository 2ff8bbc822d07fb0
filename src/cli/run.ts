/**
 * The wiring `backup` and `restore` share: their common flags, the config with the flags laid
 * over it, the storage and cluster to open, the metrics endpoint, the progress bar, the summary
 * on stdout, SIGINT/SIGTERM and the exit code of a run stopped before its end. Each command
 * only builds its engine and prints its own summary.
 */
import { constants } from 'node:os'
import { Command } from 'commander'
import type { Registry } from 'prom-client'
import type { ConfigOverrides } from '../config/load.ts'
import type { Config, MetricsConfig } from '../config/schema.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { connectCluster } from '../kafka/connect.ts'
import { locationHelp } from '../storage/backends.ts'
import { openStorage } from '../storage/open.ts'
import type { Storage } from '../storage/storage.ts'
import { loadModeConfig, loggerFor } from './context.ts'
import type { Log } from './logger.ts'
import { printJson } from './output.ts'
import { type ProgressSnapshot, startProgress } from './progress.ts'

/** The flags both commands take (restore adds its own to these). */
export interface RunFlags {
  config: string
  backupId?: string
  bootstrapServers?: string
  topics?: string
  path?: string
  json?: boolean
}

type Mode = 'backup' | 'restore'
type ModeConfig<M extends Mode> = Extract<Config, { mode: M }>

/** The command with the flags both take; the caller adds its own, then `--json`. */
export function runCommand(mode: Mode, description: string): Command {
  const cluster = mode === 'backup' ? 'source' : 'target'
  const topics = mode === 'backup' ? 'source' : 'restore'
  return new Command(mode)
    .description(description)
    .requiredOption('-c, --config <file>', `YAML config with mode: ${mode}`)
    .option('--backup-id <id>', 'override backup_id')
    .option('--bootstrap-servers <list>', `override ${cluster}.bootstrap_servers (comma-separated host:port)`)
    .option('--topics <list>', `override ${topics}.topics.include (comma-separated names or * patterns)`)
    .option('--path <location>', `override storage: ${locationHelp}`)
}

/** What a command hands the shared run: its engine, seen through what the run needs of it. */
export interface EngineRun<Summary extends { status: string }> {
  run(): Promise<Summary>
  progress(): ProgressSnapshot
  /** Registers the engine's metrics on the run's endpoint (only called when metrics are enabled). */
  observe(metrics: RunMetrics): void
  printSummary(summary: Summary): void
}

/** What the shared run opened, for the command to build its engine on. */
export interface RunContext<M extends Mode> {
  config: ModeConfig<M>
  storage: Storage
  cluster: KafkaCluster
  signal: AbortSignal
  onWarning(message: string, context?: object): void
  /** Closed with the run's own storage and cluster. */
  closeWithRun(resource: { close(): Promise<void> }): void
}

export interface RunSpec<M extends Mode, Summary extends { status: string }> {
  command: Command
  mode: M
  flags: RunFlags
  /** The command's own overrides beyond the flags both commands take. */
  overrides?: ConfigOverrides
  /** A dry run starts no metrics endpoint and draws no progress bar. */
  dryRun?(config: ModeConfig<M>): boolean
  /** The warning for a run stopped by a signal before its end; undefined when that is its normal end. */
  stoppedWarning(config: ModeConfig<M>): string | undefined
  engine(context: RunContext<M>): Promise<EngineRun<Summary>>
}

/**
 * Runs a backup or restore: loads the config (flags over the file), opens storage and the
 * cluster, serves metrics, shows progress, prints the summary (JSON with --json) and sets the
 * exit code of a run a signal stopped (130/143), closing everything it opened however it ends.
 */
export async function runEngine<M extends Mode, Summary extends { status: string }>(
  spec: RunSpec<M, Summary>
): Promise<void> {
  const { flags } = spec
  const log = loggerFor(spec.command)
  const config = await loadModeConfig(
    flags.config,
    spec.mode,
    {
      backup_id: flags.backupId,
      bootstrap_servers: flags.bootstrapServers,
      topics: flags.topics,
      path: flags.path,
      ...spec.overrides
    },
    log
  )
  const dryRun = spec.dryRun?.(config) ?? false
  const storage = await openStorage(config.storage)
  // Widened to the union, where `mode` tells TypeScript which section the config has.
  const section: Config = config
  const cluster = connectCluster(section.mode === 'backup' ? section.source : section.target)
  const stop = stopSignal(log)
  const resources: Array<{ close(): Promise<void> }> = []
  let metrics: RunMetrics | undefined
  let stopProgress = () => {}
  try {
    metrics = dryRun ? undefined : await startMetrics(config.metrics, log)
    const engine = await spec.engine({
      config,
      storage,
      cluster,
      signal: stop.signal,
      onWarning: (message, context) => log.warn(context, message),
      closeWithRun: resource => resources.push(resource)
    })
    if (metrics) {
      engine.observe(metrics)
    }
    stopProgress = startProgress(
      `${spec.mode} ${config.backup_id}`,
      () => engine.progress(),
      Boolean(process.stderr.isTTY) && !flags.json && !dryRun
    )
    const summary = await engine.run()
    stopProgress()
    if (flags.json) {
      printJson(summary)
    } else {
      engine.printSummary(summary)
    }
    const warning = summary.status === 'stopped' ? spec.stoppedWarning(config) : undefined
    if (warning) {
      log.warn(warning)
      process.exitCode = stop.exitCode()
    }
  } finally {
    await metrics?.finish(stop.signal)
    stopProgress()
    stop.dispose()
    await cluster.close()
    await storage.close()
    for (const resource of resources) {
      await resource.close()
    }
  }
}

/**
 * An AbortSignal for SIGINT/SIGTERM: the first signal asks the work to stop cleanly (flush,
 * checkpoint); a second one exits at once. `exitCode` is the shell's code for the signal that
 * stopped the run (130 for SIGINT, 143 for SIGTERM), for runs that end before their work is done.
 */
export function stopSignal(log: Log): { signal: AbortSignal; exitCode: () => number; dispose: () => void } {
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
export async function startMetrics(config: MetricsConfig, log: Log): Promise<RunMetrics | undefined> {
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
