#!/usr/bin/env node
/** The `kafka-backup` command: a thin shell over the library API in src/index.ts. */
import { readFileSync } from 'node:fs'
import { Command } from 'commander'

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string
}

export function createProgram(): Command {
  return new Command('kafka-backup')
    .description('Back up Apache Kafka topics to a filesystem or object storage and restore them.')
    .version(version)
}

await createProgram().parseAsync(process.argv)
