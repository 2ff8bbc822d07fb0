/**
 * Real object-store server processes for tests and benchmarks, each on free loopback ports
 * with its data under .cache/object-servers/runs/ (removed at stop, the log kept for
 * post-mortems; the last few runs are kept):
 * - S3: SeaweedFS (`weed server -s3`: master, volume server, filer and S3 gateway in one
 *   process) with one identity, so that signatures are checked;
 * - Azure Blob: Azurite's blob server (Microsoft's emulator), shared-key auth checked;
 * - GCS: fake-gcs-server (no authentication: it accepts any credentials).
 *
 * A server can be killed (SIGKILL) and restarted on the same ports and data, for fault tests.
 * Every server this process started is killed when the process exits, also when a test fails.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { azuriteBlobScript, ensureGoServer, objectServersCacheDir } from './install.ts'

export type ObjectServerKind = 's3' | 'azure' | 'gcs'

export interface RunningObjectServer {
  kind: ObjectServerKind
  /** The URL clients connect to. */
  endpoint: string
  pid: number
  runDir: string
  dataDir: string
  logFile: string
  /** How it was started, for restartObjectServer(). */
  command: string
  args: string[]
  /** Milliseconds from spawn to ready, for the report. */
  startupMs: number
}

export interface S3Server extends RunningObjectServer {
  kind: 's3'
  region: string
  accessKey: string
  secretKey: string
}

export interface AzuriteServer extends RunningObjectServer {
  kind: 'azure'
  accountName: string
  accountKey: string
  connectionString: string
}

export interface FakeGcsServer extends RunningObjectServer {
  kind: 'gcs'
}

const readyTimeoutMs = 60_000
const children = new Map<number, ChildProcess>()

process.once('exit', () => {
  for (const child of children.values()) {
    child.kill('SIGKILL')
  }
})

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>(done => server.listen(0, '127.0.0.1', done))
  const address = server.address()
  await new Promise(done => server.close(done))
  if (address === null || typeof address === 'string') {
    throw new Error('could not allocate a loopback port')
  }
  return address.port
}

/** `count` distinct free loopback ports. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) {
    ports.add(await freePort())
  }
  return [...ports]
}

function pruneOldRuns(keep: number): void {
  const runsDir = join(objectServersCacheDir, 'runs')
  if (!existsSync(runsDir)) {
    return
  }
  const runs = readdirSync(runsDir)
    .map(name => ({ name, mtimeMs: statSync(join(runsDir, name)).mtimeMs }))
    .sort((a, b) => b.mtimeMs - a.mtimeMs)
  for (const run of runs.slice(keep)) {
    rmSync(join(runsDir, run.name), { recursive: true, force: true })
  }
}

function newRunDir(kind: ObjectServerKind): { runDir: string; dataDir: string; logFile: string } {
  pruneOldRuns(10)
  const runDir = join(
    objectServersCacheDir,
    'runs',
    `${kind}-${Date.now()}-${process.pid}-${randomBytes(2).toString('hex')}`
  )
  const dataDir = join(runDir, 'data')
  mkdirSync(dataDir, { recursive: true })
  return { runDir, dataDir, logFile: join(runDir, 'server.log') }
}

function logTail(logFile: string, lines = 30): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

function spawnServer(command: string, args: string[], logFile: string, cwd: string): ChildProcess {
  const logFd = openSync(logFile, 'a')
  try {
    const child = spawn(command, args, { cwd, stdio: ['ignore', logFd, logFd] })
    // A test file whose suites were filtered out by name never runs their `after` hooks: the
    // servers must not keep it alive (the exit handler below still kills them).
    child.unref()
    if (child.pid !== undefined) {
      const pid = child.pid
      children.set(pid, child)
      child.once('exit', () => children.delete(pid))
    }
    return child
  } finally {
    closeSync(logFd)
  }
}

/** Waits until `isReady` resolves true, failing early when the process exits. */
async function waitReady(
  child: ChildProcess,
  what: string,
  logFile: string,
  isReady: () => Promise<boolean>
): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs
  let exited: string | undefined
  child.once('exit', (code, signal) => {
    exited = `exited with ${code ?? signal}`
  })
  child.once('error', error => {
    exited = `could not start: ${error.message}`
  })
  let lastError: unknown
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new Error(`${what} ${exited} before it was ready; its log ${logFile}:\n${logTail(logFile)}`)
    }
    try {
      if (await isReady()) {
        return
      }
    } catch (error) {
      lastError = error
    }
    await sleep(200)
  }
  child.kill('SIGKILL')
  throw new Error(
    `${what} was not ready within ${readyTimeoutMs} ms (last: ${lastError instanceof Error ? lastError.message : String(lastError)}); its log ${logFile}:\n${logTail(logFile)}`
  )
}

/** One HTTP request; resolves with the status code (any answer means the port serves HTTP). */
function httpStatus(url: string): Promise<number> {
  return new Promise((done, fail) => {
    const req = request(url, { method: 'GET', timeout: 2000 }, response => {
      response.resume()
      done(response.statusCode ?? 0)
    })
    req.once('timeout', () => req.destroy(new Error(`no answer from ${url}`)))
    req.once('error', fail)
    req.end()
  })
}

async function launch<T extends RunningObjectServer>(
  server: Omit<T, 'pid' | 'startupMs'>,
  what: string,
  isReady: () => Promise<boolean>
): Promise<T> {
  const startedAt = performance.now()
  const child = spawnServer(server.command, server.args, server.logFile, server.runDir)
  await waitReady(child, what, server.logFile, isReady)
  return { ...server, pid: child.pid!, startupMs: Math.round(performance.now() - startedAt) } as T
}

// ---- S3: SeaweedFS ---------------------------------------------------------------------------

function seaweedArgs(dataDir: string, configFile: string, ports: number[]): string[] {
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc] = ports as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number
  ]
  return [
    'server',
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-dir=${dataDir}`,
    `-master.port=${master}`,
    `-master.port.grpc=${masterGrpc}`,
    '-master.telemetry=false',
    '-master.volumeSizeLimitMB=1024',
    // Each bucket is a collection that grows volumes of its own on its first write. The automatic
    // limit (free disk / volume size) ran out after a few dozen buckets on a shared disk ("No
    // writable volumes and no free volumes left", an InternalError to the client); volume files
    // grow with what is written, so a high count costs no disk.
    '-volume.max=1000',
    `-volume.port=${volume}`,
    `-volume.port.grpc=${volumeGrpc}`,
    '-volume.preStopSeconds=0',
    '-filer',
    `-filer.port=${filer}`,
    `-filer.port.grpc=${filerGrpc}`,
    `-filer.localSocket=${join(dataDir, 'filer.sock')}`,
    '-s3',
    `-s3.port=${s3}`,
    `-s3.port.grpc=${s3Grpc}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-s3.localSocket=${join(dataDir, 's3.sock')}`,
    `-s3.config=${configFile}`,
    // Real S3 answers NoSuchBucket; SeaweedFS would otherwise create the bucket on upload.
    '-s3.autoCreateBucket=false'
  ]
}

/** Starts SeaweedFS with an S3 gateway, building it first if needed (see install.ts). */
export async function startS3Server(): Promise<S3Server> {
  const command = await ensureGoServer('seaweedfs')
  const { runDir, dataDir, logFile } = newRunDir('s3')
  const accessKey = `kb${randomBytes(8).toString('hex')}`
  const secretKey = randomBytes(24).toString('base64url')
  const configFile = join(runDir, 's3.json')
  writeFileSync(
    configFile,
    JSON.stringify({
      identities: [
        {
          name: 'kafka-backup-tests',
          credentials: [{ accessKey, secretKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging']
        }
      ]
    })
  )
  const ports = await freePorts(8)
  const endpoint = `http://127.0.0.1:${ports[6]}`
  const region = 'us-east-1'
  const { S3Client, ListBucketsCommand } = await import('@aws-sdk/client-s3')
  const client = new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
    maxAttempts: 1
  })
  try {
    return await launch<S3Server>(
      {
        kind: 's3',
        endpoint,
        region,
        accessKey,
        secretKey,
        runDir,
        dataDir,
        logFile,
        command,
        args: seaweedArgs(dataDir, configFile, ports)
      },
      `SeaweedFS (S3 at ${endpoint})`,
      // The gateway listens before the filer behind it serves: a signed call proves both.
      async () => {
        await client.send(new ListBucketsCommand({}))
        return true
      }
    )
  } finally {
    client.destroy()
  }
}

// ---- Azure Blob: Azurite ---------------------------------------------------------------------

/** Azurite's fixed development account (public, documented by Microsoft; not a secret). */
const azuriteAccountName = 'devstoreaccount1'
const azuriteAccountKey = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

export async function startAzurite(): Promise<AzuriteServer> {
  const script = azuriteBlobScript()
  const { runDir, dataDir, logFile } = newRunDir('azure')
  const port = await freePort()
  const endpoint = `http://127.0.0.1:${port}/${azuriteAccountName}`
  return launch<AzuriteServer>(
    {
      kind: 'azure',
      endpoint,
      accountName: azuriteAccountName,
      accountKey: azuriteAccountKey,
      connectionString: `DefaultEndpointsProtocol=http;AccountName=${azuriteAccountName};AccountKey=${azuriteAccountKey};BlobEndpoint=${endpoint};`,
      runDir,
      dataDir,
      logFile,
      command: process.execPath,
      args: [
        script,
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--location',
        dataDir,
        // The SDK may be newer than the emulator's list of service versions.
        '--skipApiVersionCheck',
        '--disableProductStyleUrl',
        '--disableTelemetry'
      ]
    },
    `Azurite (blob at ${endpoint})`,
    async () => (await httpStatus(`${endpoint}?comp=list`)) > 0
  )
}

// ---- GCS: fake-gcs-server --------------------------------------------------------------------

export async function startFakeGcs(): Promise<FakeGcsServer> {
  const command = await ensureGoServer('fake-gcs-server')
  const { runDir, dataDir, logFile } = newRunDir('gcs')
  const port = await freePort()
  const endpoint = `http://127.0.0.1:${port}`
  return launch<FakeGcsServer>(
    {
      kind: 'gcs',
      endpoint,
      runDir,
      dataDir,
      logFile,
      command,
      args: [
        '-scheme',
        'http',
        '-host',
        '127.0.0.1',
        '-port',
        String(port),
        '-backend',
        'filesystem',
        '-filesystem-root',
        dataDir,
        // Resumable upload sessions are handed out at this URL.
        '-external-url',
        endpoint,
        '-public-host',
        `127.0.0.1:${port}`,
        '-log-level',
        'warn'
      ]
    },
    `fake-gcs-server (at ${endpoint})`,
    async () => (await httpStatus(`${endpoint}/storage/v1/b`)) === 200
  )
}

// ---- lifecycle ---------------------------------------------------------------------------------

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      return true
    }
    await sleep(50)
  }
  return !isAlive(pid)
}

/**
 * Ends the server: SIGTERM then SIGKILL after a grace period, or SIGKILL at once with `kill`
 * (a crash, for fault tests: the data stays for restartObjectServer). Removes the data unless
 * `keepData`; the log stays.
 */
export async function stopObjectServer(
  server: RunningObjectServer,
  { kill = false, keepData = kill }: { kill?: boolean; keepData?: boolean } = {}
): Promise<void> {
  const child = children.get(server.pid)
  const signal = (name: NodeJS.Signals) => {
    try {
      if (child !== undefined) {
        child.kill(name)
      } else {
        process.kill(server.pid, name)
      }
    } catch {
      // Already gone.
    }
  }
  signal(kill ? 'SIGKILL' : 'SIGTERM')
  if (!(await waitForExit(server.pid, kill ? 5000 : 10_000))) {
    signal('SIGKILL')
    await waitForExit(server.pid, 5000)
  }
  if (!keepData) {
    rmSync(server.dataDir, { recursive: true, force: true })
  }
}

/** Starts a stopped (or killed) server again on the same ports and data; updates its pid. */
export async function restartObjectServer<T extends RunningObjectServer>(server: T): Promise<T> {
  if (isAlive(server.pid)) {
    throw new Error(`the ${server.kind} server (pid ${server.pid}) is still running; stop it first`)
  }
  let isReady: () => Promise<boolean>
  if (server.kind === 's3') {
    const s3 = server as unknown as S3Server
    const { S3Client, ListBucketsCommand } = await import('@aws-sdk/client-s3')
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
      maxAttempts: 1
    })
    isReady = async () => {
      await client.send(new ListBucketsCommand({}))
      client.destroy()
      return true
    }
  } else {
    const url = server.kind === 'gcs' ? `${server.endpoint}/storage/v1/b` : `${server.endpoint}?comp=list`
    isReady = async () => (await httpStatus(url)) > 0
  }
  const restarted = await launch<T>(server, `${server.kind} server (restart at ${server.endpoint})`, isReady)
  server.pid = restarted.pid
  server.startupMs = restarted.startupMs
  return server
}
