/**
 * Writes docs/config.md from the config schema (src/config/schema.ts).
 *
 *   node scripts/config-reference.ts           rewrite docs/config.md
 *   node scripts/config-reference.ts --check   exit 1 when docs/config.md is out of date
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { renderConfigReference } from '../src/config/reference.ts'

const target = fileURLToPath(new URL('../docs/config.md', import.meta.url))
const reference = renderConfigReference()

if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '')
  if (current !== reference) {
    process.stderr.write(`${target} is out of date: run node scripts/config-reference.ts\n`)
    process.exitCode = 1
  }
} else {
  await mkdir(fileURLToPath(new URL('../docs/', import.meta.url)), { recursive: true })
  await writeFile(target, reference)
  process.stdout.write(`wrote ${target}\n`)
}
