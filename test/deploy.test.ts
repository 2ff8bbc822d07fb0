/**
 * The Kubernetes manifests in deploy/ pass their check (scripts/check-deploy.ts), and the check
 * finds what it is there to find.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { checkDeployFolder } from '../scripts/check-deploy.ts'

const deploy = join(import.meta.dirname, '..', 'deploy')

test('the manifests in deploy/ pass the Kubernetes schema and the checks of their kafka-backup configs', async () => {
  assert.deepEqual(await checkDeployFolder(deploy), [])
})

test('the check refuses a wrong Kubernetes type, a second replica, a bad config key, a probe off /health and a parallel restore without workers', async () => {
  const folder = mkdtempSync(join(tmpdir(), 'kafka-backup-deploy-'))
  cpSync(deploy, folder, { recursive: true })
  const edit = (file: string, from: string, to: string) => {
    const text = readFileSync(join(folder, file), 'utf8')
    assert.ok(text.includes(from), `${file} holds ${from}`)
    writeFileSync(join(folder, file), text.replace(from, to))
  }
  // A second replica is refused once its config no longer makes the replicas workers of one group.
  edit('configmap.yaml', 'workers:\n        enabled: true', 'workers:\n        enabled: false')
  edit('restore-job.yaml', 'containerPort: 9090', 'containerPort: "9090"')
  edit('configmap.yaml', 'checkpoint_interval_secs: 60', 'checkpoint_interval_secs: soon')
  edit('cronjob.yaml', 'path: /health', 'path: /healthz')
  edit('configmap.yaml', 'workers:\n        enabled: true', 'workers:\n        enabled: false')
  const problems = await checkDeployFolder(folder)
  const expected = [
    /cronjob\.yaml: CronJob: a probe must ask \/health on the metrics port/,
    /deployment\.yaml: Deployment: expected replicas: 1 and strategy Recreate/,
    /restore-job\.yaml: Job kafka-restore: .*containerPort must be integer/,
    /configmap\.yaml: data\.backup-continuous\.yaml: .*checkpoint_interval_secs/,
    /restore-job\.yaml: Job: expected parallelism: 1 \(one process runs a restore without restore\.workers\)/
  ]
  for (const pattern of expected) {
    assert.ok(
      problems.some(p => pattern.test(p)),
      `${pattern} in:\n${problems.join('\n')}`
    )
  }
})
