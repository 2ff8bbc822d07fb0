/** Where the benchmarks publish their figures: docs/benchmarks.md, one section per benchmark. */
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const docPath = join(resolve(import.meta.dirname, '..'), 'docs', 'benchmarks.md')

/**
 * Prints `section` and, unless BENCH_NO_DOCS=1, puts it into docs/benchmarks.md in place of the
 * section that starts with `heading` (up to the next `## ` heading), or at the end when there is
 * none: the document shows what the last run of each benchmark measured.
 */
export function publishSection(heading: string, section: string, log: (line: string) => void): void {
  process.stdout.write(`${section}\n`)
  if (process.env.BENCH_NO_DOCS === '1') {
    return
  }
  let doc: string
  try {
    doc = readFileSync(docPath, 'utf8')
  } catch {
    doc = '# Benchmarks\n\nMeasured ceilings of the data path; each section names the command that produced it.\n\n'
  }
  const start = doc.indexOf(heading)
  if (start === -1) {
    doc = `${doc.trimEnd()}\n\n${section}`
  } else {
    const end = doc.indexOf('\n## ', start + 1)
    doc = `${doc.slice(0, start)}${section}${end === -1 ? '' : doc.slice(end)}`
  }
  writeFileSync(docPath, doc)
  log('written to docs/benchmarks.md')
}
