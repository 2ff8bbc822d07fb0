/**
 * Whether a source partition's log still continues the history a backup holds of it
 * (docs/source-changes.md, "A log truncated and written again"). Offsets alone cannot tell: a
 * log truncated behind the checkpoint and written past it again (an unclean leader election, a
 * cluster brought back from older disks) has the checkpoint's offsets, with other records. The
 * leader epoch of the last stored batch can: the leader tells, for that epoch, where its log
 * leaves it (OffsetForLeaderEpoch, the check Kafka's consumers make since KIP-320). A log that
 * leaves the epoch before the end of the stored batch, or never had the epoch, is another
 * history; continuing the backup would join the two.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { PartitionIndex } from '../catalog/manifest.ts'
import type { KeyProvider } from '../crypto/keys.ts'
import { BackupError } from '../errors.ts'
import { addToLeaderRequest, partitionKey } from '../kafka/admin.ts'
import {
  decodeOffsetForLeaderEpoch,
  type EpochRequestTopic,
  encodeOffsetForLeaderEpoch,
  OFFSET_FOR_LEADER_EPOCH,
  UNDEFINED_EPOCH,
  UNDEFINED_EPOCH_OFFSET
} from '../kafka/api/offset-for-leader-epoch.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { isRetriable, ProtocolError } from '../kafka/wire/errors.ts'
import { readFrame, readSegmentIndex } from '../segment/reader.ts'
import { mapLimited } from '../slots.ts'
import { openRangeSource } from '../storage/range-source.ts'
import type { Storage } from '../storage/storage.ts'

/** The end of what a backup holds of a partition: its last stored batch. */
export interface StoredEnd {
  /** That batch's partitionLeaderEpoch; -1 when the broker did not stamp one. */
  leaderEpoch: number
  /** The batch's lastOffset + 1. */
  nextOffset: bigint
}

/** The leader's answer for the stored batch's epoch. */
export interface EpochEnd {
  /** The largest epoch of the source log at or below the one asked; -1 when it has none. */
  leaderEpoch: number
  /** Where the source log leaves that epoch (its log end for the current epoch); -1 when it has none. */
  endOffset: bigint
}

/** How the source log differs from the backed-up one, in words for the error message. */
export function divergence(stored: StoredEnd, source: EpochEnd): string | undefined {
  if (stored.leaderEpoch < 0) {
    // An unstamped batch (-1) gives nothing to compare; the offset checks still apply.
    return undefined
  }
  if (source.leaderEpoch === UNDEFINED_EPOCH || source.endOffset === UNDEFINED_EPOCH_OFFSET) {
    return `the source log has no leader epoch at or below ${stored.leaderEpoch}: all of it was written in later epochs`
  }
  // A replica that holds a batch of epoch E knows epoch E (followers take epochs from the batches
  // they copy), unless retention removed it and every epoch below it, when the leader answers
  // with E itself. A smaller epoch means the leader's log never held the stored batch.
  if (source.leaderEpoch < stored.leaderEpoch) {
    return `the source log has no leader epoch ${stored.leaderEpoch}: its epoch ${source.leaderEpoch} runs to offset ${source.endOffset}`
  }
  if (source.endOffset < stored.nextOffset) {
    return `on the source, leader epoch ${stored.leaderEpoch} ends at offset ${source.endOffset}, before the end of the backed-up batch`
  }
  return undefined
}

/** Reads of old segments (an index without lastLeaderEpoch) at once. */
const SEGMENT_READS_AT_ONCE = 8
/** How long partitions without a leader, or whose leader just moved, are asked again. */
const RETRY_MS = 30_000

/**
 * Refuses, with KB_SOURCE_DIVERGED, a run whose source log no longer continues what the backup
 * holds of a partition: asked of each partition's leader before the first Fetch, so nothing is
 * written on top of another history.
 */
export async function refuseDivergedPartitions(
  cluster: KafkaCluster,
  storage: Storage,
  backupId: string,
  indexes: PartitionIndex[],
  keys: KeyProvider | undefined
): Promise<void> {
  const stored = await storedEnds(storage, backupId, indexes, keys)
  if (stored.size === 0) {
    return
  }
  let partitions = indexes.filter(i => stored.has(partitionKey(i.topic, i.partition)))
  const deadline = Date.now() + RETRY_MS
  for (let attempt = 1; ; attempt++) {
    const metadata = await cluster.metadata([...new Set(partitions.map(p => p.topic))])
    const byLeader = new Map<number, EpochRequestTopic[]>()
    const retry = new Set<string>()
    let lastError = 'the partition has no leader'
    for (const { topic, partition } of partitions) {
      const key = partitionKey(topic, partition)
      const leader = metadata.topics.get(topic)?.partitions[partition]?.leader ?? -1
      if (leader < 0) {
        retry.add(key)
        continue
      }
      addToLeaderRequest(byLeader, leader, topic, {
        partitionIndex: partition,
        currentLeaderEpoch: -1,
        leaderEpoch: stored.get(key)!.leaderEpoch
      })
    }
    const acl = `Describe on topic ${[...new Set(partitions.map(p => p.topic))].join(', ')}`
    const responses = await Promise.all(
      [...byLeader].map(([leader, topics]) =>
        cluster.call(
          'checking leader epochs',
          () =>
            cluster.request(
              { broker: leader },
              OFFSET_FOR_LEADER_EPOCH.apiKey,
              OFFSET_FOR_LEADER_EPOCH.version,
              encodeOffsetForLeaderEpoch(topics),
              decodeOffsetForLeaderEpoch
            ),
          acl
        )
      )
    )
    for (const topic of responses.flat()) {
      for (const answer of topic.partitions) {
        const key = partitionKey(topic.name, answer.partitionIndex)
        const end = stored.get(key)
        if (end === undefined) {
          continue
        }
        if (answer.errorCode !== 0) {
          const error = new ProtocolError(
            answer.errorCode,
            `OffsetForLeaderEpoch of ${topic.name}/${answer.partitionIndex}`
          )
          if (!isRetriable(answer.errorCode)) {
            throw cluster.failure('checking leader epochs', error, acl)
          }
          lastError = error.message
          retry.add(key)
          continue
        }
        const differs = divergence(end, answer)
        if (differs !== undefined) {
          throw diverged(backupId, topic.name, answer.partitionIndex, end, answer, differs)
        }
      }
    }
    partitions = partitions.filter(p => retry.has(partitionKey(p.topic, p.partition)))
    const [first] = partitions
    if (first === undefined) {
      return
    }
    if (Date.now() >= deadline) {
      throw new BackupError(
        'KB_KAFKA',
        `checking the leader epoch of ${first.topic}/${first.partition} failed: ${lastError}`,
        { topic: first.topic, partition: first.partition }
      )
    }
    await sleep(Math.min(100 * 2 ** attempt, 1_000))
  }
}

export function diverged(
  backupId: string,
  topic: string,
  partition: number,
  stored: StoredEnd,
  source: EpochEnd,
  differs: string
): BackupError {
  const lastOffset = stored.nextOffset - 1n
  return new BackupError(
    'KB_SOURCE_DIVERGED',
    `${topic}/${partition} on the source is no longer the log backup ${backupId} holds: its last batch ends at offset ${lastOffset} ` +
      `in leader epoch ${stored.leaderEpoch}, and ${differs}. The log was truncated and written again (an unclean leader ` +
      'election, a cluster brought back from older disks), so the offsets from here on hold other records; ' +
      'back the topic up under a new backup_id. The backup was left as it is',
    {
      topic,
      partition,
      offset: lastOffset.toString(),
      leaderEpoch: stored.leaderEpoch,
      expected: `leader epoch ${stored.leaderEpoch} through offset ${lastOffset}`,
      found: `leader epoch ${source.leaderEpoch} ending at offset ${source.endOffset}`
    }
  )
}

/** The last stored batch of every index that has segments, by `topic/partition`. */
async function storedEnds(
  storage: Storage,
  backupId: string,
  indexes: PartitionIndex[],
  keys: KeyProvider | undefined
): Promise<Map<string, StoredEnd>> {
  const ends = new Map<string, StoredEnd>()
  const unrecorded: PartitionIndex[] = []
  for (const index of indexes) {
    const last = index.segments.at(-1)
    if (last === undefined) {
      continue
    }
    if (last.lastLeaderEpoch === undefined) {
      unrecorded.push(index)
    } else {
      ends.set(partitionKey(index.topic, index.partition), {
        leaderEpoch: last.lastLeaderEpoch,
        nextOffset: BigInt(last.nextOffset)
      })
    }
  }
  await mapLimited(unrecorded, SEGMENT_READS_AT_ONCE, async index => {
    ends.set(partitionKey(index.topic, index.partition), await lastBatchOf(storage, backupId, index, keys))
  })
  return ends
}

/** Read from the segment, for indexes written before entries recorded the epoch. */
async function lastBatchOf(
  storage: Storage,
  backupId: string,
  index: PartitionIndex,
  keys: KeyProvider | undefined
): Promise<StoredEnd> {
  const entry = index.segments.at(-1)!
  const key = `${backupId}/${entry.key}`
  const source = await openRangeSource(storage, key, { size: entry.sizeBytes })
  const segment = await readSegmentIndex(source, key)
  const batches = await readFrame(source, segment, segment.footer.frames.length - 1, { keys })
  const batch = batches.at(-1)
  if (batch === undefined) {
    throw new BackupError('KB_SEGMENT_CORRUPT', `segment ${key} ends with a frame of no batches`, {
      key,
      topic: index.topic,
      partition: index.partition
    })
  }
  return { leaderEpoch: batch.partitionLeaderEpoch, nextOffset: batch.lastOffset + 1n }
}
