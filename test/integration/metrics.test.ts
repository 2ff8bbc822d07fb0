import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tempStorage } from '../helpers/backup.ts'
import { finished, startCli, writeConfig } from '../helpers/cli.ts'
import { bootstrapServers, createTopic, uniqueTopic } from '../helpers/kafka.ts'
import { clusterAndProducer } from '../helpers/setup.ts'
import { until } from '../helpers/wait.ts'

const { cluster, producer } = clusterAndProducer()

function sample(text: string, name: string): number {
  const line = text.split('\n').find(l => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  assert.ok(line, `${name} is exported`)
  return Number(line.slice(line.lastIndexOf(' ') + 1))
}

test('/metrics during and after a backup: counters equal what was backed up, histograms observed', async () => {
  const topic = uniqueTopic('metrics')
  await createTopic(cluster, topic, 2)
  for (let round = 0; round < 20; round++) {
    await producer.send({
      messages: Array.from({ length: 100 }, (_, i) => ({
        topic,
        partition: i % 2,
        key: Buffer.from(`k${i}`),
        value: Buffer.from(`value ${round} ${i} `.repeat(20))
      }))
    })
  }
  const config = writeConfig(`mode: backup
backup_id: metrics
source:
  bootstrap_servers: ${bootstrapServers()}
  topics: { include: [${topic}] }
  kafka_config:
    fetch.min.bytes: 16777216
    fetch.max.bytes: 16777216
    fetch.max.wait.ms: 100
    max.partition.fetch.bytes: 1
storage: { backend: filesystem, path: ${tempStorage().location} }
backup: { segment_max_bytes: 65536, frame_max_bytes: 65536 }
metrics: { enabled: true, port: 0, host: 127.0.0.1, keep_alive_seconds: 60 }
`)
  const child = startCli(['backup', '--config', config, '--json'])
  const result = finished(child)
  let stderr = ''
  child.stderr?.on('data', chunk => {
    stderr += chunk
  })
  let port: number | undefined
  await until(() => {
    port = Number(/"port":(\d+)/.exec(stderr)?.[1] ?? /port=(\d+)/.exec(stderr)?.[1]) || undefined
    return port !== undefined
  }, 'the metrics port to be logged')
  const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { status: string }
  assert.equal(health.status, 'running')
  const during = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  assert.ok(sample(during, 'process_resident_memory_bytes') > 0)

  let stdout = ''
  child.stdout?.on('data', chunk => {
    stdout += chunk
  })
  await until(() => stdout.includes('"records"'), 'the backup summary on stdout')
  const summary = JSON.parse(stdout)
  assert.equal(summary.records, 2000)
  const afterRun = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  assert.equal(sample(afterRun, 'kafka_backup_records_total'), 2000)
  assert.equal(sample(afterRun, 'kafka_backup_bytes_total'), summary.bytes)
  assert.ok(sample(afterRun, 'kafka_backup_batch_duration_seconds_count') > 0)
  assert.ok(sample(afterRun, 'kafka_backup_storage_write_latency_seconds_count') > 0)
  assert.ok(sample(afterRun, 'kafka_backup_compression_ratio') > 1)
  assert.match(afterRun, new RegExp(`kafka_backup_lag_records\\{topic="${topic}",partition="0"\\} 0`))
  assert.equal(
    ((await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { status: string }).status,
    'finished'
  )

  child.kill('SIGTERM')
  assert.equal((await result).code, 0, 'SIGTERM during keep-alive ends the run cleanly')
})
