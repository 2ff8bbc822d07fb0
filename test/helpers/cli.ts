/** Runs the real `kafka-backup` CLI in a child process, as operators do. */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { bootstrapServers } from './kafka.ts'

const cliPath = resolve(import.meta.dirname, '../../src/cli/main.ts')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export function startCli(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [cliPath, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
}

export function finished(child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', chunk => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  return new Promise(done => child.on('close', (code, signal) => done({ code, signal, stdout, stderr })))
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return finished(startCli(args, env))
}

/** Writes a config file into a fresh temporary folder and returns its path. */
export function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kafka-backup-config-')), 'config.yaml')
  writeFileSync(file, yaml)
  return file
}

/** A backup config for one topic of the run's broker into a folder; `extra` is appended YAML. */
export function backupYaml(backupId: string, topic: string, path: string, extra = ''): string {
  return `mode: backup
backup_id: ${backupId}
source:
  bootstrap_servers: ${bootstrapServers()}
  topics:
    include: [${topic}]
storage:
  backend: filesystem
  path: ${path}
${extra}`
}

/** A restore config of the backup `test-backup` in a folder, `topic` restored as `target`; `extra` is YAML under `restore:`. */
export function restoreYaml(topic: string, target: string, path: string, extra = ''): string {
  return `mode: restore
backup_id: test-backup
target:
  bootstrap_servers: ${bootstrapServers()}
restore:
  topic_mapping:
    ${topic}: ${target}
${extra}storage:
  backend: filesystem
  path: ${path}
`
}
