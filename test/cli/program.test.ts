import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, test } from 'node:test'
import { commandNameIn, commands, createProgram } from '../../src/cli/program.ts'

const mainPath = resolve(import.meta.dirname, '../../src/cli/main.ts')
const srcUrl = new URL('../../src/', import.meta.url).href

/** Runs the CLI and returns the URLs of every module it loaded, in load order. */
async function modulesLoadedBy(args: string[]): Promise<{ code: number | null; urls: string[] }> {
  const out = join(mkdtempSync(join(tmpdir(), 'kafka-backup-modules-')), 'loaded.json')
  const hook = `import { registerHooks } from 'node:module'
import { writeFileSync } from 'node:fs'
const urls = []
registerHooks({ load(url, context, next) { urls.push(url); return next(url, context) } })
process.on('exit', () => writeFileSync(${JSON.stringify(out)}, JSON.stringify(urls)))`
  const child = spawn(
    process.execPath,
    ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, mainPath, ...args],
    { stdio: 'ignore' }
  )
  const code = await new Promise<number | null>(done => child.on('close', done))
  return { code, urls: JSON.parse(readFileSync(out, 'utf8')) as string[] }
}

function packagesIn(urls: string[]): Set<string> {
  return new Set(urls.flatMap(url => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []))
}

describe('the kafka-backup program', () => {
  test('describes every command in the help with the description its own module gives it', async () => {
    for (const [name, entry] of Object.entries(commands)) {
      const command = await entry.load()
      assert.equal(command.name(), name)
      assert.equal(command.description(), entry.description, name)
    }
  })

  test('finds the command after the global options, and the command that help asks about', async () => {
    const program = await createProgram(['--help'])
    assert.equal(commandNameIn(program, ['backup', '--config', 'x.yaml']), 'backup')
    assert.equal(commandNameIn(program, ['--log-level', 'debug', '--debug', 'restore', '-c', 'x']), 'restore')
    assert.equal(commandNameIn(program, ['--log-level=warn', 'list']), 'list')
    assert.equal(commandNameIn(program, ['help', 'validate']), 'validate')
    assert.equal(commandNameIn(program, ['--debug', 'help']), undefined)
    assert.equal(commandNameIn(program, ['--version']), undefined)
    assert.equal(commandNameIn(program, []), undefined)
  })

  test('--help and --version load commander and no command module', async () => {
    for (const args of [['--help'], ['--version'], ['help']]) {
      const { code, urls } = await modulesLoadedBy(args)
      assert.equal(code, 0, args.join(' '))
      assert.deepEqual([...packagesIn(urls)], ['commander'], args.join(' '))
      const own = urls.filter(url => url.startsWith(srcUrl)).map(url => url.slice(srcUrl.length))
      assert.deepEqual(own.sort(), ['cli/main.ts', 'cli/output.ts', 'cli/program.ts', 'errors.ts', 'version.ts'])
    }
  })

  test('list loads neither the protocol library, nor an object-store SDK, nor the metrics or progress modules', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'kafka-backup-empty-'))
    const { code, urls } = await modulesLoadedBy(['list', '--path', folder])
    assert.equal(code, 0)
    const packages = packagesIn(urls)
    for (const heavy of ['@platformatic/kafka', '@aws-sdk/client-s3', '@azure/storage-blob', '@google-cloud/storage']) {
      assert.equal(packages.has(heavy), false, heavy)
    }
    assert.equal(packages.has('prom-client'), false)
    assert.equal(packages.has('cli-progress'), false)
    assert.ok(packages.has('commander'))
  })

  test('no module under src/ imports @platformatic/kafka, and it is only a dev dependency', () => {
    // The CLI and the library entry run on our own protocol layer (src/kafka/wire); the
    // library stays for tests and benchmarks, as an independent client to check us against.
    const srcDir = resolve(import.meta.dirname, '../../src')
    const files = readdirSync(srcDir, { recursive: true, encoding: 'utf8' }).filter(f => f.endsWith('.ts'))
    assert.ok(files.length > 50, 'the walk found the sources')
    for (const file of files) {
      const text = readFileSync(join(srcDir, file), 'utf8')
      const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map(m => m[1])
      assert.ok(!specifiers.some(s => s?.startsWith('@platformatic/kafka')), `src/${file} imports @platformatic/kafka`)
    }
    const pkg = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../package.json'), 'utf8')) as {
      dependencies: Record<string, string>
      devDependencies: Record<string, string>
    }
    assert.equal(pkg.dependencies['@platformatic/kafka'], undefined)
    assert.ok(pkg.devDependencies['@platformatic/kafka'])
  })

  test('loads the module of the command that runs, and describes the others', async () => {
    const program = await createProgram(['--log-level', 'debug', 'list', '--path', '/tmp'])
    const list = program.commands.find(command => command.name() === 'list')
    assert.ok(list?.options.some(option => option.long === '--path'))
    const backup = program.commands.find(command => command.name() === 'backup')
    assert.deepEqual(backup?.options, [])
  })
})
