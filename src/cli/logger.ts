/**
 * Logs go to stderr (stdout carries results, e.g. `--json`): JSON lines from pino when stderr
 * is not a terminal (cron, Kubernetes, log shippers), short human lines on a terminal.
 */
import { type Logger, pino } from 'pino'

export type LogLevel = 'error' | 'warn' | 'info' | 'debug'

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

export function createLogger(level: LogLevel, human = Boolean(process.stderr.isTTY)): Logger {
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
