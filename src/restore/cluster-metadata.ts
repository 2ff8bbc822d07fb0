/**
 * Applies the cluster metadata of a backup (metadata/kafka/{revision}.json) that `restore.metadata`
 * selects: ACLs, client quotas, SCRAM credentials (docs/cluster-metadata.md). Planned with the
 * restore's other checks, before anything is written, so a dry run lists exactly what the real
 * run would create and fails where it would. ACLs and SCRAM credentials the target lacks are
 * created, quota values the target lacks or holds otherwise are set; nothing is removed, and a
 * rerun changes nothing.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { readClusterMetadata } from '../catalog/cluster-metadata.ts'
import type { ClusterMetadataKind } from '../config/schema-parts.ts'
import { BackupError } from '../errors.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import {
  alterClientQuotas,
  createAcls,
  describeAcls,
  describeClientQuotas,
  describeScramCredentials,
  type ScramUpsertion,
  upsertScramCredentials
} from '../kafka/cluster-metadata.ts'
import {
  type AclBinding,
  aclName,
  type ClientQuota,
  quotaEntityName,
  type ScramCredentialInfo
} from '../kafka/cluster-metadata-codes.ts'
import type { Storage } from '../storage/storage.ts'

export interface ClusterMetadataOptions {
  storage: Storage
  backupId: string
  cluster: KafkaCluster
  kinds: readonly ClusterMetadataKind[]
  topicMapping: Record<string, string>
  /** restore.scram_users_file: user -> password. */
  scramUsersFile?: string
}

/** What the restore creates on the target (a dry run: would create), and what it already has. */
export interface ClusterMetadataChanges {
  acls: AclBinding[]
  /** Per entity, only the values the target lacks or holds with another value. */
  quotas: ClientQuota[]
  scramUsers: ScramCredentialInfo[]
  /** Backed-up entries the target already has (quotas: per entity and key). */
  unchanged: { acls: number; quotas: number; scramUsers: number }
}

/** The changes, notes for the restore's summary, and the passwords the SCRAM credentials are made from. */
export interface ClusterMetadataPlan extends ClusterMetadataChanges {
  notes: string[]
  passwords: Map<string, string>
}

const aclKey = (acl: AclBinding) =>
  JSON.stringify([
    acl.resourceType,
    acl.resourceName,
    acl.patternType,
    acl.principal,
    acl.host,
    acl.operation,
    acl.permissionType
  ])

/**
 * The ACLs as the target should have them: a LITERAL topic ACL follows `topic_mapping`. A
 * PREFIXED one is kept as it is (a prefix names no one topic), with a note when it covered a
 * renamed topic.
 */
function mappedAcls(acls: AclBinding[], topicMapping: Record<string, string>, notes: string[]): AclBinding[] {
  return acls.map(acl => {
    if (acl.resourceType !== 'TOPIC') {
      return acl
    }
    if (acl.patternType === 'LITERAL') {
      const target = topicMapping[acl.resourceName]
      return target === undefined ? acl : { ...acl, resourceName: target }
    }
    const renamed = Object.keys(topicMapping).filter(topic => topic.startsWith(acl.resourceName))
    if (renamed.length > 0) {
      notes.push(
        `the ACL ${aclName(acl)} is restored as it is: it covered ${renamed.join(', ')}, which topic_mapping renames`
      )
    }
    return acl
  })
}

const entityKey = (quota: ClientQuota) =>
  quotaEntityName([...quota.entity].sort((a, b) => a.entityType.localeCompare(b.entityType)))

async function readPasswords(file: string | undefined, users: string[]): Promise<Map<string, string>> {
  const path = 'restore.scram_users_file'
  if (file === undefined) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${path} is not set, and the restore creates the SCRAM users ${users.join(', ')}: Kafka never returns their secrets, so give each a password in that file (user: password)`,
      { path, users }
    )
  }
  let parsed: unknown
  try {
    parsed = parseYaml(await readFile(file, 'utf8'))
  } catch (error) {
    throw new BackupError('KB_CONFIG_INVALID', `${path}: cannot read ${file} (${(error as Error).message})`, {
      path,
      file,
      cause: error
    })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BackupError('KB_CONFIG_INVALID', `${path}: ${file} must map each user to a password (user: password)`, {
      path,
      file
    })
  }
  const passwords = new Map<string, string>()
  const missing: string[] = []
  for (const user of users) {
    const password = (parsed as Record<string, unknown>)[user]
    if (typeof password !== 'string' || password === '') {
      missing.push(user)
    } else {
      passwords.set(user, password)
    }
  }
  if (missing.length > 0) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `${path}: ${file} has no password (a non-empty string) for the SCRAM users ${missing.join(', ')}`,
      { path, file, users: missing }
    )
  }
  return passwords
}

/**
 * Compares the backup's metadata with the target; refuses what the real run would refuse.
 * `verifying`: only compare (after applying), without asking the broker to validate quotas or
 * reading passwords.
 */
export async function planClusterMetadata(
  options: ClusterMetadataOptions,
  verifying = false
): Promise<ClusterMetadataPlan | undefined> {
  const { storage, backupId, cluster, kinds, topicMapping } = options
  if (kinds.length === 0) {
    return undefined
  }
  const backedUp = await readClusterMetadata(storage, backupId)
  const field = { acls: 'acls', quotas: 'quotas', scram_users: 'scramUsers' } as const
  const absent = kinds.filter(kind => backedUp?.[field[kind]] === undefined)
  if (!backedUp || absent.length > 0) {
    throw new BackupError(
      'KB_CONFIG_INVALID',
      `restore.metadata asks for ${absent.join(', ')}, which backup ${backupId} did not capture (metadata/kafka/{revision}.json); a backup captures what backup.metadata names`,
      { path: 'restore.metadata', expected: 'kinds the backup captured', found: absent }
    )
  }
  const plan: ClusterMetadataPlan = {
    acls: [],
    quotas: [],
    scramUsers: [],
    unchanged: { acls: 0, quotas: 0, scramUsers: 0 },
    notes: [],
    passwords: new Map()
  }
  if (backedUp.acls) {
    const wanted = mappedAcls(backedUp.acls.bindings, topicMapping, plan.notes)
    const existing = await describeAcls(cluster)
    if (existing === undefined && wanted.length > 0) {
      throw new BackupError(
        'KB_KAFKA',
        `the target cluster has no authorizer (SECURITY_DISABLED), so the ${wanted.length} backed-up ACLs cannot be created; set authorizer.class.name on the target or leave acls out of restore.metadata`,
        { path: 'restore.metadata' }
      )
    }
    const present = new Set((existing ?? []).map(aclKey))
    plan.acls = wanted.filter(acl => !present.has(aclKey(acl)))
    plan.unchanged.acls = wanted.length - plan.acls.length
  }
  if (backedUp.quotas) {
    const existing = new Map((await describeClientQuotas(cluster)).map(q => [entityKey(q), q.values]))
    for (const quota of backedUp.quotas) {
      const current = existing.get(entityKey(quota)) ?? {}
      const values = Object.fromEntries(Object.entries(quota.values).filter(([key, value]) => current[key] !== value))
      plan.unchanged.quotas += Object.keys(quota.values).length - Object.keys(values).length
      if (Object.keys(values).length > 0) {
        plan.quotas.push({ entity: quota.entity, values })
      }
    }
    if (!verifying) {
      // The broker checks keys and values without applying them, so a dry run refuses them too.
      await alterClientQuotas(cluster, plan.quotas, true)
    }
  }
  if (backedUp.scramUsers) {
    const existing = new Set((await describeScramCredentials(cluster)).map(c => `${c.user}\n${c.mechanism}`))
    plan.scramUsers = backedUp.scramUsers.filter(c => !existing.has(`${c.user}\n${c.mechanism}`))
    plan.unchanged.scramUsers = backedUp.scramUsers.length - plan.scramUsers.length
    const users = [...new Set(plan.scramUsers.map(c => c.user))]
    if (users.length > 0 && !verifying) {
      plan.passwords = await readPasswords(options.scramUsersFile, users)
    }
  }
  return plan
}

/** RFC 5802's SaltedPassword, Hi(password, salt, i): PBKDF2 with the mechanism's HMAC. */
function scramUpsertion(credential: ScramCredentialInfo, password: string): ScramUpsertion {
  const [digest, length] = credential.mechanism === 'SCRAM-SHA-256' ? ['sha256', 32] : ['sha512', 64]
  const salt = randomBytes(32)
  return {
    ...credential,
    salt,
    saltedPassword: pbkdf2Sync(Buffer.from(password, 'utf8'), salt, credential.iterations, length, digest)
  }
}

/**
 * Creates what the plan lists, then reads the target again until it holds all of it: a
 * restore that reports success has every backed-up entry on the target.
 */
export async function applyClusterMetadata(
  options: ClusterMetadataOptions,
  plan: ClusterMetadataPlan,
  timeoutMs = 30_000
): Promise<void> {
  const { cluster } = options
  await createAcls(cluster, plan.acls)
  await alterClientQuotas(cluster, plan.quotas, false)
  await upsertScramCredentials(
    cluster,
    plan.scramUsers.map(c => scramUpsertion(c, plan.passwords.get(c.user)!))
  )
  // Writes go through the controller; the broker that answers a describe may see them a moment later.
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const again = await planClusterMetadata(options, true)
    const missing = [
      ...(again?.acls ?? []).map(aclName),
      ...(again?.quotas ?? []).map(q => `quota ${quotaEntityName(q.entity)} ${JSON.stringify(q.values)}`),
      ...(again?.scramUsers ?? []).map(c => `SCRAM credential ${c.user} (${c.mechanism})`)
    ]
    if (missing.length === 0) {
      return
    }
    if (Date.now() > deadline) {
      throw new BackupError(
        'KB_VERIFY_MISMATCH',
        `the target still lacks ${missing.length} restored metadata entries ${timeoutMs / 1000} s after they were created, e.g. ${missing[0]}`,
        { missing }
      )
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}
