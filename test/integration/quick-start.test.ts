/**
 * The README captures one command's stdout: `export KAFKA_BOOTSTRAP_SERVERS=$(npm run -s kafka:start)`.
 * On a fresh clone that command also resolves the Kafka jars with Maven, whose output must not
 * end up in the variable.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { repoRoot, waitForBroker } from '../../scripts/broker.ts'
import { finished } from '../helpers/cli.ts'

function npmRun(script: string, env: NodeJS.ProcessEnv) {
  return finished(spawn('npm', ['run', '-s', script], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] }))
}

test('npm run -s kafka:start with an empty jar cache prints only host:port and a newline on stdout', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'kb-kafka-cache-'))
  const env = { ...process.env, KB_KAFKA_CACHE_DIR: cacheDir }
  try {
    const start = await npmRun('kafka:start', env)
    assert.equal(start.code, 0, start.stderr)
    assert.ok(existsSync(join(cacheDir, 'lib', '.resolved')), 'the jars were resolved by this very command')
    assert.match(start.stdout, /^127\.0\.0\.1:\d+\n$/, `stdout was ${JSON.stringify(start.stdout)}`)
    await waitForBroker(start.stdout.trim(), 30_000)
  } finally {
    const stop = await npmRun('kafka:stop', env)
    rmSync(cacheDir, { recursive: true, force: true })
    assert.equal(stop.code, 0, stop.stderr)
  }
})
