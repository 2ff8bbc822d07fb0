/**
 * The catalogue's documents that change (the manifest, each partition index, each restore
 * state) are written as a chain of revisions, never replaced in place (docs/architecture.md,
 * "Never overwrite"):
 *
 *   {base}.json                          revision 0: what versions before this layout wrote
 *                                        (replaced in place); read, never written any more
 *   {base}/{revision, 12 digits}.json    revisions 1, 2, ...: each one a new object
 *
 * e.g. `nightly/topics/orders/0/index/000000000042.json`. A reader takes the newest revision
 * (the highest number; `{base}.json` only when there is none), so a backup written by an older
 * version is read as it is, and continuing it writes revision 1 beside it. Every revision is
 * written with Storage.create, so a key is written once: a versioned bucket keeps one version
 * per key and S3 Object Lock can hold every object from the moment it is written. Older
 * revisions are removed only by `prune` (supersededRevisions).
 *
 * The chain is also the fence between writers: revision N+1 has one key, and only the first
 * create of it succeeds. A writer that is behind (a second process on the same backup, or, with
 * workers sharing partitions, an owner whose lease moved on) finds its next key taken and stops
 * with KB_BACKUP_BUSY instead of overwriting a newer checkpoint. An owner's epoch, when workers
 * share a backup, is carried inside the document it writes, and a reader can check it.
 */
import { BackupError, isBackupError } from '../errors.ts'
import type { ObjectInfo, Storage } from '../storage/storage.ts'

const REVISION_DIGITS = 12
const REVISION_NAME = /^(\d{12})\.json$/

/** A document that knows its revision; absent or 0 for `{base}.json`. */
export interface Revisioned {
  revision?: number | undefined
}

export const legacyKey = (base: string) => `${base}.json`

export const revisionKey = (base: string, revision: number) =>
  `${base}/${revision.toString().padStart(REVISION_DIGITS, '0')}.json`

/** The revision a key under `{base}/` names, or undefined for any other object. */
export function revisionOf(base: string, key: string): number | undefined {
  if (!key.startsWith(`${base}/`)) {
    return undefined
  }
  const match = REVISION_NAME.exec(key.slice(base.length + 1))
  return match ? Number(match[1]) : undefined
}

export interface StoredRevision {
  key: string
  revision: number
}

/** The revisions stored under `base`, oldest first, with `{base}.json` as revision 0 when it exists. */
export async function storedRevisions(storage: Storage, base: string): Promise<StoredRevision[]> {
  return revisionsIn(base, [
    ...(await storage.list(`${base}/`)),
    ...((await storage.head(legacyKey(base))) ? [{ key: legacyKey(base), size: 0 }] : [])
  ])
}

/** The revisions of `base` among listed objects, oldest first. */
export function revisionsIn(base: string, objects: readonly ObjectInfo[]): StoredRevision[] {
  const found: StoredRevision[] = []
  for (const { key } of objects) {
    const revision = key === legacyKey(base) ? 0 : revisionOf(base, key)
    if (revision !== undefined) {
      found.push({ key, revision })
    }
  }
  return found.sort((a, b) => a.revision - b.revision)
}

/** The newest revision's key, or undefined when the document has none. */
export async function newestRevision(storage: Storage, base: string): Promise<StoredRevision | undefined> {
  const revisions = await revisionsIn(base, await storage.list(`${base}/`))
  if (revisions.length > 0) {
    return revisions.at(-1)
  }
  return (await storage.head(legacyKey(base))) ? { key: legacyKey(base), revision: 0 } : undefined
}

/** Every revision but the newest: what `prune` may delete without changing what is read. */
export function supersededRevisions(revisions: readonly StoredRevision[]): StoredRevision[] {
  return revisions.slice(0, -1)
}

/**
 * Writes `document` as the revision after the one it was read as (or revision 1 when it is
 * new) and sets its `revision`. `what` names the document in messages (`partition index`).
 */
export async function writeNextRevision(
  storage: Storage,
  base: string,
  document: Revisioned,
  what: string
): Promise<void> {
  const previous = document.revision ?? 0
  const revision = previous + 1
  const key = revisionKey(base, revision)
  document.revision = revision
  const body = Buffer.from(`${JSON.stringify(document, null, 2)}\n`)
  try {
    await storage.create(key, body)
  } catch (error) {
    if (isBackupError(error, 'KB_STORAGE_EXISTS')) {
      // A create retried after a lost response finds its own bytes: that is a success.
      const stored = await storage.get(key).catch(() => undefined)
      if (stored?.equals(body)) {
        return
      }
      document.revision = previous
      throw new BackupError(
        'KB_BACKUP_BUSY',
        `${what} ${storage.location}/${key} was written by another process while this one held revision ${previous}: ` +
          'two processes are writing this backup; this one stops without overwriting it',
        { key, expected: previous, cause: error }
      )
    }
    document.revision = previous
    throw error
  }
}
