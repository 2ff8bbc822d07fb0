/**
 * `{backup_id}/metadata/kafka/{revision}.json`: the cluster metadata the last backup run
 * captured (docs/cluster-metadata.md). Each kind is present only when `backup.metadata` selected
 * it, so a restore can tell "captured, none" (an empty list) from "not captured" (absent). Every
 * run that captures anything writes the next revision (revisions.ts: never overwritten, older
 * revisions go with `prune`); the newest describes the cluster as the latest run saw it. A
 * `metadata/kafka.json` written before revisions is read as revision 0.
 */
import { z } from 'zod'
import {
  AclOperations,
  AclPatternTypes,
  AclPermissionTypes,
  AclResourceTypes,
  ScramMechanisms
} from '../kafka/cluster-metadata-codes.ts'
import type { Storage } from '../storage/storage.ts'
import { type DocumentKind, readDocument } from './document.ts'
import { legacyKey, newestRevision, writeNextRevision } from './revisions.ts'

export const CLUSTER_METADATA_FORMAT = 'kafka-backup-cluster-metadata'
export const CLUSTER_METADATA_VERSION = 1

const names = <T extends Record<string, number>>(table: T) => z.enum(Object.keys(table) as [keyof T & string])

const aclSchema = z.object({
  resourceType: names(AclResourceTypes),
  resourceName: z.string().min(1),
  patternType: names(AclPatternTypes),
  principal: z.string().min(1),
  host: z.string().min(1),
  operation: names(AclOperations),
  permissionType: names(AclPermissionTypes)
})

const quotaSchema = z.object({
  entity: z.array(z.object({ entityType: z.string().min(1), entityName: z.string().nullable() })).min(1),
  values: z.record(z.string(), z.number().nonnegative())
})

const scramCredentialSchema = z.object({
  user: z.string().min(1),
  mechanism: names(ScramMechanisms),
  // Kafka's own bounds for SCRAM iterations.
  iterations: z.int().min(4096).max(16384)
})

export const clusterMetadataSchema = z.object({
  format: z.literal(CLUSTER_METADATA_FORMAT),
  formatVersion: z.int().min(1).max(CLUSTER_METADATA_VERSION),
  revision: z.int().nonnegative().optional(),
  capturedAt: z.iso.datetime(),
  clusterId: z.string().nullable(),
  /** Absent: not captured. `authorizer: false`: the source had no authorizer, so no ACLs. */
  acls: z.object({ authorizer: z.boolean(), bindings: z.array(aclSchema) }).optional(),
  quotas: z.array(quotaSchema).optional(),
  /** Names, mechanisms and iterations only: Kafka never returns a credential's secrets. */
  scramUsers: z.array(scramCredentialSchema).optional()
})
export type ClusterMetadataDocument = z.infer<typeof clusterMetadataSchema>

export const clusterMetadataBase = (backupId: string) => `${backupId}/metadata/kafka`

/** Where the layout before revisions kept the document: still read, as revision 0. */
export const legacyClusterMetadataKey = (backupId: string) => legacyKey(clusterMetadataBase(backupId))

const kind: DocumentKind<ClusterMetadataDocument> = {
  name: 'cluster metadata',
  format: CLUSTER_METADATA_FORMAT,
  formatVersion: CLUSTER_METADATA_VERSION,
  schema: clusterMetadataSchema
}

export async function readClusterMetadata(
  storage: Storage,
  backupId: string
): Promise<ClusterMetadataDocument | undefined> {
  const newest = await newestRevision(storage, clusterMetadataBase(backupId))
  return newest && readDocument(storage, newest.key, kind)
}

export async function writeClusterMetadata(
  storage: Storage,
  backupId: string,
  document: ClusterMetadataDocument
): Promise<void> {
  const base = clusterMetadataBase(backupId)
  const newest = await newestRevision(storage, base)
  await writeNextRevision(storage, base, { ...document, revision: newest?.revision ?? 0 }, 'cluster metadata')
}
