/**
 * A single-node Apache Kafka broker (KRaft, combined broker+controller, PLAINTEXT on loopback)
 * run from the org.apache.kafka artifacts on Maven Central, for tests, benchmarks and the
 * README quick start. The jars are resolved once by scripts/kafka/pom.xml into .cache/kafka/lib.
 * KB_KAFKA_CACHE_DIR moves .cache/kafka elsewhere (the test of a first run uses an empty one).
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Admin } from '@platformatic/kafka'

export const repoRoot = resolve(import.meta.dirname, '..')
export const kafkaCacheDir = resolve(process.env.KB_KAFKA_CACHE_DIR || join(repoRoot, '.cache', 'kafka'))
const libDir = join(kafkaCacheDir, 'lib')
const libReadyMarker = join(libDir, '.resolved')
const pomFile = join(repoRoot, 'scripts', 'kafka', 'pom.xml')

export interface RunningBroker {
  bootstrapServers: string
  /** With `authorizer`: a SASL_PLAINTEXT listener taking SCRAM-SHA-256 and SCRAM-SHA-512. */
  saslBootstrapServers?: string
  pid: number
  runDir: string
  logFile: string
}

/** Resolves the broker and tool jars with Maven unless a previous run already did. */
export function ensureKafkaJars(): string {
  if (existsSync(libReadyMarker) && readFileSync(libReadyMarker, 'utf8') === readFileSync(pomFile, 'utf8')) {
    return libDir
  }
  rmSync(libDir, { recursive: true, force: true })
  process.stderr.write(`resolving the Kafka jars with Maven into ${libDir} (first use; this can take minutes)\n`)
  const mvn = spawnSync(
    'mvn',
    [
      '-q',
      '-B',
      '-Dstyle.color=never',
      '-f',
      pomFile,
      'dependency:copy-dependencies',
      '-DincludeScope=runtime',
      `-DoutputDirectory=${libDir}`
    ],
    // Captured, not inherited: with -q Maven prints only errors, but also terminal reset codes,
    // which must not reach the stdout of `npm run -s kafka:start` (it is meant to be captured).
    { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' }
  )
  if (mvn.error) {
    throw new Error(`Maven (mvn) is needed to resolve the Kafka jars and did not start: ${mvn.error.message}`)
  }
  if (mvn.status !== 0) {
    throw new Error(
      `mvn could not resolve the Kafka jars from ${pomFile} (exit ${mvn.status ?? mvn.signal}): ${mvn.stdout}${mvn.stderr}`
    )
  }
  // The marker holds the POM it was made from, so a version bump re-resolves.
  writeFileSync(libReadyMarker, readFileSync(pomFile, 'utf8'))
  return libDir
}

/** The java command line for a Kafka main class (broker, StorageTool, perf tools). */
export function kafkaJavaArgs(mainClass: string, args: string[], jvmOptions: string[] = []): string[] {
  return [...jvmOptions, '-cp', `${ensureKafkaJars()}/*`, mainClass, ...args]
}

/** Runs one of Kafka's Java tools to completion and returns its stdout. */
export function runKafkaTool(mainClass: string, args: string[]): string {
  const result = spawnSync('java', kafkaJavaArgs(mainClass, args, ['-Xmx512m']), {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024
  })
  if (result.error) {
    throw new Error(`Java 17 or newer is needed to run ${mainClass} and did not start: ${result.error.message}`)
  }
  if (result.status !== 0) {
    throw new Error(`${mainClass} ${args.join(' ')} failed (exit ${result.status ?? result.signal}): ${result.stderr}`)
  }
  return result.stdout
}

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

/** A KRaft cluster id: 16 random bytes, base64url; Kafka refuses ids that start with '-'. */
export function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) {
      return id
    }
  }
}

/**
 * Broker logs to stdout (which the launcher sends to the run's log file), one line per event.
 * Returns the file's path, for -Dlog4j2.configurationFile.
 */
export function writeLog4jConfig(runDir: string, extraLines: string[] = []): string {
  const file = join(runDir, 'log4j2.properties')
  writeFileSync(
    file,
    [
      'appender.out.type=Console',
      'appender.out.name=out',
      'appender.out.layout.type=PatternLayout',
      'appender.out.layout.pattern=[%d] %p %m (%c)%n',
      'rootLogger.level=INFO',
      'rootLogger.appenderRef.out.ref=out',
      ...extraLines,
      ''
    ].join('\n')
  )
  return file
}

export async function waitForBroker(bootstrapServers: string, timeoutMs: number, isAlive = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline && isAlive()) {
    const admin = new Admin({
      clientId: 'kafka-backup-readiness',
      bootstrapBrokers: [bootstrapServers],
      retries: 0,
      connectTimeout: 1000
    })
    try {
      const metadata = await admin.metadata({ topics: [] })
      if (metadata.brokers.size > 0) {
        return
      }
    } catch (error) {
      lastError = error
    } finally {
      await admin.close()
    }
    await sleep(250)
  }
  throw new Error(`broker at ${bootstrapServers} did not answer Metadata within ${timeoutMs} ms`, { cause: lastError })
}

/**
 * Keeps the logs of the last few stopped runs for post-mortems (their data is removed at stop);
 * the folder of a broker that is still running (its pid file names a live process) stays.
 */
function pruneOldRuns(keep: number): void {
  const runsDir = join(kafkaCacheDir, 'runs')
  if (!existsSync(runsDir)) {
    return
  }
  const stopped = readdirSync(runsDir)
    .filter(name => {
      const pidFile = join(runsDir, name, 'broker.pid')
      return !existsSync(pidFile) || !isRunning(Number(readFileSync(pidFile, 'utf8')))
    })
    .map(name => ({ name, mtimeMs: statSync(join(runsDir, name)).mtimeMs }))
    .sort((a, b) => b.mtimeMs - a.mtimeMs)
  for (const run of stopped.slice(keep)) {
    rmSync(join(runsDir, run.name), { recursive: true, force: true })
  }
}

export interface BrokerOptions {
  /**
   * StandardAuthorizer on, with ANONYMOUS (the PLAINTEXT listener, where tests set up) as the
   * only super user, and a SASL_PLAINTEXT listener for SCRAM users: for tests of ACLs, quotas
   * and SCRAM credentials.
   */
  authorizer?: boolean
}

/** The server.properties lines of `BrokerOptions.authorizer`. */
/** Topic and group defaults of every single-node test broker (this one and the secured one). */
export const singleNodeProperties = [
  'num.partitions=1',
  'auto.create.topics.enable=false',
  'offsets.topic.replication.factor=1',
  // Fewer internal partitions make the first group and transaction calls of a run fast.
  'offsets.topic.num.partitions=4',
  'transaction.state.log.replication.factor=1',
  'transaction.state.log.min.isr=1',
  'transaction.state.log.num.partitions=4',
  'share.coordinator.state.topic.replication.factor=1',
  'share.coordinator.state.topic.min.isr=1',
  'group.initial.rebalance.delay.ms=0'
]

function authorizerProperties(): string[] {
  return [
    'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    'super.users=User:ANONYMOUS',
    'listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512',
    ...['scram-sha-256', 'scram-sha-512'].map(
      mechanism =>
        `listener.name.sasl_plaintext.${mechanism}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`
    )
  ]
}

/** Formats fresh storage under .cache/kafka/runs and starts a broker on free loopback ports. */
export async function startBroker(name = 'broker', options: BrokerOptions = {}): Promise<RunningBroker> {
  pruneOldRuns(5)
  const runDir = join(kafkaCacheDir, 'runs', `${name}-${Date.now()}-${process.pid}`)
  const logFile = join(runDir, 'broker.log')
  mkdirSync(runDir, { recursive: true })
  const [port, controllerPort] = [await freePort(), await freePort()]
  const saslPort = options.authorizer ? await freePort() : undefined
  const listeners = [`PLAINTEXT://127.0.0.1:${port}`, ...(saslPort ? [`SASL_PLAINTEXT://127.0.0.1:${saslPort}`] : [])]
  const propertiesFile = join(runDir, 'server.properties')
  writeFileSync(
    propertiesFile,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=${listeners.join(',')},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=${listeners.join(',')}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT',
      ...(saslPort ? authorizerProperties() : []),
      `log.dirs=${join(runDir, 'data')}`,
      ...singleNodeProperties,
      // Tests wait for the log cleaner and retention; make them act within a second. Tests write
      // records with timestamps from years ago, so time retention is off unless a topic sets it.
      'log.cleaner.backoff.ms=500',
      'log.retention.check.interval.ms=1000',
      'log.retention.ms=-1',
      ''
    ].join('\n')
  )
  writeLog4jConfig(runDir, ['logger.kafka.name=kafka', 'logger.kafka.level=INFO'])

  runKafkaTool('kafka.tools.StorageTool', ['format', '-t', newClusterId(), '-c', propertiesFile])
  return launch({
    bootstrapServers: `127.0.0.1:${port}`,
    ...(saslPort && { saslBootstrapServers: `127.0.0.1:${saslPort}` }),
    pid: 0,
    runDir,
    logFile
  })
}

/** Starts the broker process of a formatted run folder and waits until it answers Metadata. */
async function launch(broker: RunningBroker): Promise<RunningBroker> {
  const { runDir, logFile, bootstrapServers } = broker
  const pid = await spawnBroker({
    what: 'Kafka broker',
    runDir,
    logFile,
    propertiesFile: join(runDir, 'server.properties'),
    jvmOptions: [
      '-Xms256m',
      '-Xmx1g',
      '-XX:+UseG1GC',
      `-Dlog4j2.configurationFile=${join(runDir, 'log4j2.properties')}`
    ],
    bootstrapServers,
    timeoutMs: 60_000
  })
  return { ...broker, pid }
}

export interface SpawnBrokerOptions {
  /** Names the broker in the start-up failure. */
  what: string
  runDir: string
  logFile: string
  propertiesFile: string
  jvmOptions: string[]
  /** The listener that must answer Metadata before the broker counts as started. */
  bootstrapServers: string
  timeoutMs: number
}

/**
 * Starts a broker JVM detached (its output appended to `logFile`, its pid in the run folder)
 * and waits until `bootstrapServers` answers; a broker that exits or does not answer in time is
 * stopped, and the error names its log. Returns the pid. Shared by the plain and secured brokers.
 */
export async function spawnBroker(options: SpawnBrokerOptions): Promise<number> {
  const { runDir, logFile, bootstrapServers } = options
  const logFd = openSync(logFile, 'a')
  const child = spawn('java', kafkaJavaArgs('kafka.Kafka', [options.propertiesFile], options.jvmOptions), {
    detached: true,
    stdio: ['ignore', logFd, logFd]
  })
  child.unref()
  const pid = child.pid
  if (pid === undefined) {
    throw new Error(`java did not start; see ${logFile}`)
  }
  writeFileSync(join(runDir, 'broker.pid'), String(pid))
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  try {
    await waitForBroker(bootstrapServers, options.timeoutMs, () => !exited)
    if (exited) {
      throw new Error('the broker process exited during start-up')
    }
  } catch (error) {
    await stopBroker({ pid, runDir, logFile, bootstrapServers }, { keepLog: true })
    throw new Error(`${options.what} failed to start (${(error as Error).message}); log: ${logFile}`, { cause: error })
  }
  return pid
}

/**
 * Stops the broker (SIGTERM: a controlled shutdown) and starts it again on the same data and
 * ports after `downMs`, as a broker restart in production would: for tests of what clients see.
 */
export async function restartBroker(broker: RunningBroker, downMs = 0): Promise<RunningBroker> {
  await stopBroker(broker, { keepData: true })
  await sleep(downMs)
  return launch(broker)
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Stops the broker (SIGTERM, then SIGKILL after 20 s) and removes its data unless asked to keep it. */
export async function stopBroker(
  broker: RunningBroker,
  options: { keepLog?: boolean; keepData?: boolean } = {}
): Promise<void> {
  if (isRunning(broker.pid)) {
    process.kill(broker.pid, 'SIGTERM')
    const deadline = Date.now() + 20_000
    while (isRunning(broker.pid) && Date.now() < deadline) {
      await sleep(100)
    }
    if (isRunning(broker.pid)) {
      process.kill(broker.pid, 'SIGKILL')
    }
  }
  if (options.keepData) {
    return
  }
  rmSync(join(broker.runDir, 'data'), { recursive: true, force: true })
  if (!options.keepLog) {
    rmSync(broker.runDir, { recursive: true, force: true })
  }
}
