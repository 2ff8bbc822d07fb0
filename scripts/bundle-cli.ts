/**
 * `npm run build`, second step: the `kafka-backup` command as a few bundled files in dist/
 * (dist/kafka-backup.js and its dist/kafka-backup-*.js chunks), beside the per-file tsc output
 * that the library API (dist/index.js) keeps.
 *
 * Why: before its first Fetch a backup loads ~260 modules (ours, zod with its 64 locales, yaml,
 * pino), and Node's loader spends ~0.3 ms resolving, reading and linking each one, more than
 * their code costs to run (docs/benchmarks.md, "Start-up"). A command's code in one chunk takes
 * that away. Splitting keeps what src/cli/program.ts does by hand: each command is its own
 * chunk, loaded only when it runs.
 *
 * Left outside the bundle, loaded from node_modules as before: the native codecs (they load a
 * .node file next to their own), the storage SDKs and prom-client (imported only for their
 * backend and for metrics), cli-progress (only on a terminal), pino (only by the first log line
 * at the run's level, src/cli/logger.ts).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { build, type Plugin } from 'esbuild'

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

/** Bundles src/cli/main.ts into `outDir` (a dist/ folder: src/version.ts reads ../package.json from there). */
export async function bundleCli(outDir: string): Promise<void> {
  // Chunk names carry a hash: without this, chunks of earlier builds would pile up in dist/.
  for (const file of existsSync(outDir) ? readdirSync(outDir) : []) {
    if (file.startsWith('kafka-backup')) {
      rmSync(join(outDir, file))
    }
  }
  await build({
    entryPoints: { 'kafka-backup': `${repoRoot}/src/cli/main.ts` },
    outdir: outDir,
    chunkNames: 'kafka-backup-[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    external: bundleExternals,
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [withoutZodLocales, pinoFromItsOwnFile],
    // pino and commander are CommonJS and require() Node's built-ins, which an ES module has no
    // `require` for.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
    }
  })
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
