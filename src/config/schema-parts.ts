/**
 * Building blocks of the config schema that both the schema (schema.ts) and the storage backends'
 * own sections (storage/backends.ts) use. They live apart so that the two can import them
 * without importing each other.
 */
import { z } from 'zod'

/** A byte count: integers only, never negative. */
export function byteCount(min = 1) {
  return z.int().min(min)
}

/** An object-store key prefix. The loader drops leading and trailing slashes; `..` segments are refused. */
export const keyPrefix = z
  .string()
  .refine(value => !value.split('/').some(segment => segment === '..' || segment === '.'), {
    message: 'expected a key prefix without "." or ".." segments'
  })

export const httpUrl = z.string().refine(
  value => {
    if (!URL.canParse(value)) return false
    const { protocol } = new URL(value)
    return protocol === 'http:' || protocol === 'https:'
  },
  { message: 'expected an http:// or https:// URL' }
)

/**
 * Adds an issue in the loader's expected/found form. `found` defaults to the value at `path`;
 * pass it when the value shown should be another (e.g. a default the operator did not write).
 */
export function fail(ctx: z.RefinementCtx, path: PropertyKey[], expected: string, ...found: [] | [unknown]): void {
  ctx.addIssue({
    code: 'custom',
    path,
    message: `expected ${expected}`,
    params: found.length === 0 ? { expected } : { expected, found: found[0] }
  })
}

/** Adds an issue whose message is a whole sentence (for rules that span several keys). */
export function refuse(ctx: z.RefinementCtx, path: PropertyKey[], message: string): void {
  ctx.addIssue({ code: 'custom', path, message })
}

/**
 * Rules across keys run only once every key is valid on its own, so they never compare a value
 * that is already reported (a negative size against another size).
 */
export const whenValid: z.core.$ZodSuperRefineParams = { when: payload => payload.issues.length === 0 }

// ---- restore keys that rebuild batches (erasure, re-partitioning) ------------------------------

const partitionCount = z.int().min(1).max(2_147_483_647)

/**
 * `restore.erase` and `restore.repartition`, spread into the restore section. `topicName`
 * validates topic names as the rest of the schema does.
 */
export function rebuildingRestoreKeys(topicName: z.ZodType<string>) {
  return {
    erase: z
      .strictObject({
        keys_file: z
          .string()
          .min(1)
          .optional()
          .describe(
            'A file of keys to erase, one per line (relative to the config file): the key as UTF-8 text, or `base64:` followed by the key bytes in base64 (binary keys, an empty key, keys with line breaks or starting with `#` or `base64:`). A trailing CR is dropped; empty lines and lines starting with `#` are skipped.'
          ),
        keys: z
          .array(z.string().min(1, { message: 'expected a key (an empty key is written base64:)' }))
          .default([])
          .describe('Keys to erase, each written as a line of `keys_file` is.'),
        patterns: z
          .array(z.string().min(1))
          .default([])
          .describe(
            'Keys to erase by pattern, matched against the whole key decoded as UTF-8: `*` any run of characters, `?` one character.'
          )
      })
      .optional()
      .describe(
        'Records whose key is named here are left out of the restore (an erasure request honoured for backups made before it). Only batches holding such records are rebuilt; every batch is read to check. Records without a key are never erased. The count of erased records is in the summary (`erasedRecords`) and the `kafka_restore_erased_records_total` metric; offsets of the other records are translated exactly.'
      ),
    repartition: z
      .strictObject({
        enabled: z
          .boolean()
          .default(false)
          .describe(
            'true: a restored topic whose target partition count differs from the backed-up one is re-partitioned: each record goes to the partition the default partitioner of Kafka picks for its key (murmur2), a record without a key to its source partition modulo the target count. false: a target topic with fewer partitions is refused, one with more is restored partition for partition.'
          ),
        partitions: z
          .record(topicName, partitionCount)
          .default({})
          .describe(
            'Partition count of a target topic the restore creates, by source topic name. With `enabled`, a count that differs from the backup re-partitions that topic.'
          )
      })
      .prefault({})
      .describe(
        'Restore into a different partition count (docs/architecture.md, "Re-partitioning on restore"): records are decoded on this path only, order per key is kept, and consumer-group offsets are translated so that no group skips a record it had not consumed.'
      )
  }
}

// ---- cluster metadata (docs/cluster-metadata.md) ---------------------------------------------

/** The kinds of cluster metadata a backup can capture and a restore can apply. */
export const clusterMetadataKinds = ['acls', 'quotas', 'scram_users'] as const
export type ClusterMetadataKind = (typeof clusterMetadataKinds)[number]

const metadataKindList = z
  .array(z.enum(clusterMetadataKinds))
  .default([])
  .transform(kinds => [...new Set(kinds)])

export const backupMetadataSchema = metadataKindList.describe(
  'Cluster metadata captured with each run into `metadata/kafka/{revision}.json` (docs/cluster-metadata.md): `acls` (DescribeAcls), `quotas` (client quotas) and `scram_users` (SCRAM user names, mechanisms and iterations; Kafka never returns the secrets). Each needs the right to describe it on the source cluster (Describe, DescribeConfigs on the cluster). Empty: none captured.'
)

export const restoreMetadataSchema = metadataKindList.describe(
  'Cluster metadata from the backup applied to the target before the records (docs/cluster-metadata.md): `acls` (LITERAL topic ACLs follow `topic_mapping`), `quotas`, `scram_users` (passwords from `scram_users_file`). ACLs and SCRAM users the target lacks are created, quota values set to the backed-up ones; nothing is removed, and existing SCRAM users are left as they are. `dry_run` lists what would be created. Empty: none applied.'
)

export const scramUsersFileSchema = z
  .string()
  .min(1)
  .optional()
  .describe(
    'A YAML or JSON file mapping each SCRAM user to restore to its password (`alice: secret`). Needed when `metadata` has `scram_users` and the backup holds users: their secrets cannot be read back from the source, so a restore sets new ones from here.'
  )

// ---- backup.store_records (docs/benchmarks.md, "Stored bytes on compressed topics") ----------

export const storeRecordsSchema = z
  .enum(['as_fetched', 'decompressed'])
  .default('decompressed')
  .describe(
    "How batches a producer compressed (gzip, snappy, lz4, zstd) are stored. decompressed: their records are stored decompressed inside the segment's frames, which compress them far better (lz4 and snappy topics: about a quarter smaller), and a restore compresses them again with the batch's own codec: records, offsets, timestamps, producer fields, attributes and batch boundaries come back identical, the batch's compressed bytes and CRC may differ from the producer's. as_fetched: batches are stored exactly as the broker sent them. Segments of either kind restore whatever this is set to."
  )

// ---- encryption (backup.encryption, restore.encryption) -------------------------------------

/** Where the keyring comes from (docs/encryption.md); exactly one of the two keys. */
export const encryptionSchema = z
  .strictObject({
    keyring_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Path of the keyring file (relative to the config file): one key a line, `<key id> <32-byte key as 64 hex digits or base64>`; the last line is the active key (docs/encryption.md). Keep it mode 600: a warning says when others can read it.'
      ),
    keyring_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'expected an environment variable name' })
      .optional()
      .describe('Name of an environment variable that holds the keyring text (same format as the file).')
  })
  .superRefine((encryption, ctx) => {
    if ((encryption.keyring_file === undefined) === (encryption.keyring_env === undefined)) {
      refuse(ctx, [], 'expected exactly one of keyring_file and keyring_env')
    }
  })

// ---- workers in a Kafka group (backup.workers; restore can reuse it) ----------------------------

/**
 * Several processes with the same config sharing one job through a Kafka group
 * (src/group/work-group.ts). `what` names the job in the descriptions ("backup", "restore");
 * `defaultGroup` says how the group id is derived when it is not set.
 */
export function workersSchema(what: string, defaultGroup: string) {
  return z
    .strictObject({
      enabled: z
        .boolean()
        .default(false)
        .describe(
          `Run this ${what} as one of several workers: every process started with this config joins the group and the broker's group coordinator splits the work among them. false: one process does all of it, and a second one on the same ${what} is refused.`
        ),
      group_id: z
        .string()
        .min(1)
        .max(249)
        .optional()
        .describe(`The Kafka group the workers join. Unset: \`${defaultGroup}\`.`),
      session_timeout_ms: z
        .int()
        .min(1000)
        .default(10_000)
        .describe(
          "A worker not heard from for this long is dropped and its share moves to the others (it continues from the last checkpoint). Must lie within the broker's `group.min.session.timeout.ms` (default 6000) and `group.max.session.timeout.ms` (default 1800000)."
        ),
      heartbeat_interval_ms: z
        .int()
        .min(100)
        .default(3000)
        .describe(
          'How often a worker tells the coordinator it is alive; also how soon it learns that the group changed. Below `session_timeout_ms`.'
        ),
      rebalance_timeout_ms: z
        .int()
        .min(1000)
        .optional()
        .describe(
          'How long the coordinator waits for every worker to rejoin when the group changes (a worker first makes its open segments durable). Unset: 60000.'
        )
    })
    .superRefine((workers, ctx) => {
      if (workers.heartbeat_interval_ms >= workers.session_timeout_ms) {
        fail(ctx, ['heartbeat_interval_ms'], `less than session_timeout_ms (${workers.session_timeout_ms})`)
      }
    }, whenValid)
    .prefault({})
    .describe(`Workers in a Kafka group sharing this ${what} (README, "Running several workers").`)
}

export type WorkersConfig = z.infer<ReturnType<typeof workersSchema>>
