/**
 * A three-node KRaft cluster (each node broker and controller, static voters) on loopback for
 * the multi-broker tests: replication factor 3, min.insync.replicas 2, so that one node can be
 * killed and restarted while clients keep reading and writing.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Admin } from '@platformatic/kafka'
import { freePort, kafkaCacheDir, kafkaJavaArgs, newClusterId, runKafkaTool, writeLog4jConfig } from '../broker.ts'

export interface ClusterNode {
  nodeId: number
  bootstrapServer: string
  propertiesFile: string
  logFile: string
  process?: ChildProcess
}

export interface TestCluster {
  runDir: string
  nodes: ClusterNode[]
  bootstrapServers: string[]
}

function launch(node: ClusterNode, runDir: string): void {
  const logFd = openSync(node.logFile, 'a')
  node.process = spawn(
    'java',
    kafkaJavaArgs(
      'kafka.Kafka',
      [node.propertiesFile],
      ['-Xms128m', '-Xmx512m', `-Dlog4j2.configurationFile=${join(runDir, 'log4j2.properties')}`]
    ),
    { detached: true, stdio: ['ignore', logFd, logFd] }
  )
  node.process.unref()
}

/** Resolves once Metadata through `server` lists `brokers` brokers. */
export async function waitForBrokers(server: string, brokers: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const admin = new Admin({ clientId: 'kafka-backup-readiness', bootstrapBrokers: [server], retries: 0 })
    try {
      if ((await admin.metadata({ topics: [], forceUpdate: true })).brokers.size === brokers) {
        return
      }
    } catch {
      // Not up yet.
    } finally {
      await admin.close()
    }
    await sleep(250)
  }
  throw new Error(`the cluster at ${server} did not list ${brokers} brokers within ${timeoutMs} ms`)
}

export async function startCluster(size = 3): Promise<TestCluster> {
  const runDir = join(kafkaCacheDir, 'runs', `cluster-${Date.now()}-${process.pid}`)
  mkdirSync(runDir, { recursive: true })
  writeLog4jConfig(runDir)
  const ports = []
  for (let i = 0; i < size; i++) {
    ports.push({ nodeId: i + 1, port: await freePort(), controllerPort: await freePort() })
  }
  const voters = ports.map(p => `${p.nodeId}@127.0.0.1:${p.controllerPort}`).join(',')
  const clusterId = newClusterId()
  const nodes = ports.map(({ nodeId, port, controllerPort }) => {
    const nodeDir = join(runDir, `node-${nodeId}`)
    mkdirSync(nodeDir, { recursive: true })
    const propertiesFile = join(nodeDir, 'server.properties')
    writeFileSync(
      propertiesFile,
      [
        'process.roles=broker,controller',
        `node.id=${nodeId}`,
        `controller.quorum.voters=${voters}`,
        `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
        'controller.listener.names=CONTROLLER',
        'inter.broker.listener.name=PLAINTEXT',
        'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
        `log.dirs=${join(nodeDir, 'data')}`,
        'num.partitions=3',
        `default.replication.factor=${size}`,
        'min.insync.replicas=2',
        'auto.create.topics.enable=false',
        `offsets.topic.replication.factor=${size}`,
        'offsets.topic.num.partitions=4',
        `transaction.state.log.replication.factor=${size}`,
        'transaction.state.log.min.isr=2',
        'transaction.state.log.num.partitions=4',
        `share.coordinator.state.topic.replication.factor=${size}`,
        'share.coordinator.state.topic.min.isr=2',
        'group.initial.rebalance.delay.ms=0',
        // Leadership goes back to the preferred replica only when a test asks (LeaderElectionCommand).
        'auto.leader.rebalance.enable=false',
        'log.retention.ms=-1',
        ''
      ].join('\n')
    )
    runKafkaTool('kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', propertiesFile])
    return { nodeId, bootstrapServer: `127.0.0.1:${port}`, propertiesFile, logFile: join(nodeDir, 'broker.log') }
  })
  const cluster = { runDir, nodes, bootstrapServers: nodes.map(n => n.bootstrapServer) }
  for (const node of nodes) {
    launch(node, runDir)
  }
  try {
    await waitForBrokers(nodes[0]!.bootstrapServer, size)
  } catch (error) {
    await stopCluster(cluster, { keepLogs: true })
    throw new Error(`the ${size}-node cluster did not start (${(error as Error).message}); logs in ${runDir}`, {
      cause: error
    })
  }
  return cluster
}

/** Kills a node at once (SIGKILL: no controlled shutdown), as a crash would. */
export async function killNode(node: ClusterNode): Promise<void> {
  const child = node.process
  if (child === undefined || child.exitCode !== null) {
    return
  }
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

/** Starts a killed node again on its data and waits until the cluster lists all nodes. */
export async function restartNode(cluster: TestCluster, node: ClusterNode): Promise<void> {
  launch(node, cluster.runDir)
  const other = cluster.nodes.find(n => n !== node)!
  await waitForBrokers(other.bootstrapServer, cluster.nodes.length)
}

/** Moves every partition's leadership back to its preferred replica (the first in its list). */
export async function electPreferredLeaders(cluster: TestCluster): Promise<void> {
  const child = spawn(
    'java',
    kafkaJavaArgs(
      'org.apache.kafka.tools.LeaderElectionCommand',
      [
        '--bootstrap-server',
        cluster.bootstrapServers.join(','),
        '--election-type',
        'PREFERRED',
        '--all-topic-partitions'
      ],
      ['-Xmx256m']
    ),
    { stdio: ['ignore', 'ignore', 'pipe'] }
  )
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', chunk => {
    stderr += chunk
  })
  const code = await new Promise(resolve => child.once('exit', resolve))
  if (code !== 0) {
    throw new Error(`LeaderElectionCommand failed (exit ${code}): ${stderr}`)
  }
}

export async function stopCluster(cluster: TestCluster, options: { keepLogs?: boolean } = {}): Promise<void> {
  await Promise.all(
    cluster.nodes.map(async node => {
      const child = node.process
      if (child === undefined || child.exitCode !== null) {
        return
      }
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    })
  )
  if (!options.keepLogs) {
    rmSync(cluster.runDir, { recursive: true, force: true })
  }
}
