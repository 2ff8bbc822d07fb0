/**
 * The YAML configs the benchmarks give our CLI, backing up to and restoring from a filesystem
 * folder. OSO's configs (bench/oso.ts) start as ours do, so its backup config builds on ours.
 */

/** A backup of `topic` into `storagePath`; `more`: lines after `storage:` (a `backup:` section). */
export function backupYaml(
  bootstrapServers: string,
  topic: string,
  storagePath: string,
  backupId: string,
  more: readonly string[] = []
): string {
  return [
    'mode: backup',
    `backup_id: ${backupId}`,
    'source:',
    `  bootstrap_servers: [${bootstrapServers}]`,
    '  topics:',
    `    include: [${topic}]`,
    'storage:',
    '  backend: filesystem',
    `  path: ${storagePath}`,
    ...more,
    ''
  ].join('\n')
}

/**
 * A restore of the backup of `topic` in `storagePath` into `targetTopic`; `target`: more lines
 * under `target:` (its `kafka_config:`). It ends in the `restore:` section, for more keys of it.
 */
export function restoreYaml(
  bootstrapServers: string,
  topic: string,
  targetTopic: string,
  storagePath: string,
  backupId: string,
  target: readonly string[] = []
): string {
  return [
    'mode: restore',
    `backup_id: ${backupId}`,
    'target:',
    `  bootstrap_servers: [${bootstrapServers}]`,
    ...target,
    'storage:',
    '  backend: filesystem',
    `  path: ${storagePath}`,
    'restore:',
    '  topics:',
    `    include: [${topic}]`,
    '  topic_mapping:',
    `    ${topic}: ${targetTopic}`,
    ''
  ].join('\n')
}
