#!/usr/bin/env node
/** The `kafka-backup` command: a thin shell over the library API (src/index.ts). */
import { Command, CommanderError, Option } from 'commander'
import { toolVersion } from '../version.ts'
import { backupCommand } from './backup.ts'
import { describeCommand, listCommand, offsetMapCommand, validateCommand } from './inspect.ts'
import { errorJson, exitCodeOf, printJson } from './output.ts'
import { restoreCommand } from './restore.ts'

export function createProgram(): Command {
  const program = new Command('kafka-backup')
    .description('Back up Apache Kafka topics to a filesystem or object storage and restore them byte for byte.')
    .version(toolVersion)
    .addOption(
      new Option('--log-level <level>', 'log verbosity').choices(['error', 'warn', 'info', 'debug']).default('info')
    )
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup backup --config backup.yaml
  kafka-backup describe --path /backups --backup-id nightly
  kafka-backup restore --config restore.yaml --time-end 2026-11-26T09:59:59Z
  kafka-backup validate --path /backups --backup-id nightly --deep`
    )
  for (const command of [
    backupCommand(),
    restoreCommand(),
    listCommand(),
    describeCommand(),
    validateCommand(),
    offsetMapCommand()
  ]) {
    program.addCommand(command.exitOverride())
  }
  return program
}

// `kafka-backup list --json | head` closes stdout early: that is not an error.
process.stdout.on('error', error => {
  if ((error as NodeJS.ErrnoException).code === 'EPIPE') {
    process.exit(process.exitCode ?? 0)
  }
  throw error
})

const program = createProgram()
try {
  await program.parseAsync(process.argv)
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and --version end here with code 0; usage errors were already printed by commander.
    process.exitCode = error.exitCode === 0 ? 0 : 2
  } else {
    const options = program.opts<{ debug?: boolean }>()
    const wantsJson = process.argv.includes('--json')
    if (wantsJson) {
      printJson({ error: errorJson(error) })
    }
    const code = (error as { code?: string }).code ?? 'KB_INTERNAL'
    process.stderr.write(`kafka-backup: ${code}: ${(error as Error).message ?? String(error)}\n`)
    if (options.debug && error instanceof Error && error.stack) {
      process.stderr.write(`${error.stack}\n`)
    }
    process.exitCode = exitCodeOf(error)
  }
}
