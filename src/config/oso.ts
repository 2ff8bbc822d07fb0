/**
 * Configs written for OSO kafka-backup run here unchanged: before validation, every key of OSO's
 * layout that is not ours is rewritten to our key (an alias), honoured by setting ours, accepted
 * with one warning that says why it has no effect here, or refused with a sentence that says what
 * kafka-backup does instead. A key is refused, never warned about, when ignoring it would make
 * the restored data (or the groups' offsets) differ from what the operator asked for.
 *
 * The table below is the one place that knows OSO's keys; docs/config.md ("Coming from OSO
 * kafka-backup") is rendered from it.
 */
import { BackupError } from '../errors.ts'

export interface OsoWarning {
  path: string
  message: string
}

/** What a translation may do with the config as written (a plain mutable tree). */
interface Translation {
  input: Record<string, unknown>
  warn(path: string, message: string): void
  refuse(path: string, message: string): never
}

/** Called with a key's value after it was removed from its section (`path` names the key). */
type Apply = (value: unknown, t: Translation, section: Record<string, unknown>, path: string) => void

interface OsoKey {
  /** Where the key sits: a section path then the key, e.g. `['restore', 'purge_topics']`. */
  path: readonly string[]
  /** Mode the key belongs to (its section says it when there is one). */
  mode?: 'backup' | 'restore'
  /** One line for docs/config.md: what the key does here. */
  here: string
  apply: Apply
}

/**
 * A key with no effect here: warned about when used, documented as such. `reason` is written
 * once, in Markdown; the terminal's warning gets it without backticks.
 */
function ignored(reason: string): Pick<OsoKey, 'here' | 'apply'> {
  const plain = reason.replaceAll('`', '')
  return {
    here: `No effect (warning): ${reason}.`,
    apply: (_value, t, _section, path) => t.warn(path, `${path} has no effect: ${plain}`)
  }
}

/** Moves the value to our key in the same section (or `target` at another path), refusing two different values. */
function alias(ours: readonly string[], convert: (value: unknown) => unknown = value => value): Apply {
  return (value, t, _section, path) => {
    const parent = sectionAt(t.input, ours.slice(0, -1), true)
    if (parent === undefined)
      return t.refuse(path, `cannot be moved to ${ours.join('.')}: ${ours.slice(0, -1).join('.')} is not a mapping`)
    const key = ours[ours.length - 1] as string
    const converted = convert(value)
    const existing = parent[key]
    if (existing !== undefined && JSON.stringify(existing) !== JSON.stringify(converted)) {
      t.refuse(
        path,
        `sets the same thing as ${ours.join('.')}, which this file sets to another value; keep one of them`
      )
    }
    define(parent, key, converted)
  }
}

/** The keys of OSO's layout that are not ours, in the order docs/config.md lists them. */
const osoKeys: readonly OsoKey[] = [
  {
    path: ['storage', 'path_style'],
    here: 'Alias of `storage.force_path_style` (S3).',
    apply: alias(['storage', 'force_path_style'])
  },
  {
    path: ['storage', 'allow_http'],
    ...ignored('the scheme of `storage.endpoint` decides, and `http://` endpoints are accepted')
  },
  {
    path: ['storage', 'container_name'],
    here: 'Alias of `storage.container` (Azure).',
    apply: alias(['storage', 'container'])
  },
  {
    path: ['backup', 'consumer_group_snapshot'],
    mode: 'backup',
    ...ignored(
      'every backup records the committed offsets of the groups that read its topics in the manifest; a restore commits them only for `restore.consumer_groups`'
    )
  },
  {
    path: ['backup', 'poll_interval_ms'],
    mode: 'backup',
    ...ignored('fetches long-poll the brokers; tune `source.kafka_config.fetch.max.wait.ms`')
  },
  {
    path: ['backup', 'sync_interval_secs'],
    mode: 'backup',
    ...ignored(
      'there is no local offset store to sync; progress goes straight to storage every `backup.checkpoint_interval_secs`'
    )
  },
  {
    path: ['backup', 'include_offset_headers'],
    mode: 'backup',
    ...ignored(
      'the stored batches keep their source offsets, and a restore translates offsets exactly from the produce acknowledgements, so no offset headers are needed'
    )
  },
  {
    path: ['backup', 'source_cluster_id'],
    mode: 'backup',
    ...ignored(
      'the cluster id is read from the brokers and recorded in the manifest; a backup refuses to continue from another cluster'
    )
  },
  {
    path: ['backup', 'stop_at_current_offsets'],
    mode: 'backup',
    here: '`true` is what `backup.continuous: false` (the default) does: stop at the last stable offsets found at start; refused together with `continuous: true`. `false` with `continuous: true`: what continuous does. `false` in a one-shot backup: warning that the backup still stops at the offsets found at start (records written later are taken by the next run, or set `continuous: true`).',
    apply: (value, t, section, path) => {
      if (typeof value !== 'boolean') t.refuse(path, 'expected true or false')
      const continuous = section['continuous'] === true
      if (value && continuous) {
        t.refuse(path, 'true asks to stop at the offsets found at start, but backup.continuous is true; keep one')
      }
      if (!value && !continuous) {
        t.warn(
          path,
          `${path}: false has no effect in a one-shot backup: it stops at the last stable offsets found at start, and the next run takes later records (set backup.continuous: true to keep following the topics)`
        )
      }
    }
  },
  {
    path: ['backup', 'internal_topics'],
    mode: 'backup',
    here: 'Alias of `backup.include_internal_topics`.',
    apply: alias(['backup', 'include_internal_topics'])
  },
  {
    path: ['backup', 'fetch_max_bytes'],
    mode: 'backup',
    here: 'Alias of `source.kafka_config.fetch.max.bytes`.',
    apply: alias(['source', 'kafka_config', 'fetch.max.bytes'])
  },
  {
    path: ['backup', 'segment_max_records'],
    mode: 'backup',
    ...ignored(
      'segments close by size (`backup.segment_max_bytes`) and age (`backup.segment_max_interval_ms`); the records stored are the same'
    )
  },
  {
    path: ['offset_storage'],
    ...ignored(
      'backup and restore progress is kept in the backup storage itself (partition indexes, restore state), not in a local database'
    )
  },
  {
    path: ['logging'],
    ...ignored(
      'logs go to stderr (lines for people on a terminal, JSON lines otherwise); set the level with `--log-level`'
    )
  },
  {
    path: ['source', 'connection'],
    mode: 'backup',
    ...ignored('connection settings are fixed here (10 s to connect, 30 s per request)')
  },
  {
    path: ['target', 'connection'],
    mode: 'restore',
    ...ignored('connection settings are fixed here (10 s to connect, 30 s per request)')
  },
  {
    path: ['target', 'topics'],
    mode: 'restore',
    here: 'Alias of `restore.topics`; a list (or comma-separated string) of names becomes `restore.topics.include`.',
    apply: alias(['restore', 'topics'], value =>
      typeof value === 'string' || Array.isArray(value) ? { include: value } : value
    )
  },
  {
    path: ['restore', 'produce_acks'],
    mode: 'restore',
    here: '`all` or `-1`: what restore always does. Other values have no effect (warning): restore always waits for all in-sync replicas, because its idempotent producer and exact offset translation need it.',
    apply: (value, t, _section, path) => {
      if (value === 'all' || value === -1 || value === '-1') return
      t.warn(
        path,
        `${path} has no effect: restore always produces with acks=all, because its idempotent producer and exact offset translation need it`
      )
    }
  },
  {
    path: ['restore', 'produce_timeout_ms'],
    mode: 'restore',
    ...ignored('a Produce request waits up to 30 s and is retried until the restore gives up with an error')
  },
  {
    path: ['restore', 'consumer_group_strategy'],
    mode: 'restore',
    here: '`skip`: no offsets are committed (refused with `reset_consumer_offsets: true`). Any other strategy: warning that offsets are translated exactly from produce acknowledgements instead; they are committed when `reset_consumer_offsets` is true, or later with `kafka-backup offsets`.',
    apply: (value, t, section, path) => {
      if (value === 'skip') {
        if (section['reset_consumer_offsets'] === true) {
          t.refuse(path, 'skip asks to commit no offsets, but restore.reset_consumer_offsets is true; keep one')
        }
        return
      }
      t.warn(
        path,
        `${path} has no effect: offsets are translated exactly from produce acknowledgements; they are committed when restore.reset_consumer_offsets is true, or later with kafka-backup offsets`
      )
    }
  },
  {
    path: ['restore', 'include_original_offset_header'],
    mode: 'restore',
    here: '`false`: what restore does. `true` is refused: restored records are byte for byte the backed-up ones, without added headers; `kafka-backup offset-map` and `kafka-backup offsets plan` give the source offset of every restored record.',
    apply: (value, t, _section, path) => {
      if (value === false || value === null) return
      t.refuse(
        path,
        'kafka-backup does not add headers to restored records (they are restored byte for byte); kafka-backup offset-map and kafka-backup offsets plan give the source offset of every restored record. Remove the key or set it to false'
      )
    }
  },
  {
    path: ['restore', 'produce_batch_size'],
    mode: 'restore',
    ...ignored(
      'batches are restored as they were backed up; small consecutive batches are merged up to `target.kafka_config.batch.size` bytes'
    )
  },
  {
    path: ['restore', 'checkpoint_state'],
    mode: 'restore',
    ...ignored(
      'restore progress is kept in the backup storage (or `restore.state_storage`), and a rerun of the same restore resumes from it'
    )
  },
  {
    path: ['restore', 'rate_limit_records_per_sec'],
    mode: 'restore',
    here: '`0` or empty: no limit. Any other value is refused: restore limits bytes per second (`restore.rate_limit_bytes_per_sec`), not records.',
    apply: (value, t, _section, path) => {
      if (value === 0 || value === null) return
      t.refuse(
        path,
        'kafka-backup limits a restore by bytes, not records: set restore.rate_limit_bytes_per_sec instead (remove this key)'
      )
    }
  },
  {
    path: ['restore', 'offset_report'],
    mode: 'restore',
    ...ignored(
      'the offset map is kept with the restore state; print it with `kafka-backup offset-map` or plan group offsets with `kafka-backup offsets plan`'
    )
  },
  {
    path: ['restore', 'repartitioning'],
    mode: 'restore',
    here: '`true` or `enabled: true`: alias of `restore.repartition.enabled: true` (records re-partitioned by key into the target partition count). Empty, `false` or `enabled: false`: accepted. Other keys are refused: `restore.repartition.partitions` sets the partition count of created topics.',
    apply: (value, t, section, path) => {
      const fields = isRecord(value) ? Object.keys(value) : []
      if (isRecord(value) && fields.some(field => field !== 'enabled')) {
        t.refuse(
          path,
          `only enabled is understood here, found ${fields.filter(field => field !== 'enabled').join(', ')}: records go to the partition Kafka's default partitioner picks for their key; set the partition count of created topics with restore.repartition.partitions`
        )
      }
      const enabled = value === true || (isRecord(value) && value['enabled'] === true)
      if (!enabled) return
      const ours = sectionAt(section, ['repartition'], true)
      if (ours === undefined) return t.refuse(path, 'cannot be moved to restore.repartition: it is not a mapping')
      if (ours['enabled'] === false) {
        t.refuse(path, 'asks to re-partition, but restore.repartition.enabled is false; keep one')
      }
      define(ours, 'enabled', true)
    }
  },
  {
    path: ['restore', 'purge_topics'],
    mode: 'restore',
    here: '`false`: accepted. `true` is refused: kafka-backup never deletes records on the target; it refuses target partitions that hold records unless `allow_non_empty_target` is true. Delete or recreate the topics first.',
    apply: (value, t, _section, path) => {
      if (value === false || value === null) return
      t.refuse(
        path,
        'kafka-backup never deletes records on the target; delete or recreate the topics first (a target partition that holds records is refused unless restore.allow_non_empty_target is true)'
      )
    }
  },
  {
    path: ['restore', 'auto_consumer_groups'],
    mode: 'restore',
    here: '`true`: commits the translated offsets of every group captured in the backup (`reset_consumer_offsets: true`, `consumer_groups: ["*"]` unless the file names groups). `false`: no effect.',
    apply: (value, t, section, path) => {
      if (typeof value !== 'boolean') t.refuse(path, 'expected true or false')
      if (!value) return
      if (section['reset_consumer_offsets'] === false) {
        t.refuse(path, 'true asks to commit group offsets, but restore.reset_consumer_offsets is false; keep one')
      }
      define(section, 'reset_consumer_offsets', true)
      if (section['consumer_groups'] === undefined) define(section, 'consumer_groups', ['*'])
    }
  },
  {
    path: ['metrics', 'bind_address'],
    here: 'Alias of `metrics.host`; `host:port` also sets `metrics.port`.',
    apply: (value, t, section, path) => {
      const hostPort = typeof value === 'string' ? /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value) : null
      if (hostPort === null) return alias(['metrics', 'host'])(value, t, section, path)
      alias(['metrics', 'host'])((hostPort[1] ?? '').replace(/^\[(.*)\]$/, '$1'), t, section, path)
      alias(['metrics', 'port'])(Number(hostPort[2]), t, section, path)
    }
  },
  {
    path: ['metrics', 'path'],
    here: '`/metrics`: accepted. Another path is refused: metrics are served on `/metrics` (and health on `/health`).',
    apply: (value, t, _section, path) => {
      if (value === '/metrics') return
      t.refuse(
        path,
        'metrics are served on /metrics (and health on /health); point the scraper there and remove this key'
      )
    }
  },
  {
    path: ['metrics', 'update_interval_ms'],
    ...ignored('metric values are current at every scrape')
  },
  {
    path: ['metrics', 'max_partition_labels'],
    ...ignored('metrics carry topic and partition labels for the partitions of the run')
  }
]

const kerberosKeys = ['sasl_kerberos_service_name', 'sasl_keytab_path', 'sasl_krb5_config_path'] as const

/** Rows of the "Coming from OSO kafka-backup" section of docs/config.md. */
export function osoKeyReference(): { path: string; here: string }[] {
  return [
    ...osoKeys.map(key => ({ path: key.path.join('.'), here: key.here })),
    ...kerberosKeys.map(key => ({
      path: `source/target.security.${key}`,
      here: 'Refused: Kerberos (GSSAPI) is not supported; use SASL PLAIN, SCRAM or OAUTHBEARER, or mutual TLS.'
    })),
    {
      path: 'restore.partition_mapping (flat)',
      here: 'A flat `{source-partition: target-partition}` mapping applies to every restored topic.'
    },
    {
      path: 'restore.topic_mapping (empty)',
      here: 'An empty value (null) means no mapping.'
    }
  ]
}

/**
 * Rewrites OSO's keys in `input` (the config as written, after `${VAR}` substitution) in place
 * and returns the warnings for keys that have no effect. Refusals throw KB_CONFIG_INVALID naming
 * the file, line and key.
 */
export function translateOsoKeys(
  input: Record<string, unknown>,
  file: string,
  lineOf: (path: readonly PropertyKey[]) => number | undefined
): OsoWarning[] {
  const warnings: OsoWarning[] = []
  const refuse = (path: string, message: string): never => {
    const line = lineOf(path.split('.'))
    const at = line === undefined ? `${file}: ` : `${file}:${line}: `
    throw new BackupError('KB_CONFIG_INVALID', `${at}${path}: ${message}`, {
      file,
      path,
      ...(line === undefined ? {} : { line })
    })
  }
  const t: Translation = {
    input,
    warn: (path, message) => warnings.push({ path, message }),
    refuse
  }
  for (const side of ['source', 'target']) {
    const security = sectionAt(input, [side, 'security'], false)
    for (const key of kerberosKeys) {
      if (security?.[key] !== undefined) {
        refuse(
          `${side}.security.${key}`,
          'Kerberos (GSSAPI) is not supported; authenticate with SASL PLAIN, SCRAM or OAUTHBEARER (security.sasl_mechanism), or with mutual TLS'
        )
      }
    }
  }
  for (const key of osoKeys) {
    if (key.mode !== undefined && input['mode'] !== key.mode) continue
    const section = sectionAt(input, key.path.slice(0, -1), false)
    const name = key.path[key.path.length - 1] as string
    if (section === undefined || !Object.hasOwn(section, name)) continue
    const value = section[name]
    delete section[name]
    key.apply(value, t, section, key.path.join('.'))
  }
  if (input['mode'] === 'restore') {
    const restore = sectionAt(input, ['restore'], false)
    if (restore !== undefined) {
      // An empty `topic_mapping:` / `partition_mapping:` is YAML's null: no mapping.
      for (const key of ['topic_mapping', 'partition_mapping']) if (restore[key] === null) delete restore[key]
    }
  }
  return warnings
}

/** The mapping at `path`, created when `create` is set; undefined when absent or not a mapping. */
function sectionAt(
  input: Record<string, unknown>,
  path: readonly string[],
  create: boolean
): Record<string, unknown> | undefined {
  let current = input
  for (const key of path) {
    let child = current[key]
    if ((child === undefined || child === null) && create) {
      child = {}
      define(current, key, child)
    }
    if (!isRecord(child)) return undefined
    current = child
  }
  return current
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}
