/**
 * The command as `npm run build` ships it: bundled by scripts/bundle-cli.ts into dist/. The
 * other tests run src/cli/main.ts; these run the bundle, where CommonJS dependencies, chunks
 * loaded on demand and the modules left outside it must all still be found.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, before, test } from 'node:test'
import { bundleCli } from '../../scripts/bundle-cli.ts'
import { tempStorage } from '../helpers/backup.ts'
import { backupYaml, type CliResult, restoreYaml, runCli, writeConfig } from '../helpers/cli.ts'
import { createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer, produceNumbered } from '../helpers/setup.ts'
import { contentOf, readTopicRecords } from '../helpers/topic.ts'

const repoRoot = resolve(import.meta.dirname, '../..')
const { cluster, producer } = clusterAndProducer()
let bundlePath = ''
let packageRoot = ''

before(async () => {
  // A package of its own: the bundle reads its version from ../package.json, as in dist/. Inside
  // the repository, so the dependencies left outside the bundle resolve from its node_modules.
  mkdirSync(join(repoRoot, '.cache'), { recursive: true })
  packageRoot = mkdtempSync(join(repoRoot, '.cache', 'bundle-'))
  copyFileSync(join(repoRoot, 'package.json'), join(packageRoot, 'package.json'))
  await bundleCli(join(packageRoot, 'dist'))
  bundlePath = join(packageRoot, 'dist', 'kafka-backup.js')
})
after(() => rmSync(packageRoot, { recursive: true, force: true }))

function runBundle(args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [bundlePath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', chunk => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  return new Promise(done => child.on('close', (code, signal) => done({ code, signal, stdout, stderr })))
}

test('the bundled command prints its version and the help of every command', async () => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }
  const versionRun = await runBundle(['--version'])
  assert.equal(versionRun.code, 0, versionRun.stderr)
  assert.equal(versionRun.stdout.trim(), version)
  const help = await runBundle(['--help'])
  assert.equal(help.code, 0, help.stderr)
  for (const command of ['backup', 'restore', 'list', 'describe', 'validate', 'offsets']) {
    assert.match(help.stdout, new RegExp(`\\n  ${command} `), command)
  }
  const backupHelp = await runBundle(['help', 'backup'])
  assert.equal(backupHelp.code, 0, backupHelp.stderr)
  assert.match(backupHelp.stdout, /--config <file>/)
})

test('the bundled command backs up and restores a topic record for record', async () => {
  const topic = uniqueTopic('bundle')
  await createTopic(cluster, topic, 1)
  await produceNumbered(producer, topic, 0, 0, 500, { valueBytes: 100 })
  const storage = tempStorage()
  const backup = await runBundle([
    'backup',
    '--config',
    writeConfig(backupYaml('test-backup', topic, storage.location)),
    '--json'
  ])
  assert.equal(backup.code, 0, backup.stderr)
  assert.equal(JSON.parse(backup.stdout).records, 500)

  const target = `${topic}-restored`
  const restore = await runBundle([
    'restore',
    '--config',
    writeConfig(restoreYaml(topic, target, storage.location)),
    '--json'
  ])
  assert.equal(restore.code, 0, restore.stderr)
  assert.deepEqual(
    contentOf(await readTopicRecords(cluster, target)),
    contentOf(await readTopicRecords(cluster, topic))
  )
})

test("a command's help and usage errors end as in the sources, though the command is a bundle of its own", async () => {
  // The program checks `instanceof CommanderError` on what a command's own parsing throws, and
  // `instanceof BackupError` on its errors: one copy of each class must serve every bundle.
  for (const args of [
    ['restore', '--help'],
    ['backup', '--config', 'x.yaml', '--bogus'],
    ['list', '--bogus'],
    ['restore', '--config', join(repoRoot, '.cache', 'no-such-config.yaml')]
  ]) {
    const bundled = await runBundle(args)
    const sources = await runCli(args)
    assert.equal(bundled.code, args.includes('--help') ? 0 : 2, `${args.join(' ')}: ${bundled.stderr}`)
    assert.deepEqual(bundled, sources, args.join(' '))
  }
})

test('the bundled command reports a bad config with the same messages as the sources', async () => {
  // zod's translations are left out of the bundle (scripts/bundle-cli.ts): its messages must not change.
  const config = writeConfig(`mode: backup
backup_id: 7
source:
  bootstrap_servers: [nope, 'broker:99999']
  topics:
    include: 5
storage:
  backend: s3
  bucket: 3
backup:
  segment_max_bytes: -4
  compression: br
  unknown_key: 1
`)
  const bundled = await runBundle(['backup', '--config', config, '--json'])
  const sources = await runCli(['backup', '--config', config, '--json'])
  assert.equal(bundled.code, 2, bundled.stderr)
  assert.match(bundled.stderr, /^kafka-backup: KB_CONFIG_INVALID: /)
  assert.ok(JSON.parse(bundled.stdout).error.issues.length >= 6, bundled.stdout)
  assert.deepEqual(bundled, sources)
})

test('the bundled command logs through pino, loaded by its first line, as the sources do', async () => {
  // A warning of the config (a key with no effect), then an error: the backup does not exist.
  const path = mkdtempSync(join(repoRoot, '.cache', 'bundle-empty-'))
  try {
    const config = writeConfig(
      restoreYaml('orders', 'orders-copy', path).replace('target:\n', 'target:\n  kafka_config:\n    linger.ms: 5\n')
    )
    const warning = (result: CliResult) => {
      const { level, key, msg } = JSON.parse(result.stderr.split('\n')[0]!) as Record<string, unknown>
      return { level, key, msg }
    }
    const bundled = await runBundle(['--log-level', 'warn', 'restore', '--config', config])
    const sources = await runCli(['--log-level', 'warn', 'restore', '--config', config])
    assert.notEqual(bundled.code, 0, bundled.stderr)
    assert.deepEqual(warning(bundled), {
      level: 40,
      key: 'target.kafka_config.linger.ms',
      msg: 'target.kafka_config.linger.ms has no effect: restore sends each Produce request as soon as it is full or the data runs out'
    })
    assert.deepEqual(warning(bundled), warning(sources))
    assert.equal(bundled.code, sources.code)
  } finally {
    rmSync(path, { recursive: true, force: true })
  }
})
