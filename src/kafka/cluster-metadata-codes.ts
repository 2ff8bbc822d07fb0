/**
 * The names and Kafka codes of cluster metadata (ACL fields, SCRAM mechanisms) and its shapes,
 * apart from the requests (cluster-metadata.ts) so that the catalogue can name them without
 * loading the protocol library (`list`, `validate` start without it).
 */

/** Kafka's codes for the fields of an ACL, by the names `kafka-acls.sh` and the Java Admin use. */
export const AclResourceTypes = {
  TOPIC: 2,
  GROUP: 3,
  CLUSTER: 4,
  TRANSACTIONAL_ID: 5,
  DELEGATION_TOKEN: 6,
  USER: 7
} as const
export const AclPatternTypes = { LITERAL: 3, PREFIXED: 4 } as const
export const AclOperations = {
  ALL: 2,
  READ: 3,
  WRITE: 4,
  CREATE: 5,
  DELETE: 6,
  ALTER: 7,
  DESCRIBE: 8,
  CLUSTER_ACTION: 9,
  DESCRIBE_CONFIGS: 10,
  ALTER_CONFIGS: 11,
  IDEMPOTENT_WRITE: 12,
  CREATE_TOKENS: 13,
  DESCRIBE_TOKENS: 14,
  TWO_PHASE_COMMIT: 15
} as const
export const AclPermissionTypes = { DENY: 2, ALLOW: 3 } as const

/** One ACL binding, its codes by Kafka's names (as `kafka-acls.sh` and the Java Admin name them). */
export interface AclBinding {
  resourceType: keyof typeof AclResourceTypes
  resourceName: string
  patternType: keyof typeof AclPatternTypes
  principal: string
  host: string
  operation: keyof typeof AclOperations
  permissionType: keyof typeof AclPermissionTypes
}

export interface QuotaEntity {
  /** `user`, `client-id` or `ip`. */
  entityType: string
  /** null: the default entity of that type. */
  entityName: string | null
}

export interface ClientQuota {
  entity: QuotaEntity[]
  values: Record<string, number>
}

export const ScramMechanisms = { 'SCRAM-SHA-256': 1, 'SCRAM-SHA-512': 2 } as const
export type ScramMechanism = keyof typeof ScramMechanisms

export interface ScramCredentialInfo {
  user: string
  mechanism: ScramMechanism
  iterations: number
}

/** `ALLOW User:alice READ on TOPIC orders (LITERAL) from *`: how messages and the dry run name an ACL. */
export function aclName(acl: AclBinding): string {
  return `${acl.permissionType} ${acl.principal} ${acl.operation} on ${acl.resourceType} ${acl.resourceName} (${acl.patternType}) from ${acl.host}`
}

/** `user=alice,client-id=<default>`: how messages and the dry run name a quota entity. */
export function quotaEntityName(entity: QuotaEntity[]): string {
  return entity.map(e => `${e.entityType}=${e.entityName ?? '<default>'}`).join(',')
}
