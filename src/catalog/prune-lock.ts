/**
 * The lock a prune holds while it changes indexes and deletes segments (docs/retention.md, "Prune
 * and backup runs"). A backup run refuses to start while it is held, and only one prune holds it.
 *
 * The lock is a chain of revisions (revisions.ts) under `{backup_id}/locks/prune/`: taking it,
 * renewing it and releasing it each create the next revision, create-only, so of two prunes that
 * act on the same revision only one gets the next one. A prune killed with SIGKILL leaves its
 * revision behind; it stops binding when
 *
 * - its process is gone: the holder wrote its host, pid and pid namespace, and a prune on the
 *   same host in the same namespace sees at once that the pid no longer runs; or
 * - its lease ran out: the holder renews it every RENEW_MS, and a revision not renewed for
 *   LEASE_MS binds nobody (a holder on another host, or in another container).
 *
 * A holder that could not renew (storage unreachable, the process paused) stops before its next
 * change once its own lease is close to running out, and a holder whose next revision another
 * prune wrote (it took the lock over) stops at once: a lock taken over never has two prunes
 * working under it. `{backup_id}/locks/prune.json`, the lock of older versions, has no lease and
 * knows no chain: while it exists it binds, whatever revisions stand beside it, until it is
 * removed by hand (as those versions documented).
 */
import { randomUUID } from 'node:crypto'
import { readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { BackupError, isBackupError } from '../errors.ts'
import type { Storage } from '../storage/storage.ts'
import {
  legacyKey,
  newestRevision,
  type Revisioned,
  revisionKey,
  storedRevisions,
  writeNextRevision
} from './revisions.ts'

export const pruneLockBase = (backupId: string) => `${backupId}/locks/prune`
/** The lock object of older versions: revision 0 of the chain, which it binds beside. */
export const legacyPruneLockKey = (backupId: string) => legacyKey(pruneLockBase(backupId))

/** How long a lock binds without renewal; long against storage latency and clock skew between hosts. */
export const LEASE_MS = 5 * 60_000
/** How often a holder renews; a holder stops once it has not renewed for LEASE_MS - RENEW_MS. */
const RENEW_MS = 30_000

interface PruneLockRecord extends Revisioned {
  token: string
  host: string
  pid: number
  /** Linux's id of the pid namespace (`pid:[4026531836]`): a pid means a process only inside it. */
  pidNamespace?: string
  startedAt: string
  /** Absent in the lock of older versions. */
  expiresAt?: string
  /** Set in the revision a prune writes when it is done. */
  released?: boolean
}

interface StoredLock {
  key: string
  record: PruneLockRecord
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return undefined
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists and belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function readLock(storage: Storage, backupId: string): Promise<StoredLock | undefined> {
  // The lock of an older version binds whatever the chain beside it says (it knows no chain).
  const legacy = legacyPruneLockKey(backupId)
  const newest = (await storage.head(legacy))
    ? { key: legacy, revision: 0 }
    : await newestRevision(storage, pruneLockBase(backupId))
  if (newest === undefined) {
    return undefined
  }
  let body: Buffer
  try {
    body = await storage.get(newest.key)
  } catch (error) {
    if (isBackupError(error, 'KB_STORAGE_NOT_FOUND')) {
      // Deleted as superseded by a prune that took the lock after our listing: read again.
      return readLock(storage, backupId)
    }
    throw error
  }
  try {
    return { key: newest.key, record: { ...JSON.parse(body.toString('utf8')), revision: newest.revision } }
  } catch {
    // Half a lock is still a lock: whoever wrote it may be pruning.
    return { key: newest.key, record: { token: '', host: '?', pid: 0, startedAt: '?', revision: newest.revision } }
  }
}

/** Why a lock binds nobody any more, or undefined while its holder may still be pruning. */
export function staleReason(
  lock: PruneLockRecord,
  here: { host: string; pidNamespace: string | undefined; isRunning: (pid: number) => boolean; now: number }
): string | undefined {
  if (lock.released) {
    return 'released'
  }
  if (
    lock.host === here.host &&
    lock.pidNamespace !== undefined &&
    lock.pidNamespace === here.pidNamespace &&
    !here.isRunning(lock.pid)
  ) {
    return `its process (pid ${lock.pid} on ${lock.host}) is gone`
  }
  if (lock.expiresAt !== undefined && Date.parse(lock.expiresAt) < here.now) {
    return `its lease ran out at ${lock.expiresAt} without renewal`
  }
  return undefined
}

function staleHere(lock: PruneLockRecord): string | undefined {
  return staleReason(lock, { host: hostname(), pidNamespace: pidNamespace(), isRunning, now: Date.now() })
}

function busyWithPrune(storage: Storage, backupId: string, { key, record }: StoredLock): BackupError {
  const until =
    record.expiresAt === undefined
      ? `remove ${key} if that process is gone (a lock of an older version has no lease)`
      : `if that process is gone, the next prune takes the lock over (at once on ${record.host}, from elsewhere once its lease runs out at ${record.expiresAt})`
  return new BackupError(
    'KB_BACKUP_BUSY',
    `backup ${backupId} is being pruned (lock ${storage.location}/${key}, taken by pid ${record.pid} on ${record.host} at ${record.startedAt}); ` +
      `wait for the prune to finish; ${until}`,
    { backupId, key }
  )
}

/** Throws KB_BACKUP_BUSY while a prune holds the backup's lock. */
export async function refuseWhilePruning(storage: Storage, backupId: string): Promise<void> {
  const lock = await readLock(storage, backupId)
  if (lock && staleHere(lock.record) === undefined) {
    throw busyWithPrune(storage, backupId, lock)
  }
}

/** The lock, held: renewed in the background until `release`. */
export class PruneLock {
  readonly #storage: Storage
  readonly #backupId: string
  readonly #record: PruneLockRecord
  readonly #timer: NodeJS.Timeout
  /** The renewal in progress, so that release never races it for the next revision. */
  #writing: Promise<void> = Promise.resolve()
  #renewedAt: number
  #lost: BackupError | undefined

  private constructor(storage: Storage, backupId: string, record: PruneLockRecord, renewedAt: number) {
    this.#storage = storage
    this.#backupId = backupId
    this.#record = record
    this.#renewedAt = renewedAt
    this.#timer = setInterval(() => {
      this.#writing = this.#writing.then(() => this.#renew())
    }, RENEW_MS).unref()
  }

  /**
   * Takes the lock, or throws KB_BACKUP_BUSY naming its holder. A lock whose holder is gone is
   * taken over (`onTakeOver` says whose), and the revisions before ours are deleted.
   */
  static async acquire(
    storage: Storage,
    backupId: string,
    onTakeOver?: (message: string, key: string) => void
  ): Promise<PruneLock> {
    const held = await readLock(storage, backupId)
    const stale = held && staleHere(held.record)
    if (held && stale === undefined) {
      throw busyWithPrune(storage, backupId, held)
    }
    const now = Date.now()
    const record: PruneLockRecord = {
      token: randomUUID(),
      host: hostname(),
      pid: process.pid,
      ...(pidNamespace() === undefined ? {} : { pidNamespace: pidNamespace() }),
      startedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + LEASE_MS).toISOString(),
      revision: held?.record.revision ?? 0
    }
    try {
      await writeNextRevision(storage, pruneLockBase(backupId), record, 'prune lock')
    } catch (error) {
      if (!isBackupError(error, 'KB_BACKUP_BUSY')) {
        throw error
      }
      // Another prune took the lock between our read and our create.
      const holder = await readLock(storage, backupId)
      throw holder ? busyWithPrune(storage, backupId, holder) : error
    }
    if (held && stale !== 'released') {
      onTakeOver?.(
        `took over the prune lock ${held.key} (pid ${held.record.pid} on ${held.record.host}, since ${held.record.startedAt}): ${stale}`,
        held.key
      )
    }
    const lock = new PruneLock(storage, backupId, record, now)
    for (const older of await storedRevisions(storage, pruneLockBase(backupId))) {
      if (older.revision < record.revision!) {
        await storage.delete(older.key)
      }
    }
    return lock
  }

  /** Throws KB_BACKUP_BUSY when another prune took the lock over, or ours is about to run out: check before every change. */
  check(): void {
    if (this.#lost) {
      throw this.#lost
    }
    if (Date.now() > this.#renewedAt + LEASE_MS - RENEW_MS) {
      throw new BackupError(
        'KB_BACKUP_BUSY',
        `the prune of backup ${this.#backupId} could not renew its lock ${this.#storage.location}/${pruneLockBase(this.#backupId)} ` +
          `since ${new Date(this.#renewedAt).toISOString()}; it stops before the lease runs out and another prune may take over. Run it again`,
        { backupId: this.#backupId }
      )
    }
  }

  async #renew(): Promise<void> {
    if (this.#lost) {
      return
    }
    const now = Date.now()
    const renewed = { ...this.#record, expiresAt: new Date(now + LEASE_MS).toISOString() }
    const previous = revisionKey(pruneLockBase(this.#backupId), this.#record.revision!)
    try {
      await writeNextRevision(this.#storage, pruneLockBase(this.#backupId), renewed, 'prune lock')
      this.#record.revision = renewed.revision
      this.#renewedAt = now
      // Keeps the chain one revision long however long the prune runs.
      await this.#storage.delete(previous)
    } catch (error) {
      if (isBackupError(error, 'KB_BACKUP_BUSY')) {
        const holder = await readLock(this.#storage, this.#backupId).catch(() => undefined)
        this.#lost = holder ? busyWithPrune(this.#storage, this.#backupId, holder) : error
      }
      // Any other failure: the next renewal tries again, and check() stops us before the lease runs out.
    }
  }

  /** Marks the lock released, unless another prune took it over. */
  async release(): Promise<void> {
    clearInterval(this.#timer)
    await this.#writing
    if (this.#lost) {
      return
    }
    const released = { ...this.#record, released: true }
    try {
      await writeNextRevision(this.#storage, pruneLockBase(this.#backupId), released, 'prune lock')
      await this.#storage.delete(revisionKey(pruneLockBase(this.#backupId), this.#record.revision!))
    } catch (error) {
      if (!isBackupError(error, 'KB_BACKUP_BUSY')) {
        throw error
      }
    }
  }
}
