/**
 * `npm run build`, second step: the `kafka-backup` command as a few bundled files in dist/
 * (dist/kafka-backup.js and the dist/kafka-backup-*.js files it loads), beside the per-file tsc
 * output that the library API (dist/index.js) keeps.
 *
 * Why: before its first Fetch a backup loads ~260 modules (ours, zod with its 64 locales, yaml,
 * pino), and Node's loader spends ~0.3 ms resolving, reading and linking each one, more than
 * their code costs to run (docs/benchmarks.md, "Start-up"). A command's code in a few files
 * takes that away. Each command module is loaded only when it runs, as src/cli/program.ts does by
 * hand, and is bundled apart from the program:
 *
 * - the program (src/cli/main.ts, program.ts, output.ts): what `--help` and `--version` load;
 * - `backup` and `restore` each in a bundle of their own, the other commands in one they share:
 *   one esbuild build for all commands splits the code they share into a chunk per set of
 *   commands that use it, so a restore loaded 31 files before its first Produce; a bundle of its
 *   own loads 16, ~5% less CPU to the first Produce (docs/benchmarks.md, "Start-up"). The price
 *   is the shared code (zod, yaml, the config, the catalogue) three times in dist/;
 * - commander and src/errors.ts in files of their own that every bundle imports, because the
 *   program checks `instanceof CommanderError` and `instanceof BackupError` on what a command
 *   throws: two copies of a class would fail those checks.
 *
 * Left outside the bundles, loaded from node_modules as before: the native codecs (they load a
 * .node file next to their own), the storage SDKs and prom-client (imported only for their
 * backend and for metrics), cli-progress (only on a terminal), pino (only by the first log line
 * at the run's level, src/cli/logger.ts).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { type BuildOptions, build, type Plugin } from 'esbuild'

const repoRoot = resolve(import.meta.dirname, '..')

const bundleExternals = [
  '@node-rs/crc32',
  'lz4-napi',
  'snappy',
  '@aws-sdk/*',
  '@azure/*',
  '@google-cloud/*',
  'prom-client',
  'cli-progress'
]

/**
 * zod exports its 64 message translations as `z.locales` (a third of its size in the bundle);
 * we never switch language (the English messages come from zod's schemas module on their own)
 * and never read `z.locales`, so the bundle gets an empty module in its place.
 */
const withoutZodLocales: Plugin = {
  name: 'without-zod-locales',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, args =>
      /[/\\]node_modules[/\\]zod[/\\]/.test(args.importer) ? { path: 'zod-locales', namespace: 'empty' } : undefined
    )
    build.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: '', loader: 'js' }))
  }
}

/**
 * pino as one file of its own beside the chunks: src/cli/logger.ts requires it at the first log
 * line at the run's level (`loadPackage('pino')`, pointed here at that file), so a run that logs
 * nothing never evaluates it, and one that does loads one file (~8 ms of CPU) instead of pino's
 * files in node_modules (~20 ms).
 */
const pinoFile = 'kafka-backup-pino.cjs'
const pinoFromItsOwnFile: Plugin = {
  name: 'pino-from-its-own-file',
  setup(build) {
    build.onLoad({ filter: /[/\\]src[/\\]cli[/\\]logger\.ts$/ }, async args => {
      const source = await readFile(args.path, 'utf8')
      const bundled = source.replace("loadPackage('pino')", `loadPackage('./${pinoFile}')`)
      if (bundled === source) {
        throw new Error(`${args.path} no longer loads pino with loadPackage('pino'): update scripts/bundle-cli.ts`)
      }
      return { contents: bundled, loader: 'ts' }
    })
  }
}

/** The files every bundle imports instead of its own copy (see the top of this file). */
const sharedFiles = { commander: 'kafka-backup-commander.js', errors: 'kafka-backup-errors.js' }
const errorsModule = join(repoRoot, 'src', 'errors.ts')

const sharedModules: Plugin = {
  name: 'shared-modules',
  setup(build) {
    build.onResolve({ filter: /^commander$/ }, () => ({ path: `./${sharedFiles.commander}`, external: true }))
    build.onResolve({ filter: /[/\\]errors\.ts$/ }, args =>
      resolve(args.resolveDir, args.path) === errorsModule
        ? { path: `./${sharedFiles.errors}`, external: true }
        : undefined
    )
  }
}

/** The command modules with a bundle of their own (by file name); the others share one. */
const commandsApart = ['backup.ts', 'restore.ts']

/** The bundle of a command module: `kafka-backup-command-backup.js`, `kafka-backup-command-inspect.js`. */
function commandFile(module: string): string {
  return `kafka-backup-command-${basename(module, '.ts')}.js`
}

/**
 * In the program's build, the command modules that src/cli/program.ts imports on demand become
 * imports of their bundles, and are collected into `commandModules` for the builds that make them.
 */
function commandsOutside(commandModules: Set<string>): Plugin {
  return {
    name: 'commands-outside',
    setup(build) {
      build.onResolve({ filter: /^\.\/[\w-]+\.ts$/ }, args => {
        if (args.kind !== 'dynamic-import' || !args.importer.endsWith(join('src', 'cli', 'program.ts'))) {
          return undefined
        }
        commandModules.add(resolve(args.resolveDir, args.path))
        return { path: `./${commandFile(args.path)}`, external: true }
      })
    }
  }
}

/** Bundles src/cli/main.ts into `outDir` (a dist/ folder: src/version.ts reads ../package.json from there). */
export async function bundleCli(outDir: string): Promise<void> {
  // Chunk names carry a hash: without this, chunks of earlier builds would pile up in dist/.
  for (const file of existsSync(outDir) ? readdirSync(outDir) : []) {
    if (file.startsWith('kafka-backup')) {
      rmSync(join(outDir, file))
    }
  }
  const esm: BuildOptions = {
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    external: bundleExternals,
    sourcemap: 'linked',
    logLevel: 'warning',
    // yaml is CommonJS and require()s Node's built-ins, which an ES module has no `require` for.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
    }
  }
  const commandModules = new Set<string>()
  await build({
    ...esm,
    entryPoints: { 'kafka-backup': `${repoRoot}/src/cli/main.ts` },
    splitting: true,
    chunkNames: 'kafka-backup-[name]-[hash]',
    plugins: [sharedModules, commandsOutside(commandModules)]
  })
  if (commandModules.size === 0) {
    throw new Error(
      "src/cli/program.ts no longer imports its commands with import('./x.ts'): update scripts/bundle-cli.ts"
    )
  }
  const apart = [...commandModules].filter(module => commandsApart.includes(basename(module)))
  const together = [...commandModules].filter(module => !apart.includes(module))
  for (const [name, modules] of [
    ...apart.map(module => [basename(module, '.ts'), [module]] as const),
    ['commands', together] as const
  ]) {
    await build({
      ...esm,
      entryPoints: Object.fromEntries(modules.map(module => [commandFile(module).replace(/\.js$/, ''), module])),
      splitting: true,
      chunkNames: `kafka-backup-${name}-[name]-[hash]`,
      plugins: [withoutZodLocales, pinoFromItsOwnFile, sharedModules]
    })
  }
  await build({
    ...esm,
    stdin: { contents: "export * from 'commander'", resolveDir: repoRoot, loader: 'js' },
    outdir: undefined,
    outfile: join(outDir, sharedFiles.commander)
  })
  await build({ ...esm, entryPoints: [errorsModule], outdir: undefined, outfile: join(outDir, sharedFiles.errors) })
  await build({
    entryPoints: { [pinoFile.replace(/\.cjs$/, '')]: 'pino' },
    outdir: outDir,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node22',
    logLevel: 'warning'
  })
}

if (import.meta.main) {
  await bundleCli(resolve(process.argv[2] ?? `${repoRoot}/dist`))
}
