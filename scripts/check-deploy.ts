/**
 * Checks the Kubernetes manifests in deploy/ without a cluster (`npm run deploy:check`):
 *
 * - every object against the Kubernetes API schema of its kind (types, required fields, enum
 *   values), with the validators the `kubernetes-models` package generates from the Kubernetes
 *   OpenAPI document; they accept fields the schema does not name, so a misspelt optional
 *   field is not caught here (a cluster's server-side validation catches it);
 * - every config file in the ConfigMap with kafka-backup's own config loader, with the Secret's
 *   keys as the environment its `${VAR}`s read;
 * - what this tool needs of its workloads: the `--config` file they run is in the ConfigMap,
 *   their probes ask `/health` on the metrics port the config sets, one process per backup id
 *   (replicas 1 with strategy Recreate unless `backup.workers` share the backup; restore
 *   parallelism 1 unless `restore.workers` share the restore, then no `completions`; CronJob
 *   concurrencyPolicy Forbid,
 *   no backup id shared by two workloads).
 *
 * Prints one line per problem and exits 1 when there is one.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { parseConfig } from '../src/config/load.ts'

type Json = Record<string, unknown>

interface Manifest {
  file: string
  object: Json
}

interface Container {
  args?: string[]
  ports?: Array<{ name?: string; containerPort?: number }>
  envFrom?: Array<{ secretRef?: { name?: string } }>
  readinessProbe?: { httpGet?: { path?: string; port?: string | number } }
  livenessProbe?: { httpGet?: { path?: string; port?: string | number } }
}

/** `apps/v1` + `Deployment` -> `kubernetes-models/apps/v1/Deployment`; core `v1` has no group. */
function modelPath(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`
}

async function schemaProblems({ file, object }: Manifest): Promise<string[]> {
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown }
  const name = `${file}: ${String(kind)} ${String((object.metadata as Json | undefined)?.name)}`
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    return [`${name}: expected apiVersion and kind`]
  }
  let Model: new (data: Json) => { validate(): void }
  try {
    Model = (await import(modelPath(apiVersion, kind)))[kind]
  } catch {
    return [`${name}: ${apiVersion} ${kind} is not a Kubernetes kind this check knows`]
  }
  try {
    new Model(object).validate()
    return []
  } catch (error) {
    return [`${name}: ${(error as Error).message}`]
  }
}

function podSpecOf(object: Json): { containers?: Container[] } | undefined {
  const spec = object.spec as Json | undefined
  const template = (object.kind === 'CronJob' ? ((spec?.jobTemplate as Json)?.spec as Json) : spec)?.template as
    | Json
    | undefined
  return template?.spec as { containers?: Container[] } | undefined
}

/** The problems of the manifests in `folder` (empty: all good). */
export async function checkDeployFolder(folder: string): Promise<string[]> {
  const manifests: Manifest[] = []
  const problems: string[] = []
  for (const name of readdirSync(folder)
    .filter(n => n.endsWith('.yaml'))
    .sort()) {
    const file = relative(process.cwd(), join(folder, name))
    for (const document of parseAllDocuments(readFileSync(join(folder, name), 'utf8'))) {
      if (document.errors.length > 0) {
        problems.push(`${file}: ${document.errors[0]!.message}`)
      } else if (document.contents !== null) {
        manifests.push({ file, object: document.toJS() as Json })
      }
    }
  }
  for (const manifest of manifests) {
    problems.push(...(await schemaProblems(manifest)))
  }

  const secrets = manifests.filter(m => m.object.kind === 'Secret')
  const env: Record<string, string> = {}
  for (const { object } of secrets) {
    Object.assign(env, object.stringData ?? {})
  }
  const configs = new Map<
    string,
    { backupId: string; mode: string; metricsPort: number | undefined; workers: boolean; restoreWorkers: boolean }
  >()
  for (const { file, object } of manifests.filter(m => m.object.kind === 'ConfigMap')) {
    for (const [key, text] of Object.entries((object.data ?? {}) as Record<string, string>)) {
      try {
        const config = parseConfig(text, `${file} (data.${key})`, env)
        configs.set(key, {
          backupId: config.backup_id,
          mode: config.mode,
          metricsPort: config.metrics?.enabled ? config.metrics.port : undefined,
          workers: config.mode === 'backup' && config.backup.workers.enabled,
          restoreWorkers: config.mode === 'restore' && config.restore.workers.enabled
        })
      } catch (error) {
        problems.push(`${file}: data.${key}: ${(error as Error).message}`)
      }
    }
  }

  const writers = new Map<string, string>()
  for (const { file, object } of manifests) {
    const containers = podSpecOf(object)?.containers
    if (!containers) {
      continue
    }
    const where = `${file}: ${String(object.kind)}`
    const spec = object.spec as Json
    const configOf = (container: Container) =>
      configs.get(container.args?.[container.args.indexOf('--config') + 1]?.split('/').at(-1) ?? '')
    // Workers of one backup share it through their Kafka group: any number of replicas, and a
    // rolling update only moves partitions between them.
    const workers = containers.every(container => configOf(container)?.workers === true)
    if (
      object.kind === 'Deployment' &&
      !workers &&
      (spec.replicas !== 1 || (spec.strategy as Json)?.type !== 'Recreate')
    ) {
      problems.push(
        `${where}: expected replicas: 1 and strategy Recreate (one process writes a backup), or backup.workers.enabled in its config`
      )
    }
    if (object.kind === 'CronJob' && spec.concurrencyPolicy !== 'Forbid') {
      problems.push(`${where}: expected concurrencyPolicy: Forbid (one run writes a backup at a time)`)
    }
    for (const container of containers) {
      const args = container.args ?? []
      const configFile = args[args.indexOf('--config') + 1]?.split('/').at(-1)
      const config = configFile === undefined ? undefined : configs.get(configFile)
      if (!config) {
        problems.push(`${where}: --config ${String(configFile)} is not a file of the ConfigMap`)
        continue
      }
      if (object.kind === 'Job' && !config.restoreWorkers && spec.parallelism !== 1) {
        problems.push(`${where}: expected parallelism: 1 (one process runs a restore without restore.workers)`)
      }
      if (object.kind === 'Job' && config.restoreWorkers && spec.completions !== undefined) {
        // Every worker exits 0 only once the whole restore is complete: the Job is done when one
        // pod succeeds (the work-queue pattern), not after a count of completions.
        problems.push(
          `${where}: expected no completions with restore.workers (each worker ends with the whole restore)`
        )
      }
      if (config.mode === 'backup') {
        const other = writers.get(config.backupId)
        if (other) {
          problems.push(`${where}: backup_id ${config.backupId} is also written by ${other}`)
        }
        writers.set(config.backupId, where)
      }
      for (const ref of container.envFrom ?? []) {
        if (ref.secretRef && !secrets.some(s => (s.object.metadata as Json)?.name === ref.secretRef?.name)) {
          problems.push(`${where}: secretRef ${String(ref.secretRef.name)} names no Secret in ${folder}`)
        }
      }
      const port = container.ports?.find(p => p.name === 'metrics')?.containerPort
      if (config.metricsPort === undefined || port !== config.metricsPort) {
        problems.push(`${where}: the metrics port ${String(port)} is not the config's metrics.port`)
      }
      for (const probe of [container.readinessProbe, container.livenessProbe]) {
        if (probe && (probe.httpGet?.path !== '/health' || probe.httpGet.port !== 'metrics')) {
          problems.push(`${where}: a probe must ask /health on the metrics port`)
        }
      }
    }
  }
  return problems
}

if (import.meta.main) {
  const folder = resolve(process.argv[2] ?? 'deploy')
  const problems = await checkDeployFolder(folder)
  for (const problem of problems) {
    console.error(problem)
  }
  console.log(problems.length === 0 ? `${folder}: the manifests check out` : `${problems.length} problems`)
  process.exitCode = problems.length === 0 ? 0 : 1
}
