/**
 * The storage backends, one descriptor each: the value of `storage.backend`, the URL scheme that
 * `--path` takes, the keys of its config section, and how to open it. Everything else that
 * differs between backends (the `storage` schema, `--path` parsing and its help, relative paths
 * in the file, secrets, size limits, openStorage) is derived from this table, so a new backend
 * is its own store file plus one entry here.
 *
 * `open` imports the store, and with it its SDK, only when the backend is used: `--help` and a
 * filesystem backup never load a cloud SDK (start-up time; test/cli/program.test.ts checks it).
 */
import { z } from 'zod'
import { byteCount, fail, httpUrl, keyPrefix, refuse, whenValid } from '../config/schema-parts.ts'
import { BackupError } from '../errors.ts'
import { MiB } from '../units.ts'
import { s3MaxPartSize, s3MaxParts, s3MinPartSize } from './s3-limits.ts'
import type { Storage } from './storage.ts'

export interface StorageBackend<Schema extends z.ZodObject = z.ZodObject> {
  /** The section's keys; its `backend` literal names the backend. */
  schema: Schema
  /** `--path SCHEME://NAME/prefix` selects this backend and sets `NAME` as this key. */
  url?: { scheme: string; nameKey: 'bucket' | 'container' }
  /** Keys whose values are credentials: never shown in messages or printed configs. */
  secretKeys?: readonly string[]
  /** Makes the keys that name files absolute, with `against` (the config file's folder). */
  resolvePaths?(config: z.output<Schema>, against: (path: string) => string): void
  /** The largest object the backend stores, which a segment must fit, and the rule behind it. */
  maxObjectBytes?(config: z.output<Schema>): { bytes: number; rule: string }
  open(config: z.output<Schema>): Promise<Storage>
}

/** Checks a descriptor against its own schema's types. */
function backend<Schema extends z.ZodObject>(descriptor: StorageBackend<Schema>): StorageBackend<Schema> {
  return descriptor
}

const prefix = keyPrefix
  .default('')
  .describe('Key prefix under which backups live (`{prefix}/{backup_id}/...`). Leading and trailing `/` are ignored.')

const filesystemSchema = z
  .strictObject({
    backend: z
      .literal('filesystem')
      .describe('Local or mounted filesystem (the default backend: nothing else needed).'),
    path: z
      .string()
      .min(1)
      .describe(
        "Folder that holds the backups. Relative paths are resolved against the config file's folder (`--path`: against the working directory)."
      ),
    prefix
  })
  .describe('Backups in a folder.')

const memorySchema = z
  .strictObject({
    backend: z.literal('memory').describe('In-process storage that vanishes at exit; for tests only.')
  })
  .describe('In-memory storage (tests).')

const s3Schema = z
  .strictObject({
    backend: z.literal('s3').describe('Amazon S3 or an S3-compatible server.'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
        message: 'expected an S3 bucket name (3 to 63 lowercase letters, digits, "." or "-")'
      })
      .describe('Bucket name.'),
    region: z
      .string()
      .min(1)
      .optional()
      .describe('Bucket region. Unset: from the AWS environment (AWS_REGION, profile).'),
    prefix,
    endpoint: httpUrl
      .optional()
      .describe('Endpoint URL of an S3-compatible server (MinIO, SeaweedFS, ...). Unset: AWS.'),
    access_key: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Access key id. Unset (with `secret_key`): the standard AWS credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared credentials file, an instance or task role).'
      ),
    secret_key: z.string().min(1).optional().describe('Secret access key (secret). Set together with `access_key`.'),
    session_token: z
      .string()
      .min(1)
      .optional()
      .describe('Session token of temporary credentials (secret). Only with `access_key` and `secret_key`.'),
    profile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Profile of the shared credentials and config files (`~/.aws/credentials`, `~/.aws/config`; AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE move them). Not with `access_key`. Unset: AWS_PROFILE, else `default`.'
      ),
    force_path_style: z
      .boolean()
      .default(false)
      .describe(
        'Address the bucket as `endpoint/bucket` (path style) instead of `bucket.endpoint` (virtual-hosted style, the default). Most S3-compatible servers (MinIO, Ceph, SeaweedFS) need true unless they are set up with a wildcard DNS name.'
      ),
    multipart_threshold: byteCount()
      .default(100 * MiB)
      .describe(
        'Objects of this size and larger are uploaded in parts; smaller ones with one PUT. A streamed segment goes up in parts as soon as it is larger than one part (`multipart_part_size`), so that it is never held whole in memory.'
      ),
    multipart_part_size: byteCount(s3MinPartSize)
      .max(s3MaxPartSize)
      .default(10 * MiB)
      .describe(
        'Size of each uploaded part (S3: 5 MiB to 5 GiB). A segment never sits whole in memory, only its parts in flight.'
      ),
    max_concurrent_uploads: z.int().min(1).max(1000).default(10).describe('Parts uploaded in parallel per object.')
  })
  .superRefine((s3, ctx) => {
    if ((s3.access_key === undefined) !== (s3.secret_key === undefined)) {
      const missing = s3.access_key === undefined ? 'access_key' : 'secret_key'
      fail(ctx, [missing], 'access_key and secret_key to be set together (or neither, for the AWS credential chain)')
    }
    if (s3.session_token !== undefined && s3.access_key === undefined) {
      refuse(
        ctx,
        ['session_token'],
        'session_token needs access_key and secret_key (the temporary credentials it belongs to)'
      )
    }
    if (s3.profile !== undefined && s3.access_key !== undefined) {
      refuse(ctx, ['profile'], 'profile is not allowed together with access_key: set one way of giving credentials')
    }
  }, whenValid)
  .describe('Backups in an S3 bucket.')

const azureSchema = z
  .strictObject({
    backend: z.literal('azure').describe('Azure Blob Storage (block blobs).'),
    container: z
      .string()
      .regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, {
        message: 'expected an Azure container name (3 to 63 lowercase letters, digits or single "-")'
      })
      .describe('Container name.'),
    account_name: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Storage account. Required unless `connection_string` is set; without `account_key`, Azure default credentials are used.'
      ),
    account_key: z.string().min(1).optional().describe('Shared key of `account_name` (secret).'),
    sas_token: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Shared access signature of `account_name` (secret), the query string `sv=...&sig=...` (a leading `?` is ignored). It must allow read, write, delete and list on the container. Not with `account_key`.'
      ),
    connection_string: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Full connection string (secret), with an `AccountKey` or a `SharedAccessSignature`; replaces `account_name`, `account_key`, `sas_token` and `endpoint`.'
      ),
    endpoint: httpUrl
      .optional()
      .describe('Blob service URL, e.g. an Azurite emulator. Unset: https://{account_name}.blob.core.windows.net.'),
    prefix
  })
  .superRefine((azure, ctx) => {
    if (azure.connection_string !== undefined) {
      for (const key of ['account_name', 'account_key', 'sas_token', 'endpoint'] as const) {
        if (azure[key] !== undefined)
          refuse(ctx, [key], 'not allowed together with connection_string, which already names the account')
      }
    } else if (azure.account_name === undefined) {
      fail(ctx, ['account_name'], 'account_name (or a connection_string)')
    } else if (azure.sas_token !== undefined && azure.account_key !== undefined) {
      refuse(
        ctx,
        ['sas_token'],
        'sas_token is not allowed together with account_key: set one way of giving credentials'
      )
    }
  }, whenValid)
  .describe('Backups in an Azure Blob Storage container.')

const gcsSchema = z
  .strictObject({
    backend: z.literal('gcs').describe('Google Cloud Storage.'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/, {
        message: 'expected a GCS bucket name (lowercase letters, digits, ".", "_" or "-")'
      })
      .describe('Bucket name.'),
    prefix,
    service_account_json: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Service-account key (secret): the JSON itself (starting with `{`) or the path of its file, relative to the config file's folder. Unset: application default credentials."
      ),
    endpoint: httpUrl.optional().describe('API endpoint of an emulator such as fake-gcs-server. Unset: Google.')
  })
  .describe('Backups in a Google Cloud Storage bucket.')

export const filesystemBackend = backend({
  schema: filesystemSchema,
  resolvePaths(config, against) {
    config.path = against(config.path)
  },
  async open(config) {
    const { FilesystemStorage } = await import('./filesystem.ts')
    return new FilesystemStorage({ path: config.path, prefix: config.prefix })
  }
})

export const s3Backend = backend({
  schema: s3Schema,
  url: { scheme: 's3', nameKey: 'bucket' },
  secretKeys: ['access_key', 'secret_key', 'session_token'],
  maxObjectBytes: config => ({
    bytes: config.multipart_part_size * s3MaxParts,
    rule: `${s3MaxParts} parts of storage.multipart_part_size`
  }),
  async open(config) {
    const { S3Storage } = await import('./s3.ts')
    return new S3Storage({
      bucket: config.bucket,
      region: config.region,
      prefix: config.prefix,
      endpoint: config.endpoint,
      accessKey: config.access_key,
      secretKey: config.secret_key,
      sessionToken: config.session_token,
      profile: config.profile,
      forcePathStyle: config.force_path_style,
      multipartThreshold: config.multipart_threshold,
      multipartPartSize: config.multipart_part_size,
      maxConcurrentUploads: config.max_concurrent_uploads
    })
  }
})

export const azureBackend = backend({
  schema: azureSchema,
  url: { scheme: 'az', nameKey: 'container' },
  secretKeys: ['account_key', 'sas_token', 'connection_string'],
  async open(config) {
    const { AzureBlobStorage } = await import('./azure.ts')
    return new AzureBlobStorage({
      container: config.container,
      accountName: config.account_name,
      accountKey: config.account_key,
      sasToken: config.sas_token,
      connectionString: config.connection_string,
      endpoint: config.endpoint,
      prefix: config.prefix
    })
  }
})

export const gcsBackend = backend({
  schema: gcsSchema,
  url: { scheme: 'gs', nameKey: 'bucket' },
  secretKeys: ['service_account_json'],
  resolvePaths(config, against) {
    // The key itself (JSON) stays as it is; a file name is relative to the config file.
    const key = config.service_account_json
    if (key !== undefined && !key.trimStart().startsWith('{')) config.service_account_json = against(key)
  },
  async open(config) {
    const { GcsStorage } = await import('./gcs.ts')
    return new GcsStorage({
      bucket: config.bucket,
      prefix: config.prefix,
      serviceAccountJson: config.service_account_json,
      endpoint: config.endpoint
    })
  }
})

export const memoryBackend = backend({
  schema: memorySchema,
  async open() {
    const { MemoryStorage } = await import('./memory.ts')
    return new MemoryStorage()
  }
})

/** Every backend, in the order the config reference lists them. */
export const storageBackends = [filesystemBackend, s3Backend, azureBackend, gcsBackend, memoryBackend] as const

type SchemasOf<Backends> = { -readonly [K in keyof Backends]: Backends[K] extends StorageBackend<infer S> ? S : never }

/** The backends' sections, for `z.discriminatedUnion('backend', ...)`. */
export const storageSchemas = storageBackends.map(entry => entry.schema) as SchemasOf<typeof storageBackends>

/** The name of a backend: its `backend` literal. */
export function backendName(entry: StorageBackend): string {
  return String(entry.schema.shape['backend'].value)
}

/** The descriptor of a validated storage section. */
export function backendOf(config: { backend: string }): StorageBackend {
  const found = storageBackends.find(entry => backendName(entry) === config.backend)
  if (found === undefined) {
    // Only a config that skipped validation (a library caller) gets here.
    const names = storageBackends.map(backendName).join(', ')
    throw new BackupError('KB_STORAGE', `unknown storage backend ${config.backend}; expected one of ${names}`, {
      operation: 'open'
    })
  }
  return found as unknown as StorageBackend
}

/** The backend that a `--path` URL scheme selects (case-insensitive), if any. */
export function backendOfScheme(scheme: string): StorageBackend | undefined {
  return storageBackends.find(entry => entry.url?.scheme === scheme.toLowerCase()) as StorageBackend | undefined
}

/** The URL schemes `--path` takes besides a folder: `s3://`, ... */
export const locationSchemes: readonly string[] = storageBackends.flatMap(entry =>
  entry.url === undefined ? [] : [`${entry.url.scheme}://`]
)

/** `a, b or c`. */
export function orList(items: readonly string[]): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`
}

/** The URLs `--path` takes besides a folder: `s3://bucket/prefix`, ... */
export const locationUrls: readonly string[] = storageBackends.flatMap(entry =>
  entry.url === undefined ? [] : [`${entry.url.scheme}://${entry.url.nameKey}/prefix`]
)

/** What `--path` takes, for help texts: `a folder, s3://bucket/prefix, ... or gs://bucket/prefix`. */
export const locationHelp = orList(['a folder', ...locationUrls])
