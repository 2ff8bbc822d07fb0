/**
 * The config schema: the one place that declares every key of the YAML config, its type, its
 * default and its description. `docs/config.md` is generated from it
 * (scripts/config-reference.ts), and the loader (load.ts) validates files against it, so the
 * engines receive complete, typed options and never re-check them.
 *
 * Keys keep the snake_case names operators know from existing Kafka backup tools, and the
 * engines read them as they are (one vocabulary from the YAML file to the code).
 *
 * Messages of the constraints below follow one convention the loader relies on: a message that
 * starts with "expected " is the expectation only (the loader adds the key path and what it
 * found); any other custom message is a whole sentence.
 */
import { z } from 'zod'
import { compressionLevels } from '../segment/levels.ts'
import {
  type azureBackend,
  backendOf,
  type filesystemBackend,
  type gcsBackend,
  type memoryBackend,
  type s3Backend,
  storageBackends,
  storageSchemas
} from '../storage/backends.ts'
import { KiB, MiB } from '../units.ts'
import {
  backupMetadataSchema,
  byteCount,
  encryptionSchema,
  fail,
  httpUrl,
  rebuildingRestoreKeys,
  refuse,
  restoreMetadataSchema,
  scramUsersFileSchema,
  storeRecordsSchema,
  whenValid,
  workersSchema
} from './schema-parts.ts'

/** Codecs for segment frames (docs/segment-format.md). */
export const compressionCodecs = ['zstd', 'lz4', 'gzip', 'none'] as const

/**
 * Keys whose values are credentials. Their values never appear in error messages, warnings or
 * `redactConfig` output.
 */
export const secretKeys: ReadonlySet<string> = new Set([
  'sasl_password',
  'ssl_key_password',
  ...storageBackends.flatMap(entry => entry.secretKeys ?? [])
])

/** True for a key whose value must never be shown (the list above, and anything named like a password, secret or token). */
export function isSecretKey(key: string | number | symbol): boolean {
  if (typeof key !== 'string') return false
  return secretKeys.has(key) || /password|secret|token|credential/i.test(key)
}

// ---- building blocks -------------------------------------------------------------------------

/**
 * A list given as a YAML list or as one comma-separated string (handy with `${ENV}`), with an
 * default given with `.prefault()`, so it goes through the same checks and the reference shows it.
 */
function stringList<T extends z.ZodType<string, string>>(item: T, minEntries: number, what: string) {
  return z
    .union([z.string(), z.array(z.string())], { error: `expected a list of ${what} or one comma-separated string` })
    .transform(value =>
      typeof value === 'string'
        ? value
            .split(',')
            .map(entry => entry.trim())
            .filter(entry => entry !== '')
        : value
    )
    .pipe(z.array(item).min(minEntries))
}

const bootstrapServer = z.string().refine(isHostPort, {
  message: 'expected host:port with a port from 1 to 65535 (e.g. broker-1:9092), without a protocol prefix'
})

function isHostPort(value: string): boolean {
  const match = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?):(\d{1,5})$/.exec(value)
  const port = Number(match?.[1])
  return match !== null && port >= 1 && port <= 65535
}

/** Kafka's rule for topic names: 1 to 249 of [a-zA-Z0-9._-], and neither `.` nor `..`. */
export function isValidTopicName(name: string): boolean {
  return /^[A-Za-z0-9._-]{1,249}$/.test(name) && name !== '.' && name !== '..'
}

const topicName = z.string().refine(isValidTopicName, {
  message: 'expected a Kafka topic name (1 to 249 letters, digits, ".", "_" or "-")'
})

const topicPattern = z.string().regex(/^[A-Za-z0-9._*-]{1,249}$/, {
  message: 'expected a topic name or a pattern with * wildcards (letters, digits, ".", "_", "-" and "*")'
})

const partitionNumber = z.int().min(0).max(2_147_483_647)

/** An epoch-milliseconds timestamp, also accepted as an ISO-8601 date-time with a time zone. */
const timestampMs = z
  .union(
    [
      z.int().min(0),
      z.iso.datetime({
        offset: true,
        error: 'expected epoch milliseconds or an ISO-8601 date-time with a time zone, e.g. 2024-05-01T12:00:00Z'
      })
    ],
    { error: 'expected epoch milliseconds or an ISO-8601 date-time with a time zone, e.g. 2024-05-01T12:00:00Z' }
  )
  .transform(value => (typeof value === 'number' ? value : Date.parse(value)))

// ---- Kafka clusters --------------------------------------------------------------------------

export const securitySchema = z
  .strictObject({
    security_protocol: z
      .enum(['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'])
      .default('PLAINTEXT')
      .describe('How to talk to the brokers: plain TCP or TLS, with or without SASL authentication.'),
    sasl_mechanism: z
      .enum(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER'])
      .optional()
      .describe('SASL mechanism. Required with SASL_PLAINTEXT and SASL_SSL; not allowed otherwise.'),
    sasl_username: z
      .string()
      .min(1)
      .optional()
      .describe('SASL user name. Required with SASL_PLAINTEXT and SASL_SSL, except with OAUTHBEARER.'),
    sasl_password: z
      .string()
      .min(1)
      .optional()
      .describe(
        'SASL password (secret: prefer an environment variable). Required with SASL_PLAINTEXT and SASL_SSL, except with OAUTHBEARER.'
      ),
    sasl_oauthbearer_token_endpoint_url: httpUrl
      .optional()
      .describe(
        'OAUTHBEARER: the OAuth 2 token endpoint the tool gets its tokens from (client-credentials grant). It takes a new token when half the lifetime of the current one has passed, so connections that authenticate again during a long run present a fresh one.'
      ),
    sasl_oauthbearer_client_id: z.string().min(1).optional().describe('OAUTHBEARER: the OAuth client id.'),
    sasl_oauthbearer_client_secret: z
      .string()
      .min(1)
      .optional()
      .describe('OAUTHBEARER: the OAuth client secret (secret: prefer an environment variable).'),
    sasl_oauthbearer_scope: z
      .string()
      .min(1)
      .optional()
      .describe('OAUTHBEARER: the scope to ask for (space-separated). Unset: none asked for.'),
    ssl_ca_location: z
      .string()
      .min(1)
      .optional()
      .describe(
        "PEM file of the CA certificates that sign the brokers' certificates (SSL, SASL_SSL). Unset: the system CAs. Relative paths are resolved against the config file's folder."
      ),
    ssl_certificate_location: z
      .string()
      .min(1)
      .optional()
      .describe('PEM client certificate for mutual TLS (SSL, SASL_SSL). Needs `ssl_key_location`.'),
    ssl_key_location: z
      .string()
      .min(1)
      .optional()
      .describe('PEM private key of the client certificate (SSL, SASL_SSL). Needs `ssl_certificate_location`.'),
    ssl_key_password: z.string().min(1).optional().describe('Password of an encrypted `ssl_key_location` (secret).')
  })
  .superRefine((security, ctx) => {
    const protocol = security.security_protocol
    const usesSasl = protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL'
    const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL'
    const oauth = security.sasl_mechanism === 'OAUTHBEARER'
    const oauthKeys = [
      'sasl_oauthbearer_token_endpoint_url',
      'sasl_oauthbearer_client_id',
      'sasl_oauthbearer_client_secret'
    ] as const
    const required = usesSasl ? ['sasl_mechanism', ...(oauth ? oauthKeys : ['sasl_username', 'sasl_password'])] : []
    for (const key of ['sasl_mechanism', 'sasl_username', 'sasl_password', ...oauthKeys] as const) {
      if (required.includes(key) && security[key] === undefined) {
        fail(
          ctx,
          [key],
          `a value because security_protocol is ${protocol}${oauth ? ' and sasl_mechanism is OAUTHBEARER' : ''}`
        )
      } else if (!usesSasl && security[key] !== undefined) {
        refuse(ctx, [key], `only used with security_protocol SASL_PLAINTEXT or SASL_SSL (found ${protocol})`)
      } else if (usesSasl && !required.includes(key) && key !== 'sasl_mechanism' && security[key] !== undefined) {
        refuse(ctx, [key], `not used with sasl_mechanism ${security.sasl_mechanism}`)
      }
    }
    if (security.sasl_oauthbearer_scope !== undefined && !oauth) {
      refuse(ctx, ['sasl_oauthbearer_scope'], 'only used with sasl_mechanism OAUTHBEARER')
    }
    if (!usesTls) {
      for (const key of [
        'ssl_ca_location',
        'ssl_certificate_location',
        'ssl_key_location',
        'ssl_key_password'
      ] as const) {
        if (security[key] !== undefined) {
          refuse(ctx, [key], `only used with security_protocol SSL or SASL_SSL (found ${protocol})`)
        }
      }
    }
    if ((security.ssl_certificate_location === undefined) !== (security.ssl_key_location === undefined)) {
      const missing = security.ssl_key_location === undefined ? 'ssl_key_location' : 'ssl_certificate_location'
      fail(ctx, [missing], 'ssl_certificate_location and ssl_key_location to be set together')
    }
    if (security.ssl_key_password !== undefined && security.ssl_key_location === undefined) {
      fail(ctx, ['ssl_key_location'], 'a key file because ssl_key_password is set')
    }
  }, whenValid)
  .describe('Authentication and encryption of the connections to the brokers.')

const bootstrapServers = stringList(bootstrapServer, 1, 'host:port').describe(
  'Brokers to bootstrap from, as a list or one comma-separated string of host:port.'
)

const clientId = z
  .string()
  .min(1)
  .default('kafka-backup')
  .describe('Client id sent with every request (shows in broker logs and quotas).')

const unreachableTimeoutSecs = z
  .int()
  .min(1)
  .default(300)
  .describe(
    'How long a run keeps retrying while no broker answers (stopped, restarting, unreachable), logging each wait, before it ends with KB_KAFKA_UNREACHABLE. The clock restarts whenever the cluster answers again.'
  )

export const sourceKafkaConfigSchema = z
  .strictObject({
    'fetch.max.bytes': byteCount()
      // Below Kafka's 50 MiB: two responses in max_bytes_in_flight keep fetching and writing
      // overlapped; 8 MiB keeps throughput and peak memory under 150 MiB (docs/benchmarks.md, "Peak RSS").
      .default(8 * MiB)
      .describe(
        'Most bytes one Fetch response may carry (all partitions of one broker). The broker still returns a first batch larger than this, so a large message never blocks the backup.'
      ),
    'max.partition.fetch.bytes': byteCount()
      .default(2 * MiB)
      .describe('Most bytes of one partition in one Fetch response (same first-batch exception).'),
    'fetch.min.bytes': byteCount(0)
      .default(1)
      .describe(
        'The broker holds a Fetch until this many bytes are ready or `fetch.max.wait.ms` passes. Larger values mean fewer round trips on quiet topics.'
      ),
    'fetch.max.wait.ms': z
      .int()
      .min(0)
      .default(500)
      .describe('Longest the broker holds a Fetch waiting for `fetch.min.bytes`.'),
    'socket.receive.buffer.bytes': byteCount()
      .optional()
      .describe(
        'Accepted for compatibility; no effect (a warning says so): Node.js cannot set SO_RCVBUF, so the operating system sizes the buffer (Linux autotunes it).'
      )
  })
  .superRefine((kafka, ctx) => {
    if (kafka['fetch.min.bytes'] > kafka['fetch.max.bytes']) {
      fail(ctx, ['fetch.min.bytes'], `at most fetch.max.bytes (${kafka['fetch.max.bytes']})`)
    }
  }, whenValid)
  .describe('Fetch tuning, with the names of the Kafka consumer settings it mirrors. Other keys are refused.')

export const targetKafkaConfigSchema = z
  .strictObject({
    'socket.send.buffer.bytes': byteCount()
      .optional()
      .describe(
        'Accepted for compatibility; no effect (a warning says so): Node.js cannot set SO_SNDBUF, so the operating system sizes the buffer (Linux autotunes it).'
      ),
    'batch.size': byteCount(1 * KiB)
      .default(512 * KiB)
      .describe(
        "Restore merges runs of consecutive batches under 16 KiB (e.g. from a producer with linger 0) into one batch of up to this many bytes, because the broker takes one batch per partition per Produce request. Larger batches pass unchanged. Never more than the target topic's `max.message.bytes`."
      ),
    'linger.ms': z
      .int()
      .min(0)
      .optional()
      .describe(
        'Accepted for compatibility; no effect (a warning says so). Restore reads data that already exists, so a Produce request is sent as soon as it is full or the reader has nothing more.'
      )
  })
  .describe('Produce tuning, with the names of the Kafka producer settings it mirrors. Other keys are refused.')

export const topicSelectionSchema = z
  .strictObject({
    include: stringList(topicPattern, 1, 'topic names or patterns')
      .prefault(['*'])
      .describe(
        'Topics to take: names or patterns where `*` matches any run of characters. A list or a comma-separated string.'
      ),
    exclude: stringList(topicPattern, 0, 'topic names or patterns')
      .prefault([])
      .describe('Topics to leave out even when `include` matches them (same pattern syntax).')
  })
  .describe('Which topics to take.')

export const sourceSchema = z
  .strictObject({
    bootstrap_servers: bootstrapServers,
    client_id: clientId,
    security: securitySchema.prefault({}),
    unreachable_timeout_secs: unreachableTimeoutSecs,
    topics: topicSelectionSchema
      .prefault({})
      .describe(
        'Topics to back up. Internal topics (`__consumer_offsets`, `__transaction_state`, ...) are left out unless `backup.include_internal_topics` is true.'
      ),
    kafka_config: sourceKafkaConfigSchema.prefault({})
  })
  .describe('The cluster to back up (mode: backup).')

export const targetSchema = z
  .strictObject({
    bootstrap_servers: bootstrapServers,
    client_id: clientId,
    security: securitySchema.prefault({}),
    unreachable_timeout_secs: unreachableTimeoutSecs,
    kafka_config: targetKafkaConfigSchema.prefault({})
  })
  .describe('The cluster to restore into (mode: restore). Topics to restore are chosen by `restore.topics`.')

// ---- storage ---------------------------------------------------------------------------------

// Each backend's keys live with its descriptor in storage/backends.ts.
export const storageSchema = z
  .discriminatedUnion('backend', storageSchemas)
  .describe('Where backups are written to and read from; `backend` selects the keys that apply.')

// ---- backup ----------------------------------------------------------------------------------

export const backupOptionsSchema = z
  .strictObject({
    compression: z
      .enum(compressionCodecs)
      .default('zstd')
      .describe('Codec of segment frames. Batches stay as the producer compressed them inside the frame.'),
    compression_level: z
      .int()
      .default(3)
      .describe('zstd: 1 (fastest) to 19; gzip: 1 to 9; ignored for lz4 and none (a warning says so when set).'),
    store_records: storeRecordsSchema,
    encryption: encryptionSchema
      .optional()
      .describe(
        "Encrypt new segments (AES-256-GCM per frame, a data key per segment wrapped by the keyring's active key). Topic names, offsets, timestamps, counts and sizes stay readable (docs/encryption.md). Once a backup has encrypted segments, runs without this are refused. Unset: segments are not encrypted."
      ),
    segment_max_bytes: byteCount()
      .default(128 * MiB)
      .describe('A segment is closed (and becomes durable) once it holds this many bytes of batches.'),
    segment_max_interval_ms: z
      .int()
      .min(1)
      .default(60_000)
      .describe('A segment is also closed this long after its first batch, so quiet partitions still checkpoint.'),
    frame_max_bytes: byteCount()
      .optional()
      .describe(
        'Uncompressed size of one frame, the unit of compression and of range reads during restore. A frame holds at least one batch, so a larger batch makes a frame of its own. At most `segment_max_bytes`. Unset: 4 MiB, or `segment_max_bytes` when that is smaller. Larger frames compress better (zstd finds values that recur further apart) but make a restore that starts inside a frame (a time window) read and decompress more, and hold more memory per partition.'
      ),
    continuous: z
      .boolean()
      .default(false)
      .describe(
        "false: back up to each partition's last stable offset at start, then exit. true: follow the topics until SIGINT/SIGTERM, then flush, checkpoint and exit 0."
      ),
    checkpoint_interval_secs: z
      .number()
      .positive()
      .default(5)
      .describe(
        'How often durable progress is written to the partition indexes (a rerun continues from there). An open segment is closed this long after its first batch (or after `segment_max_interval_ms` when that is shorter), which bounds how long an appended record waits to be durable in the backup: at most this plus one Fetch round trip and the closing of the segment (docs/benchmarks.md, "Continuous backup: append to durable").'
      ),
    batch_size: z
      .int()
      .min(1)
      .optional()
      .describe(
        "Accepted from existing configs; no effect (a warning says so). It counted records per write batch; kafka-backup copies the brokers' RecordBatches whole, so records per batch are the producers' choice. Tune `source.kafka_config` fetch sizes and `max_bytes_in_flight` instead."
      ),
    max_batch_bytes: byteCount()
      .optional()
      .describe(
        'Per-partition cap on bytes held in memory (fetched, not yet written to storage): a partition at the cap is left out of Fetch requests until it drains, so one busy partition cannot take all of `max_bytes_in_flight`. Unset: no per-partition cap.'
      ),
    max_bytes_in_flight: byteCount()
      .default(16 * MiB)
      .describe(
        'Cap on bytes fetched but not yet written to storage, across all partitions (whole Fetch responses, counted until their last record set is written): fetching pauses at the cap, so memory stays bounded whatever the size of the backup and the number of partitions. At least `source.kafka_config.fetch.max.bytes`, so one Fetch response fits; twice that lets the next Fetch overlap the writing of the last.'
      ),
    start_offset: z
      .enum(['earliest', 'latest'])
      .default('earliest')
      .describe(
        'Where a partition with no checkpoint in this backup starts: its log start or its end. Partitions with a checkpoint always continue from it.'
      ),
    include_internal_topics: z
      .boolean()
      .default(false)
      .describe(
        'Also back up internal topics (`__consumer_offsets`, `__transaction_state`, ...) when `source.topics` matches them.'
      ),
    max_concurrent_partitions: z
      .int()
      .min(1)
      .optional()
      .describe('Most partitions backed up at once. Unset: all selected partitions.'),
    rate_limit_bytes_per_sec: byteCount(0)
      .default(0)
      .describe(
        'Cap on bytes backed up per second (record batches written to segments) across all partitions of this process (with workers: per worker); fetching waits while it holds `max_bytes_in_flight`. 0: no limit.'
      ),
    workers: workersSchema('backup', 'kafka-backup.{backup_id}'),
    retention: z
      .strictObject({
        keep_within: z
          .string()
          .regex(/^[1-9]\d*(ms|s|m|h|d|w)$/, {
            message: 'expected a positive duration such as 30d, 12h, 90m or 2w (units ms, s, m, h, d, w)'
          })
          .describe(
            'Keep every record whose timestamp is within this long before the end of the run (e.g. `30d`); older segments are deleted, as `kafka-backup prune --keep-within` does.'
          )
      })
      .optional()
      .describe(
        'Prune the backup at the end of each run that ends without error (docs/retention.md). Unset: nothing is ever deleted.'
      )
  })
  .extend({ metadata: backupMetadataSchema })
  .superRefine((backup, ctx) => {
    const range = compressionLevels[backup.compression]
    if (range !== undefined && (backup.compression_level < range.min || backup.compression_level > range.max)) {
      fail(ctx, ['compression_level'], `an integer from ${range.min} to ${range.max} for ${backup.compression}`)
    }
    if (backup.frame_max_bytes !== undefined && backup.frame_max_bytes > backup.segment_max_bytes) {
      fail(ctx, ['frame_max_bytes'], `at most segment_max_bytes (${backup.segment_max_bytes})`, backup.frame_max_bytes)
    }
    if (backup.workers.enabled && backup.retention !== undefined) {
      refuse(
        ctx,
        ['retention'],
        'backup.retention cannot be combined with backup.workers: a worker would prune while the others write; run `kafka-backup prune` on a schedule instead'
      )
    }
  }, whenValid)
  // A default that depends on another key: small segments (OSO-style configs set 64 KiB) get
  // frames of their size instead of a refusal of a key the file does not set.
  .transform(backup => ({
    ...backup,
    frame_max_bytes: backup.frame_max_bytes ?? Math.min(4 * MiB, backup.segment_max_bytes)
  }))
  .describe('How backups are written (mode: backup).')

// ---- restore ---------------------------------------------------------------------------------

function isFlatPartitionMapping(value: unknown): boolean {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    Object.keys(value).length > 0 &&
    Object.values(value).every(target => typeof target === 'number')
  )
}

const partitionMappingOfTopic = z.record(
  z.string().regex(/^\d+$/, { message: 'expected a partition number as the key' }),
  partitionNumber
)

export const restoreOptionsSchema = z
  .strictObject({
    time_window_start: timestampMs
      .optional()
      .describe(
        'Restore only records with a timestamp at or after this instant (epoch ms, or ISO-8601 with a time zone). Unset: from the first record.'
      ),
    time_window_end: timestampMs
      .optional()
      .describe(
        'Restore only records with a timestamp at or before this instant (inclusive). Unset: to the last record.'
      ),
    encryption: encryptionSchema
      .optional()
      .describe(
        'The keyring that decrypts an encrypted backup: it must hold every key id its segments name (older keys too, after a rotation). A restore checks the keys before it writes anything. Not needed for unencrypted backups.'
      ),
    topics: topicSelectionSchema
      .prefault({})
      .describe('Which backed-up topics to restore (source names, before `topic_mapping`).'),
    source_partitions: z
      .union([z.array(partitionNumber), z.record(topicName, z.array(partitionNumber))], {
        error: 'expected a list of partition numbers, or a mapping of topic to a list of partition numbers'
      })
      .transform(value =>
        Array.isArray(value) ? { '*': [...new Set(value)].sort((a, b) => a - b) } : normalisePartitionLists(value)
      )
      .optional()
      .describe(
        'Restore only these source partitions: a list (applies to every topic) or a mapping `topic: [partitions]` (topics not named are restored whole). Normalised to a mapping in which the key `*` stands for every topic.'
      ),
    topic_mapping: z
      .record(topicName, topicName)
      .default({})
      .describe('Restore a topic under another name: `source-topic: target-topic`. Unmapped topics keep their name.'),
    partition_mapping: z
      .preprocess(
        // OSO's flat layout `{0: 1, 1: 0}` (every value a partition number) applies to every topic.
        value => (isFlatPartitionMapping(value) ? { '*': value } : value),
        z
          .record(
            z.string().refine(name => name === '*' || isValidTopicName(name), {
              message: 'expected a Kafka topic name (1 to 249 letters, digits, ".", "_" or "-")'
            }),
            partitionMappingOfTopic
          )
          .default({})
      )
      .describe(
        'Restore a partition into another partition: `source-topic: { source-partition: target-partition }`, keyed by source topic name, or one flat `{ source-partition: target-partition }` for every restored topic (normalised to the key `*`). Unmapped partitions keep their number.'
      ),
    create_topics: z
      .boolean()
      .default(true)
      .describe(
        'Create missing target topics with the backed-up partition count and topic configs (e.g. cleanup.policy, retention.ms). Existing topics are never altered.'
      ),
    default_replication_factor: z
      .int()
      .min(1)
      .max(32_767)
      .optional()
      .describe("Replication factor of created topics. Unset: the target broker's default.replication.factor."),
    dry_run: z
      .boolean()
      .default(false)
      .describe(
        'Print the plan (what goes where, record and byte counts, notes) and change nothing. It runs every check of the real run, so it fails where the real run would refuse.'
      ),
    max_concurrent_partitions: z
      .int()
      .min(1)
      .default(128)
      .describe(
        'Most partitions restored at once; the next starts when one is done. Each holds its index, a frame read ahead and a queue of batches: 2,000 small partitions at once took 319 MiB where 128 at a time took 236 MiB, in the same time.'
      ),
    rate_limit_bytes_per_sec: byteCount(0)
      .default(0)
      .describe(
        'Cap on bytes produced per second across all partitions of this process (with `workers`: of each worker). 0: no limit.'
      ),
    reset_consumer_offsets: z
      .boolean()
      .default(false)
      .describe(
        'Commit the offsets that `consumer_groups` had at backup time on the target, translated to restored offsets. The groups must be inactive on the target.'
      ),
    consumer_groups: stringList(z.string().min(1), 0, 'group ids or patterns')
      .prefault([])
      .describe(
        'Consumer groups whose offsets are translated and committed (`*` wildcards allowed). Required when `reset_consumer_offsets` is true; each name or pattern except a bare `*` must match a group captured in the backup.'
      ),
    allow_non_empty_target: z
      .boolean()
      .default(false)
      .describe(
        'Restore refuses to write into a target partition that already holds records, because its offsets would no longer match the backup. true: append after the existing records.'
      ),
    allow_log_append_time_target: z
      .boolean()
      .default(false)
      .describe(
        'Restore refuses to write into an existing topic with `message.timestamp.type=LogAppendTime`, because the broker would replace every restored timestamp with the time of the restore. true: restore anyway, with restore-time timestamps. Topics the restore creates always get `CreateTime` (even when the backup says LogAppendTime), so their records keep the backed-up timestamps.'
      ),
    state_storage: storageSchema
      .optional()
      .describe(
        "Where restore progress (`{backup_id}/restores/{restore_id}/restore/{revision}.json`) is kept, with the same keys as `storage`. Unset: in the backup's own storage. Set it when the backup location is read-only (a snapshot or read-only mount): without it such a restore stops before it writes anything. A rerun resumes only with the same state location."
      ),
    checkpoint_interval_secs: z
      .number()
      .positive()
      .default(5)
      .describe(
        'How often restore progress and the offset map are saved (a rerun resumes from there; what the killed run wrote after it is mapped, not written again).'
      ),
    produce_max_in_flight: z
      .int()
      .min(1)
      .max(5)
      .default(5)
      .describe(
        'Produce requests in flight per partition. At most 5: the idempotent producer only keeps order within 5.'
      ),
    ...rebuildingRestoreKeys(topicName),
    workers: workersSchema('restore', 'kafka-backup.restore.{backup_id}.{restore_id}').describe(
      'Several restore processes share one restore (docs/architecture.md, "Sharded restore"): each runs this config, the target cluster\'s group coordinator splits the backed-up partitions between them, and the partitions of a worker that dies move to the others. Group offsets are committed once, at the end; every worker exits 0 only when the whole restore is complete. Not with `repartition.enabled`.'
    )
  })
  .extend({ metadata: restoreMetadataSchema, scram_users_file: scramUsersFileSchema })
  .superRefine((restore, ctx) => {
    const { time_window_start: start, time_window_end: end } = restore
    if (start !== undefined && end !== undefined && start > end) {
      fail(ctx, ['time_window_end'], `a time at or after time_window_start (${start})`, end)
    }
    if (restore.reset_consumer_offsets && restore.consumer_groups.length === 0) {
      fail(ctx, ['consumer_groups'], 'at least one group because reset_consumer_offsets is true')
    }
    if (restore.workers.enabled && restore.repartition.enabled) {
      // A re-partitioned target partition is filled from every source partition in turn, so
      // the source partitions of a topic cannot be split between workers.
      refuse(
        ctx,
        ['workers', 'enabled'],
        'cannot be true with repartition.enabled: a re-partitioned topic is written from all its source partitions in turn by one process; restore it with one worker'
      )
    }
    const targets = new Map<string, string>()
    for (const [source, target] of Object.entries(restore.topic_mapping)) {
      const other = targets.get(target)
      if (other !== undefined) {
        refuse(
          ctx,
          ['topic_mapping', source],
          `maps to ${target} like ${other}; two topics cannot be restored into one`
        )
      }
      targets.set(target, source)
    }
    for (const [topic, mapping] of Object.entries(restore.partition_mapping)) {
      const seen = new Map<number, string>()
      for (const [source, target] of Object.entries(mapping)) {
        const other = seen.get(target)
        if (other !== undefined) {
          refuse(
            ctx,
            ['partition_mapping', topic, source],
            `maps to partition ${target} like partition ${other}; two partitions cannot be restored into one`
          )
        }
        seen.set(target, source)
      }
    }
  }, whenValid)
  .describe('What to restore and how (mode: restore).')

function normalisePartitionLists(lists: Record<string, number[]>): Record<string, number[]> {
  const normalised: Record<string, number[]> = {}
  for (const [topic, partitions] of Object.entries(lists)) {
    normalised[topic] = [...new Set(partitions)].sort((a, b) => a - b)
  }
  return normalised
}

// ---- metrics ---------------------------------------------------------------------------------

export const metricsSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Serve Prometheus metrics on `/metrics` and a `/health` endpoint.'),
    port: z.int().min(0).max(65_535).default(9090).describe('Port of the metrics endpoint (0: any free port).'),
    host: z
      .string()
      .min(1)
      .default('0.0.0.0')
      .describe('Address the metrics endpoint listens on (0.0.0.0: every interface, so Prometheus can scrape it).'),
    keep_alive_seconds: z
      .number()
      .min(0)
      .default(0)
      .describe(
        'Keep the endpoint up this long after a one-shot run ends, also when it fails, so the final values can be scraped.'
      )
  })
  .describe('Prometheus metrics endpoint.')

// ---- the whole file --------------------------------------------------------------------------

const backupId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, {
    message:
      'expected a backup id of 1 to 128 letters, digits, ".", "_" or "-" starting with a letter or digit (it names a folder)'
  })
  .describe(
    'Name of the backup: the folder (or key prefix) `{prefix}/{backup_id}/` that holds it. Running a backup again with the same id continues it.'
  )

const commonKeys = {
  backup_id: backupId,
  storage: storageSchema,
  metrics: metricsSchema.prefault({})
}

export const backupConfigSchema = z
  .strictObject({
    mode: z
      .literal('backup')
      .describe('`backup` (needs `source` and takes `backup`) or `restore` (needs `target` and takes `restore`).'),
    ...commonKeys,
    source: sourceSchema,
    backup: backupOptionsSchema.prefault({})
  })
  .superRefine((config, ctx) => {
    const fetchMaxBytes = config.source.kafka_config['fetch.max.bytes']
    if (config.backup.max_bytes_in_flight < fetchMaxBytes) {
      fail(
        ctx,
        ['backup', 'max_bytes_in_flight'],
        `at least source.kafka_config.fetch.max.bytes (${fetchMaxBytes}) so that one Fetch response fits`,
        config.backup.max_bytes_in_flight
      )
    }
    const limit = backendOf(config.storage).maxObjectBytes?.(config.storage)
    if (limit !== undefined && config.backup.segment_max_bytes > limit.bytes) {
      fail(
        ctx,
        ['backup', 'segment_max_bytes'],
        `at most ${limit.rule} (${limit.bytes} bytes)`,
        config.backup.segment_max_bytes
      )
    }
  }, whenValid)

export const restoreConfigSchema = z.strictObject({
  mode: z
    .literal('restore')
    .describe('`backup` (needs `source` and takes `backup`) or `restore` (needs `target` and takes `restore`).'),
  ...commonKeys,
  target: targetSchema,
  restore: restoreOptionsSchema.prefault({})
})

export const configSchema = z.discriminatedUnion('mode', [backupConfigSchema, restoreConfigSchema])

/** Sections that belong to one mode only, keyed by the mode they belong to. */
export const modeSections: Readonly<Record<string, 'backup' | 'restore'>> = {
  source: 'backup',
  backup: 'backup',
  target: 'restore',
  restore: 'restore'
}

export type Config = z.output<typeof configSchema>
/** The config as written in a file, before defaults and normalisation. */
export type ConfigInput = z.input<typeof configSchema>
/** A complete config for `mode: backup`. */
export type BackupConfig = z.output<typeof backupConfigSchema>
/** A complete config for `mode: restore`. */
export type RestoreConfig = z.output<typeof restoreConfigSchema>
export type SourceConfig = z.output<typeof sourceSchema>
export type TargetConfig = z.output<typeof targetSchema>
export type SecurityConfig = z.output<typeof securitySchema>
export type SourceKafkaConfig = z.output<typeof sourceKafkaConfigSchema>
export type TargetKafkaConfig = z.output<typeof targetKafkaConfigSchema>
export type TopicSelection = z.output<typeof topicSelectionSchema>
export type BackupOptions = z.output<typeof backupOptionsSchema>
export type RestoreOptions = z.output<typeof restoreOptionsSchema>
export type MetricsConfig = z.output<typeof metricsSchema>
export type StorageConfig = z.output<typeof storageSchema>
export type FilesystemStorageConfig = z.output<typeof filesystemBackend.schema>
export type MemoryStorageConfig = z.output<typeof memoryBackend.schema>
export type S3StorageConfig = z.output<typeof s3Backend.schema>
export type AzureStorageConfig = z.output<typeof azureBackend.schema>
export type GcsStorageConfig = z.output<typeof gcsBackend.schema>
export type CompressionCodec = (typeof compressionCodecs)[number]
