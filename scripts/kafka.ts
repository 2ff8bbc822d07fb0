/**
 * `npm run kafka:start` / `kafka:stop` / `npm run kafka -- tool <MainClass> [args]`:
 * the test broker as a command for people and benchmarks. The running broker is recorded in
 * .cache/kafka/broker.json so that stop (and the tool command) find it.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { kafkaCacheDir, type RunningBroker, runKafkaTool, startBroker, stopBroker, waitForBroker } from './broker.ts'

const stateFile = join(kafkaCacheDir, 'broker.json')

function readState(): RunningBroker | undefined {
  return existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as RunningBroker) : undefined
}

const [command, ...rest] = process.argv.slice(2)
switch (command) {
  case 'start': {
    const running = readState()
    if (running) {
      try {
        await waitForBroker(running.bootstrapServers, 2000)
        console.log(running.bootstrapServers)
        break
      } catch {
        await stopBroker(running)
      }
    }
    const broker = await startBroker('local')
    writeFileSync(stateFile, JSON.stringify(broker, null, 2))
    console.error(`Kafka broker running (pid ${broker.pid}, log ${broker.logFile}); stop it with: npm run kafka:stop`)
    console.log(broker.bootstrapServers)
    break
  }
  case 'stop': {
    const running = readState()
    if (running) {
      await stopBroker(running)
      rmSync(stateFile)
      console.error(`stopped the broker at ${running.bootstrapServers}`)
    } else {
      console.error('no broker started by kafka:start is running')
    }
    break
  }
  case 'tool': {
    const [mainClass, ...args] = rest
    if (!mainClass) {
      throw new Error('usage: npm run kafka -- tool <MainClass> [args...]')
    }
    process.stdout.write(runKafkaTool(mainClass, args))
    break
  }
  default:
    console.error('usage: node scripts/kafka.ts start | stop | tool <MainClass> [args...]')
    process.exitCode = 2
}
