/** Helpers to run the backup engine in tests and read back what it stored. */
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { BackupEngine, type BackupOptions } from '../../src/backup/engine.ts'
import { decodeRecords, recordOffset, recordTimestamp } from '../../src/batch/records.ts'
import { readManifest, readPartitionIndex } from '../../src/catalog/manifest.ts'
import { pruneLockBase } from '../../src/catalog/prune-lock.ts'
import { newestRevision } from '../../src/catalog/revisions.ts'
import type { KafkaCluster } from '../../src/kafka/cluster.ts'
import { readPartitionBatches } from '../../src/restore/source.ts'
import { FilesystemStorage } from '../../src/storage/filesystem.ts'
import type { Storage } from '../../src/storage/storage.ts'
import { bootstrapServers } from './kafka.ts'

export function tempStorage(): FilesystemStorage {
  return new FilesystemStorage({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-test-')) })
}

/** Filesystem storage that lets a test act at the moment the engine writes a given key. */
export class HookedStorage extends FilesystemStorage {
  onWrite: (key: string) => Promise<void> = async () => {}

  constructor() {
    super({ path: mkdtempSync(join(tmpdir(), 'kafka-backup-test-')) })
  }

  override async put(key: string, body: Readable | Buffer): Promise<void> {
    await this.onWrite(key)
    return super.put(key, body)
  }

  override async create(key: string, body: Readable | Buffer): Promise<void> {
    await this.onWrite(key)
    return super.create(key, body)
  }

  override async replace(key: string, body: Buffer): Promise<void> {
    await this.onWrite(key)
    return super.replace(key, body)
  }
}

/** A hash of every file under a folder, to prove a refused or failed run changed nothing. */
export function fingerprint(folder: string): Map<string, string> {
  const result = new Map<string, string>()
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) {
        walk(path)
      } else {
        result.set(path, createHash('sha256').update(readFileSync(path)).digest('hex'))
      }
    }
  }
  walk(folder)
  return result
}

export function backupOptions(
  cluster: KafkaCluster,
  storage: Storage,
  topics: string[],
  overrides: Partial<BackupOptions> = {}
): BackupOptions {
  return {
    backupId: 'test-backup',
    storage,
    cluster,
    bootstrapServers: [bootstrapServers()],
    topics: { include: topics, exclude: [] },
    includeInternalTopics: false,
    compression: 'zstd',
    compressionLevel: 3,
    frameMaxBytes: 256 * 1024,
    storeRecords: 'decompressed',
    segmentMaxBytes: 4 * 1024 * 1024,
    segmentMaxIntervalMs: 60_000,
    checkpointIntervalMs: 5000,
    continuous: false,
    startOffset: 'earliest',
    maxBytesInFlight: 16 * 1024 * 1024,
    fetch: { maxWaitMs: 100, minBytes: 1, maxBytes: 8 * 1024 * 1024, partitionMaxBytes: 1024 * 1024 },
    ...overrides
  }
}

export function runBackup(options: BackupOptions) {
  return new BackupEngine(options).run()
}

export interface StoredRecord {
  partition: number
  offset: bigint
  timestamp: bigint
  key: string | null
  value: string | null
  headers: Array<[string, string | null]>
}

/** Every record of a backed-up topic, decoded, in partition and offset order. */
export async function readBackedUpRecords(storage: Storage, backupId: string, topic: string): Promise<StoredRecord[]> {
  const manifest = await readManifest(storage, backupId)
  const entry = manifest?.topics.find(t => t.name === topic)
  if (!entry) {
    throw new Error(`topic ${topic} is not in backup ${backupId}`)
  }
  const records: StoredRecord[] = []
  for (let partition = 0; partition < entry.partitionCount; partition++) {
    const index = await readPartitionIndex(storage, backupId, topic, partition)
    if (!index) {
      continue
    }
    for await (const batch of readPartitionBatches(storage, backupId, index)) {
      for (const record of decodeRecords(batch)) {
        records.push({
          partition,
          offset: recordOffset(batch, record),
          timestamp: recordTimestamp(batch, record),
          key: record.key === null ? null : record.key.toString('latin1'),
          value: record.value === null ? null : record.value.toString('latin1'),
          headers: record.headers.map(([k, v]) => [k.toString(), v === null ? null : v.toString('latin1')])
        })
      }
    }
  }
  return records
}

/**
 * The file of a catalogue document's newest revision in a filesystem backup, from its base path
 * (`.../topics/t/0/index`, `.../manifest`, `.../restore`): `{base}/{12 digits}.json`, else the
 * `{base}.json` of older versions; undefined when there is neither.
 */
export function newestRevisionFile(base: string): string | undefined {
  const revisions = existsSync(base) ? readdirSync(base).filter(name => /^\d{12}\.json$/.test(name)) : []
  if (revisions.length > 0) {
    return join(base, revisions.sort().at(-1)!)
  }
  return existsSync(`${base}.json`) ? `${base}.json` : undefined
}

/** The newest revision of a backup's prune lock (src/catalog/prune-lock.ts), parsed; undefined when none was ever taken. */
export async function newestPruneLock(
  storage: Storage,
  backupId: string
): Promise<{ pid: number; host: string; expiresAt?: string; released?: boolean } | undefined> {
  const newest = await newestRevision(storage, pruneLockBase(backupId))
  return newest && JSON.parse((await storage.get(newest.key)).toString('utf8'))
}
