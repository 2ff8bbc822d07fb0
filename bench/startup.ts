/**
 * Start-up benchmark (`npm run bench:startup`): how long the CLI takes from process start to
 * useful work, and its memory before the data path counts. Per round, in this order so that
 * noise hits all alike: `--version`, `--help`, `list` of an empty folder, `backup` of a small
 * topic (BENCH_STARTUP_RECORDS records of 1 KiB, one partition) and `restore` of that backup into
 * a fresh topic; then OSO's engines on the same topic (bench/oso.ts) when its driver is there.
 *
 * Figures: wall = spawn to exit, measured by this process; first Fetch / first Produce = spawn to
 * the first such request written to a socket (bench/first-request.ts, preloaded as JavaScript);
 * CPU = user + system time of the process to exit and to that first request (less sensitive to a
 * loaded machine than wall time); peak RSS = VmHWM at exit (bench/peak-rss.ts). OSO: wall and
 * VmHWM sampled from /proc.
 * Prints a table and writes it into docs/benchmarks.md under "Start-up".
 *
 * Env: KAFKA_BOOTSTRAP_SERVERS (use this broker instead of starting one), BENCH_RUNS [5],
 * BENCH_STARTUP_RECORDS [1000], BENCH_OSO [1] (0: skip OSO), OSO_BIN, BENCH_NO_DOCS [0],
 * BENCH_CLI (bench/build-cli.ts), BENCH_BEFORE_CLI: another build's dist/kafka-backup.js (or the
 * dist/cli/main.js of an unbundled one), measured in the same rounds as rows marked "before", to
 * show the effect of a change. BENCH_PROFILE [0]:
 * 1 also runs backup and restore BENCH_RUNS more times each under `--cpu-prof`, stopped at their
 * first Fetch / Produce, and prints where that CPU goes (per package, folder of src/, Node's module
 * loader, built-ins, GC), mapped through the bundle's source maps; the profiles stay in
 * BENCH_PROFILE_DIR [.cache/bench-startup/profiles]. The table names the broker's topic count:
 * backup asks Metadata for every topic, so a broker that collected the topics of earlier runs
 * makes its start-up slower.
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { Admin } from '@platformatic/kafka'
import { stopBroker } from '../scripts/broker.ts'
import { producerPerformance } from './baselines.ts'
import { publishSection } from './benchmarks-doc.ts'
import { benchBroker } from './broker.ts'
import { buildCli, compiledPreload } from './build-cli.ts'
import { backupYaml, restoreYaml } from './configs.ts'
import { writePayloadFile } from './data.ts'
import type { FirstRequests } from './first-request.ts'
import { ensureOsoDriver, osoBackupYaml, osoRestoreYaml, runOso } from './oso.ts'
import type { PeakMemory } from './peak-rss.ts'
import { type Figure, figure, markdownTable } from './stats.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const runs = Number(process.env.BENCH_RUNS ?? 5)
const records = Number(process.env.BENCH_STARTUP_RECORDS ?? 1000)

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

const loadAtStart = os.loadavg()[0]!
const workDir = mkdtempSync(join(os.tmpdir(), 'kafka-backup-startup-'))
const cli = buildCli('bench-startup', log)
const peakRssPath = compiledPreload('bench-startup', 'peak-rss.ts')
const firstRequestPath = compiledPreload('bench-startup', 'first-request.ts')
const oso = ensureOsoDriver(log)
if (oso.path === undefined) {
  log(`SKIPPING the OSO baseline: ${oso.reason}`)
}

const { bootstrapServers, broker } = await benchBroker('bench-startup')
// Another client than ours sets the topic up, so the measured runs are the only users of our layer.
const admin = new Admin({ bootstrapBrokers: bootstrapServers.split(','), clientId: 'kafka-backup-bench' })

interface Run {
  wallMs: number
  peakRssBytes: number
  firstFetchMs?: number
  firstProduceMs?: number
  cpuMs?: number
  cpuMsToFirstRequest?: number
}

let configCount = 0
const profiling = process.env.BENCH_PROFILE === '1'
const profileRoot = resolve(process.env.BENCH_PROFILE_DIR ?? join(repoRoot, '.cache', 'bench-startup', 'profiles'))
if (profiling) {
  rmSync(profileRoot, { recursive: true, force: true })
}

const clis = [{ label: '', path: cli.cliPath }]
if (process.env.BENCH_BEFORE_CLI) {
  clis.push({ label: 'before: ', path: resolve(process.env.BENCH_BEFORE_CLI) })
}

/**
 * One CLI process: `args`, or with `yaml` a `--config` file appended. With `profileDir` it runs
 * under `--cpu-prof` into that folder and exits at its first Fetch or Produce.
 */
function runCli(cliPath: string, args: string[], yaml?: string, profileDir?: string): Run {
  const id = ++configCount
  const rssFile = join(workDir, `memory-${id}.json`)
  const requestFile = join(workDir, `requests-${id}.json`)
  const configArgs: string[] = []
  if (yaml !== undefined) {
    const configFile = join(workDir, `config-${id}.yaml`)
    writeFileSync(configFile, yaml)
    configArgs.push('--config', configFile, '--json')
  }
  const spawnedAt = performance.timeOrigin + performance.now()
  const result = spawnSync(
    process.execPath,
    [
      ...(profileDir ? ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', profileDir] : []),
      '--import',
      peakRssPath,
      '--import',
      firstRequestPath,
      cliPath,
      '--log-level',
      'warn',
      ...args,
      ...configArgs
    ],
    {
      encoding: 'utf8',
      env: {
        ...process.env,
        BENCH_PEAK_RSS_FILE: rssFile,
        BENCH_FIRST_REQUEST_FILE: requestFile,
        BENCH_FIRST_REQUEST_EXIT: profileDir ? '1' : '0'
      }
    }
  )
  const wallMs = performance.timeOrigin + performance.now() - spawnedAt
  if (result.status !== 0) {
    throw new Error(`kafka-backup ${args.join(' ')} failed (exit ${result.status ?? result.signal}):\n${result.stderr}`)
  }
  const memory = JSON.parse(readFileSync(rssFile, 'utf8')) as PeakMemory
  const requests = JSON.parse(readFileSync(requestFile, 'utf8')) as FirstRequests
  return {
    wallMs,
    peakRssBytes: memory.peakRssBytes,
    firstFetchMs: requests.fetchAt === undefined ? undefined : requests.fetchAt - spawnedAt,
    firstProduceMs: requests.produceAt === undefined ? undefined : requests.produceAt - spawnedAt,
    cpuMs: requests.cpuMsAtExit,
    cpuMsToFirstRequest: requests.cpuMsAtFirstRequest
  }
}

const token = randomUUID().slice(0, 6)
const topic = `startup-${token}`
const storagePath = join(workDir, 'backups')
const emptyPath = join(workDir, 'empty')
mkdirSync(emptyPath)
const payloadFile = join(workDir, 'payload.txt')
writePayloadFile(payloadFile, 1000)

const createdTopics = [topic]
let brokerTopics = 0
const samples = new Map<string, Run[]>()
const add = (what: string, run: Run) => samples.set(what, [...(samples.get(what) ?? []), run])

try {
  await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 })
  brokerTopics = (await admin.listTopics()).length
  log(`loading ${records} records into ${topic}`)
  producerPerformance(bootstrapServers, topic, records, payloadFile, {
    compression: 'none',
    batchBytes: 65536,
    lingerMs: 10
  })
  for (let round = 1; round <= runs; round++) {
    log(`round ${round}/${runs}`)
    for (const { label, path } of clis) {
      add(`${label}--version`, runCli(path, ['--version']))
      add(`${label}--help`, runCli(path, ['--help']))
      add(`${label}list (empty folder)`, runCli(path, ['list', '--path', emptyPath]))
      const backupId = `${label ? 'before' : 'ours'}-${round}`
      add(`${label}backup`, runCli(path, ['backup'], backupYaml(bootstrapServers, topic, storagePath, backupId)))
      createdTopics.push(`${topic}-${backupId}`)
      add(
        `${label}restore`,
        runCli(path, ['restore'], restoreYaml(bootstrapServers, topic, `${topic}-${backupId}`, storagePath, backupId))
      )
    }
    if (oso.path !== undefined) {
      const backupFile = join(workDir, `oso-backup-${round}.yaml`)
      writeFileSync(backupFile, osoBackupYaml(bootstrapServers, topic, join(storagePath, 'oso'), `oso-${round}`))
      add('OSO backup', await runOso(oso.path, backupFile))
      const restoreFile = join(workDir, `oso-restore-${round}.yaml`)
      writeFileSync(
        restoreFile,
        osoRestoreYaml(bootstrapServers, topic, `${topic}-oso-${round}`, join(storagePath, 'oso'), `oso-${round}`)
      )
      createdTopics.push(`${topic}-oso-${round}`)
      add('OSO restore', await runOso(oso.path, restoreFile))
    }
  }
  if (profiling) {
    for (const { label, path } of clis) {
      for (let round = 1; round <= runs; round++) {
        log(`profile ${round}/${runs}${label ? ` (${label.slice(0, -2)})` : ''}`)
        const backupId = `${label ? 'before' : 'ours'}-profile-${round}`
        runCli(
          path,
          ['backup'],
          backupYaml(bootstrapServers, topic, storagePath, backupId),
          join(profileRoot, `${label}backup`)
        )
        createdTopics.push(`${topic}-${backupId}`)
        runCli(
          path,
          ['restore'],
          restoreYaml(bootstrapServers, topic, `${topic}-${backupId}`, storagePath, `${label ? 'before' : 'ours'}-1`),
          join(profileRoot, `${label}restore`)
        )
      }
    }
  }
  await admin
    .deleteTopics({ topics: createdTopics })
    .catch(error => log(`could not delete ${createdTopics.join(', ')}: ${error}`))
} finally {
  await admin.close()
  if (broker) {
    await stopBroker(broker)
  }
  rmSync(workDir, { recursive: true, force: true })
}

const ms = (value: Figure) => (Number.isFinite(value.median) ? `${value.median.toFixed(0)} ms` : '-')
const range = (value: Figure) =>
  Number.isFinite(value.median) ? ` (${value.min.toFixed(0)}–${value.max.toFixed(0)})` : ''
const mib = (value: Figure) => `${(value.median / 2 ** 20).toFixed(0)} MiB`
const of = (what: string, pick: (run: Run) => number | undefined) =>
  figure((samples.get(what) ?? []).flatMap(run => pick(run) ?? []))

const rows = [...samples.keys()].map(what => {
  const wall = of(what, run => run.wallMs)
  const fetch = of(what, run => run.firstFetchMs)
  const produce = of(what, run => run.firstProduceMs)
  const cpu = of(what, run => run.cpuMs)
  const cpuToRequest = of(what, run => run.cpuMsToFirstRequest)
  return [
    what,
    `${ms(wall)}${range(wall)}`,
    `${ms(fetch)}${range(fetch)}`,
    `${ms(produce)}${range(produce)}`,
    `${ms(cpu)}${range(cpu)}`,
    `${ms(cpuToRequest)}${range(cpuToRequest)}`,
    mib(of(what, run => run.peakRssBytes))
  ]
})
const lines = [
  '## Start-up: process start to work, memory at rest',
  '',
  `Command: \`npm run bench:startup\` (bench/startup.ts; BENCH_RUNS=${runs}, median with min–max of the rounds).`,
  `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}; CLI ${cli.how}${clis[1] ? `, before: ${clis[1].path}` : ''}; 1-minute load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at the end.`,
  `Data: one partition, ${records} records of 1 KiB, uncompressed, on a broker holding ${brokerTopics} topics at the start; backup and restore at the config defaults (zstd-3 frames); OSO: ${oso.path === undefined ? `not run (${oso.reason})` : `${oso.version}, zstd-3, run by bench/oso-driver`}.`,
  '',
  ...markdownTable(
    [
      'command',
      'wall (spawn to exit)',
      'spawn to first Fetch',
      'spawn to first Produce',
      'CPU to exit',
      'CPU to first Fetch/Produce',
      'peak RSS'
    ],
    rows
  ),
  ''
]
publishSection(lines[0]!, lines.join('\n'), log)

if (profiling) {
  for (const what of readdirSync(profileRoot)) {
    const { perRunMs, centres } = costCentres(join(profileRoot, what))
    process.stdout.write(
      `\n${what}: ${perRunMs.toFixed(0)} ms sampled per run (not idle) to the first request, by cost centre:\n` +
        centres
          .slice(0, 16)
          .map(([centre, ms]) => `  ${ms.toFixed(1).padStart(6)} ms  ${centre}`)
          .join('\n') +
        '\n'
    )
  }
}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  children?: number[]
}

/**
 * Sampled time per run of the .cpuprofile files in `dir` by cost centre: a sample counts for
 * the first frame from its leaf up that lies in a package or a folder of src/ (the bundle's
 * source maps say which), else Node's module loader or its built-ins' compilation when they
 * are on the stack, else the leaf (GC, V8's "(program)").
 */
function costCentres(dir: string): { perRunMs: number; centres: Array<[string, number]> } {
  const maps = new Map<string, SourceMap | undefined>()
  const sourceOf = ({ url, lineNumber, columnNumber }: ProfileNode['callFrame']): string => {
    if (!url.startsWith('file://')) return url
    const path = new URL(url).pathname
    if (!maps.has(path)) {
      const mapPath = `${path}.map`
      maps.set(path, existsSync(mapPath) ? new SourceMap(JSON.parse(readFileSync(mapPath, 'utf8'))) : undefined)
    }
    const entry = maps.get(path)?.findEntry(lineNumber, columnNumber)
    return entry && 'originalSource' in entry ? entry.originalSource : path
  }
  const centreOf = (frame: ProfileNode['callFrame']): string | undefined => {
    const source = sourceOf(frame)
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(source)?.[1]
    if (pkg !== undefined) return pkg
    const own = /\/src\/([^/]+?)(?:\.ts)?(?:\/|$)/.exec(source)?.[1]
    if (own !== undefined) return `src/${own}`
    if (frame.functionName === 'compileForInternalLoader') return "Node's built-in modules (compiling)"
    if (source.startsWith('node:internal/modules/') || frame.functionName === 'ModuleWrap') {
      return "Node's module loader (resolve, read, compile from cache, link)"
    }
    return undefined
  }
  const totals = new Map<string, number>()
  const files = readdirSync(dir).filter(file => file.endsWith('.cpuprofile'))
  let sampledMicros = 0
  for (const file of files) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
      nodes: ProfileNode[]
      samples: number[]
      timeDeltas: number[]
    }
    const byId = new Map(profile.nodes.map(node => [node.id, node]))
    const parentOf = new Map<number, ProfileNode>()
    for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node)
    profile.samples.forEach((id, index) => {
      const leaf = byId.get(id)
      if (leaf === undefined || leaf.callFrame.functionName === '(idle)') return
      let centre: string | undefined
      for (let node: ProfileNode | undefined = leaf; node && centre === undefined; node = parentOf.get(node.id)) {
        centre = centreOf(node.callFrame)
      }
      centre ??= leaf.callFrame.url
        ? `other: ${leaf.callFrame.url.replace(/^node:internal\/([^/]+).*$/, 'node:$1')}`
        : leaf.callFrame.functionName
      const micros = profile.timeDeltas[index] ?? 0
      sampledMicros += micros
      totals.set(centre, (totals.get(centre) ?? 0) + micros)
    })
  }
  const perRun = (micros: number) => micros / 1000 / Math.max(files.length, 1)
  return {
    perRunMs: perRun(sampledMicros),
    centres: [...totals]
      .map(([centre, micros]): [string, number] => [centre, perRun(micros)])
      .sort((a, b) => b[1] - a[1])
  }
}
