/**
 * Installs the object-store servers the storage tests run against, on first use, into
 * .cache/object-servers (git-ignored):
 * - SeaweedFS (S3) and fake-gcs-server (GCS), built with `go install tool` from the Go modules
 *   pinned in scripts/object-servers/{seaweedfs,fake-gcs-server}/go.mod, whose go.sum makes the
 *   build verify every module it downloads;
 * - Azurite (Azure Blob) is the npm devDependency `azurite`: nothing to build.
 *
 * Idempotent and safe to call from several test processes at once: a build happens once per
 * pin (the binary's folder is named after a hash of go.mod, go.sum and the Go version), under
 * a lock, and is moved into place only when complete. Go's own module and build caches
 * (GOMODCACHE, GOCACHE) are used, so a rebuild after a pin bump downloads only what changed.
 *
 *     node scripts/object-servers/install.ts [seaweedfs|fake-gcs-server|all]
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const repoRoot = resolve(import.meta.dirname, '..', '..')
export const objectServersCacheDir = join(repoRoot, '.cache', 'object-servers')

export type GoServer = 'seaweedfs' | 'fake-gcs-server'

const goServers: Record<GoServer, { binary: string; what: string }> = {
  seaweedfs: { binary: 'weed', what: 'SeaweedFS (the S3 server of the storage tests)' },
  'fake-gcs-server': { binary: 'fake-gcs-server', what: 'fake-gcs-server (the GCS emulator of the storage tests)' }
}

/** A build holding the lock longer than this is taken for dead (its process was killed). */
const staleLockMs = 30 * 60 * 1000

function goVersion(): string {
  const result = spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' })
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(
      'Go is needed to build the S3 and GCS test servers (SeaweedFS, fake-gcs-server) but `go` did not run ' +
        `(${result.error?.message ?? result.stderr.trim()}); install Go 1.26 or newer and put it on PATH`
    )
  }
  return result.stdout.trim()
}

/** Where the binary of the current pin lives, built or not. */
export function goServerBinaryPath(server: GoServer): string {
  const moduleDir = join(import.meta.dirname, server)
  const hash = createHash('sha256')
    .update(readFileSync(join(moduleDir, 'go.mod')))
    .update(readFileSync(join(moduleDir, 'go.sum')))
    .update(goVersion())
    .digest('hex')
    .slice(0, 16)
  return join(objectServersCacheDir, 'bin', `${server}-${hash}`, goServers[server].binary)
}

function lockIsStale(lockDir: string): boolean {
  try {
    const owner = Number(readFileSync(join(lockDir, 'pid'), 'utf8'))
    try {
      process.kill(owner, 0)
    } catch {
      return true
    }
    return Date.now() - statSync(lockDir).mtimeMs > staleLockMs
  } catch {
    // No pid file yet: the owner is between mkdir and writing it, unless that was long ago.
    return existsSync(lockDir) && Date.now() - statSync(lockDir).mtimeMs > 60_000
  }
}

/**
 * Returns the path of the server's binary, building it first when this pin has not been built
 * on this machine. Throws with the build log's path and tail when the build fails.
 */
export async function ensureGoServer(server: GoServer, log: (line: string) => void = console.error): Promise<string> {
  const binary = goServerBinaryPath(server)
  if (existsSync(binary)) {
    return binary
  }
  mkdirSync(objectServersCacheDir, { recursive: true })
  const lockDir = join(objectServersCacheDir, `${server}.lock`)
  let announced = false
  for (;;) {
    try {
      mkdirSync(lockDir)
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw error
      }
    }
    if (existsSync(binary)) {
      return binary
    }
    if (lockIsStale(lockDir)) {
      rmSync(lockDir, { recursive: true, force: true })
      continue
    }
    if (!announced) {
      log(`# waiting for another process to finish building ${server} (lock ${lockDir})`)
      announced = true
    }
    await sleep(1000)
  }
  try {
    writeFileSync(join(lockDir, 'pid'), String(process.pid))
    if (existsSync(binary)) {
      return binary
    }
    await build(server, binary, log)
    return binary
  } finally {
    rmSync(lockDir, { recursive: true, force: true })
  }
}

async function build(server: GoServer, binary: string, log: (line: string) => void): Promise<void> {
  const moduleDir = join(import.meta.dirname, server)
  const finalDir = resolve(binary, '..')
  const buildDir = `${finalDir}.building-${process.pid}`
  const logFile = join(objectServersCacheDir, `${server}-build.log`)
  rmSync(buildDir, { recursive: true, force: true })
  mkdirSync(buildDir, { recursive: true })
  const startedAt = performance.now()
  log(`# building ${goServers[server].what} from ${moduleDir} (first use on this machine; log ${logFile})`)
  const logFd = openSync(logFile, 'w')
  let exit: { code: number | null; signal: NodeJS.Signals | null }
  try {
    const child = spawn('go', ['install', '-ldflags=-s -w', 'tool'], {
      cwd: moduleDir,
      env: {
        ...process.env,
        GOBIN: buildDir,
        // go.sum pins every module; readonly refuses to build if go.mod or go.sum would change.
        GOFLAGS: '-mod=readonly'
      },
      stdio: ['ignore', logFd, logFd]
    })
    exit = await new Promise((done, fail) => {
      child.once('error', fail)
      child.once('exit', (code, signal) => done({ code, signal }))
    })
  } finally {
    closeSync(logFd)
  }
  const built = join(buildDir, goServers[server].binary)
  if (exit.code !== 0 || !existsSync(built)) {
    rmSync(buildDir, { recursive: true, force: true })
    const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-40).join('\n')
    throw new Error(
      `building ${server} failed (go install exit ${exit.code ?? exit.signal}); full log ${logFile}, last lines:\n${tail}`
    )
  }
  rmSync(finalDir, { recursive: true, force: true })
  renameSync(buildDir, finalDir)
  log(`# built ${server} in ${((performance.now() - startedAt) / 1000).toFixed(1)} s: ${binary}`)
}

/** The Azurite blob server's entry script, from the `azurite` devDependency. */
export function azuriteBlobScript(): string {
  const script = join(repoRoot, 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js')
  if (!existsSync(script)) {
    throw new Error(`Azurite is missing (${script}); run npm install (it is a devDependency)`)
  }
  return script
}

if (import.meta.main) {
  const which = process.argv[2] ?? 'all'
  const servers: GoServer[] =
    which === 'all' ? ['seaweedfs', 'fake-gcs-server'] : which in goServers ? [which as GoServer] : []
  if (servers.length === 0) {
    console.error('usage: node scripts/object-servers/install.ts [seaweedfs|fake-gcs-server|all]')
    process.exitCode = 2
  } else {
    const startedAt = performance.now()
    for (const server of servers) {
      console.log(await ensureGoServer(server))
    }
    console.log(azuriteBlobScript())
    console.error(`# object servers ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)
  }
}
