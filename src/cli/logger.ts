/**
 * Logs go to stderr (stdout carries results, e.g. `--json`): JSON lines from pino when stderr
 * is not a terminal (cron, Kubernetes, log shippers), short human lines on a terminal.
 *
 * pino is loaded by the first line written at the logger's level, not when the logger is made:
 * with the built-ins it brings (worker_threads, assert) it cost ~6 ms of CPU before a backup's
 * first Fetch or a restore's first Produce (docs/benchmarks.md, "Start-up"), and a run at
 * `--log-level warn` that meets nothing to warn about writes no line at all.
 */
import { createRequire } from 'node:module'
import type { Logger, pino as Pino } from 'pino'

export type LogLevel = 'error' | 'warn' | 'info' | 'debug'

/** The logging calls kafka-backup makes, with pino's arguments: `log.warn(context, message)` or `log.warn(message)`. */
type LogMethod = (contextOrMessage: object | string | undefined, message?: string) => void
export type Log = Record<LogLevel, LogMethod>

const levelValues: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 }

const levelNames: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal'
}

function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

/** Turns pino's JSON lines into `warn  message key=value` lines. */
const humanStream = {
  write(line: string): void {
    const {
      level,
      msg,
      time: _time,
      pid: _pid,
      hostname: _hostname,
      ...context
    } = JSON.parse(line) as Record<string, unknown>
    const fields = Object.entries(context)
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value, replacer)}`)
      .join(' ')
    process.stderr.write(`${(levelNames[level as number] ?? 'info').padEnd(5)} ${msg}${fields ? `  ${fields}` : ''}\n`)
  }
}

// The CLI's bundle points this at pino bundled in a file of its own (scripts/bundle-cli.ts),
// evaluated by this call only.
const loadPackage = createRequire(import.meta.url)

function pinoLogger(level: LogLevel, human: boolean): Logger {
  const { pino } = loadPackage('pino') as { pino: typeof Pino }
  return pino(
    {
      level,
      base: undefined,
      serializers: { err: pino.stdSerializers.err },
      formatters: { level: (_label, number) => ({ level: number }) }
    },
    human ? humanStream : pino.destination({ fd: 2, sync: true })
  )
}

export function createLogger(level: LogLevel, human = Boolean(process.stderr.isTTY)): Log {
  let logger: Logger | undefined
  const method = (name: LogLevel): LogMethod =>
    levelValues[name] < levelValues[level]
      ? () => {}
      : (contextOrMessage, message) => {
          logger ??= pinoLogger(level, human)
          if (typeof contextOrMessage === 'string') {
            logger[name](contextOrMessage)
          } else {
            logger[name](contextOrMessage, message)
          }
        }
  return { error: method('error'), warn: method('warn'), info: method('info'), debug: method('debug') }
}
