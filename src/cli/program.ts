/**
 * The `kafka-backup` program: its options, help and commands.
 *
 * Start-up time is the module graph: the protocol library, the engines, the config schema and
 * the logger cost hundreds of milliseconds and ~80 MiB before any work (docs/benchmarks.md,
 * "Start-up"). So this file imports commander alone and loads only the module of the command
 * named on the command line; the other commands appear in the help as their name and
 * description from the table below. `--help` and `--version` load no command module at all.
 */
import { Command, Help, Option } from 'commander'
import { toolVersion } from '../version.ts'

interface CommandEntry {
  /** The first line of the command's help; test/cli/program.test.ts checks it equals the module's. */
  description: string
  load(): Promise<Command>
}

export const commands: Record<string, CommandEntry> = {
  backup: {
    description: 'Back up Kafka topics to storage (one-shot, or continuous with backup.continuous: true).',
    load: async () => (await import('./backup.ts')).backupCommand()
  },
  restore: {
    description: 'Restore a backup into a Kafka cluster: whole, to a point in time, remapped, with consumer offsets.',
    load: async () => (await import('./restore.ts')).restoreCommand()
  },
  list: {
    description: 'List the backups under a storage location.',
    load: async () => (await import('./inspect.ts')).listCommand()
  },
  describe: {
    description: 'Describe a backup: topics, partitions, offset and time ranges, sizes.',
    load: async () => (await import('./inspect.ts')).describeCommand()
  },
  validate: {
    description: 'Check a backup: manifest, indexes and segments agree, offsets continue, gaps reported.',
    load: async () => (await import('./inspect.ts')).validateCommand()
  },
  status: {
    description: 'Show the progress per partition of a running or finished backup and its restores.',
    load: async () => (await import('./status.ts')).statusCommand()
  },
  prune: {
    description: 'Delete backed-up segments older than a retention window; every restore point inside it stays exact.',
    load: async () => (await import('./prune.ts')).pruneCommand()
  },
  report: {
    description: 'Compare a backup (or a restore) with the cluster, per partition, and write a signed JSON report.',
    load: async () => (await import('./report.ts')).reportCommand()
  },
  'verify-report': {
    description: 'Check a signed report: the signature against a trusted public key, and its contents.',
    load: async () => (await import('./report.ts')).verifyReportCommand()
  },
  offsets: {
    description: 'Consumer-group offsets after a restore: plan, apply (with a snapshot), roll back.',
    load: async () => (await import('./offsets.ts')).offsetsCommand()
  },
  'offset-map': {
    description: 'Print how source offsets map to restored offsets, per restore of a backup.',
    load: async () => (await import('./inspect.ts')).offsetMapCommand()
  }
}

/**
 * The command that `args` (the arguments after the script) runs, or whose help `help <command>`
 * asks for: the first operand after the program's own options, read as commander reads them.
 */
export function commandNameIn(program: Command, args: string[]): string | undefined {
  let index = 0
  while (index < args.length) {
    const arg = args[index++] as string
    if (!arg.startsWith('-')) {
      return arg === 'help' ? args[index] : arg
    }
    if (program.options.find(option => option.long === arg || option.short === arg)?.required) {
      index++
    }
  }
  return undefined
}

/** The program with every command in its help and the module of the command in `args` loaded. */
export async function createProgram(args: string[]): Promise<Command> {
  const described = new Set<Command>()
  const program = new Command('kafka-backup')
    .description('Back up Apache Kafka topics to a filesystem or object storage and restore them byte for byte.')
    .version(toolVersion)
    .addOption(
      new Option('--log-level <level>', 'log verbosity').choices(['error', 'warn', 'info', 'debug']).default('info')
    )
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureHelp({
      // Every command has options; a described-only command has none loaded to show it.
      subcommandTerm: command =>
        described.has(command) ? `${command.name()} [options]` : Help.prototype.subcommandTerm(command)
    })
    .addHelpText(
      'after',
      `
Examples:
  kafka-backup backup --config backup.yaml
  kafka-backup describe --path /backups --backup-id nightly
  kafka-backup restore --config restore.yaml --time-end 2026-11-26T09:59:59Z
  kafka-backup validate --path /backups --backup-id nightly --deep`
    )
  const wanted = commandNameIn(program, args)
  for (const [name, entry] of Object.entries(commands)) {
    if (name === wanted) {
      program.addCommand((await entry.load()).exitOverride())
    } else {
      const command = new Command(name).description(entry.description)
      described.add(command)
      program.addCommand(command)
    }
  }
  return program
}
