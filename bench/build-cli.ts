/**
 * The CLI as users run it, for the benchmarks: built as `npm run build` builds it (tsc, then
 * scripts/bundle-cli.ts) in a private folder (so a stale dist/ is never measured). Running the .ts sources costs Node's type stripping
 * (amaro, a WASM module) about 30 MB of RSS and start-up time that the published package does
 * not have. BENCH_CLI=src runs the sources instead; BENCH_CLI=PATH.js runs a CLI built elsewhere
 * (another checkout's dist/kafka-backup.js, or its dist/cli/main.js before the bundle), to
 * compare before and after a change in one run.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { stripTypeScriptTypes } from 'node:module'
import { basename, dirname, join, resolve } from 'node:path'

const repoRoot = resolve(import.meta.dirname, '..')

export function buildCli(name: string, log: (line: string) => void): { cliPath: string; how: string } {
  const sources = { cliPath: join(repoRoot, 'src', 'cli', 'main.ts'), how: 'src/cli/main.ts (type stripping)' }
  const chosen = process.env.BENCH_CLI
  if (chosen === 'src') {
    return sources
  }
  if (chosen?.endsWith('.js')) {
    return { cliPath: resolve(chosen), how: `${chosen} (BENCH_CLI)` }
  }
  const buildRoot = join(repoRoot, '.cache', name)
  rmSync(join(buildRoot, 'dist'), { recursive: true, force: true })
  mkdirSync(buildRoot, { recursive: true })
  // src/version.ts reads ../package.json next to the build, as in the published package.
  copyFileSync(join(repoRoot, 'package.json'), join(buildRoot, 'package.json'))
  const tsc = spawnSync(
    process.execPath,
    [
      join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(repoRoot, 'tsconfig.build.json'),
      '--outDir',
      join(buildRoot, 'dist'),
      '--declaration',
      'false',
      '--sourceMap',
      'false'
    ],
    { encoding: 'utf8', cwd: repoRoot }
  )
  if (tsc.status !== 0) {
    log(`could not compile src/ (${tsc.stdout}${tsc.stderr}); measuring the CLI from src/ instead`)
    return sources
  }
  // The command as `npm run build` makes it: bundled by scripts/bundle-cli.ts.
  const bundle = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'bundle-cli.ts'), join(buildRoot, 'dist')], {
    encoding: 'utf8',
    cwd: repoRoot
  })
  if (bundle.status !== 0) {
    log(`could not bundle the CLI (${bundle.stdout}${bundle.stderr}); measuring the CLI from src/ instead`)
    return sources
  }
  return {
    cliPath: join(buildRoot, 'dist', 'kafka-backup.js'),
    how: 'built by `npm run build` (tsc, then bundled by scripts/bundle-cli.ts)'
  }
}

/**
 * A bench preload (bench/peak-rss.ts, bench/first-request.ts) as JavaScript in .cache/NAME:
 * preloading the .ts file itself would load Node's type stripper into the measured process,
 * 16 MiB of RSS and tens of milliseconds that the CLI does not have.
 */
export function compiledPreload(name: string, file: string): string {
  const out = join(repoRoot, '.cache', name, basename(file).replace(/\.ts$/, '.mjs'))
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, stripTypeScriptTypes(readFileSync(join(repoRoot, 'bench', file), 'utf8')))
  return out
}
