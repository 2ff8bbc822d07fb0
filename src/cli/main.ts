#!/usr/bin/env node
/** The `kafka-backup` command: a thin shell over the library API (src/index.ts). */
import { enableCompileCache } from 'node:module'

// Before any other module loads (so the others are imported below, not at the top): a warm
// cache skips compiling them again, ~13% less start-up CPU for backup and restore
// (docs/benchmarks.md, "Start-up"). Node keeps the cache in the temporary folder and carries on
// without one where that cannot be written.
enableCompileCache()

const { CommanderError } = await import('commander')
const { errorJson, exitCodeOf, printJson } = await import('./output.ts')
const { createProgram } = await import('./program.ts')

// `kafka-backup list --json | head` closes stdout early: that is not an error.
process.stdout.on('error', error => {
  if ((error as NodeJS.ErrnoException).code === 'EPIPE') {
    process.exit(process.exitCode ?? 0)
  }
  throw error
})

const program = await createProgram(process.argv.slice(2))
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
