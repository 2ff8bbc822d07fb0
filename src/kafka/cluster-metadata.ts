/**
 * The cluster metadata a backup carries besides topics (docs/cluster-metadata.md): ACLs, client
 * quotas and SCRAM credentials. Six requests, written and parsed here on our protocol layer
 * (wire/), all flexible versions, sent to any broker (KRaft brokers forward the writes to the
 * controller). Errors in a response are thrown as ours, naming the right the call needs.
 */
import { BackupError } from '../errors.ts'
import type { KafkaCluster } from './cluster.ts'
import {
  type AclBinding,
  AclOperations,
  AclPatternTypes,
  AclPermissionTypes,
  AclResourceTypes,
  aclName,
  type ClientQuota,
  quotaEntityName,
  type ScramCredentialInfo,
  type ScramMechanism,
  ScramMechanisms
} from './cluster-metadata-codes.ts'
import { skipTaggedFields } from './protocol.ts'
import { errorName } from './wire/errors.ts'
import type { Reader } from './wire/reader.ts'
import type { Writer } from './wire/writer.ts'

const ApiKeys = {
  DescribeAcls: 29,
  CreateAcls: 30,
  DescribeClientQuotas: 48,
  AlterClientQuotas: 49,
  DescribeUserScramCredentials: 50,
  AlterUserScramCredentials: 51
} as const

/** In a DescribeAcls filter, ANY (1) matches every value of a field. */
const ANY = 1
const SECURITY_DISABLED = 54

function nameOf<T extends Record<string, number>>(table: T, code: number, field: string): keyof T {
  const name = Object.keys(table).find(key => table[key] === code)
  if (name === undefined) {
    throw new BackupError(
      'KB_KAFKA',
      `the broker described an ACL with ${field} ${code}, which this kafka-backup does not know`,
      {
        field,
        found: code
      }
    )
  }
  return name
}

export interface ScramUpsertion extends ScramCredentialInfo {
  salt: Buffer
  saltedPassword: Buffer
}

type Parser<T> = (reader: Reader) => T

/** Throws our error for a non-zero error code of a response or an entry. */
function check(code: number, message: string | null, what: string, acl: string, context = {}): void {
  if (code === 0) {
    return
  }
  const name = errorName(code)
  const detail = `${what} failed: ${name}${message ? ` (${message})` : ''}`
  if (name.endsWith('_AUTHORIZATION_FAILED')) {
    throw new BackupError('KB_KAFKA_AUTHORIZATION', `${detail}; the principal needs ${acl}`, { acl, ...context })
  }
  throw new BackupError('KB_KAFKA', detail, { errorCode: code, ...context })
}

/** These requests are not bound to a leader: any broker takes them. */
function call<T>(
  cluster: KafkaCluster,
  what: string,
  acl: string,
  apiKey: number,
  apiVersion: number,
  encode: (writer: Writer) => void,
  parse: Parser<T>
): Promise<T> {
  return cluster.call(what, () => cluster.request('any', apiKey, apiVersion, encode, parse), acl)
}

/**
 * Every ACL of the cluster; `undefined` when it has no authorizer (SECURITY_DISABLED), which
 * is not the same as an authorizer with no ACLs.
 */
export async function describeAcls(cluster: KafkaCluster): Promise<AclBinding[] | undefined> {
  const request = (w: Writer) =>
    w
      .appendInt8(ANY)
      .appendString(null)
      .appendInt8(ANY)
      .appendString(null)
      .appendString(null)
      .appendInt8(ANY)
      .appendInt8(ANY)
      .appendTaggedFields()
  const response = await call(
    cluster,
    'describing ACLs (DescribeAcls)',
    'Describe on the cluster',
    ApiKeys.DescribeAcls,
    3,
    request,
    reader => {
      reader.readInt32() // throttle time
      const errorCode = reader.readInt16()
      const errorMessage = reader.readNullableString()
      const acls: AclBinding[] = []
      reader.readArray(r => {
        const resourceType = nameOf(AclResourceTypes, r.readInt8(), 'resource type')
        const resourceName = r.readString()
        const patternType = nameOf(AclPatternTypes, r.readInt8(), 'pattern type')
        r.readArray(r => {
          acls.push({
            resourceType,
            resourceName,
            patternType,
            principal: r.readString(),
            host: r.readString(),
            operation: nameOf(AclOperations, r.readInt8(), 'operation'),
            permissionType: nameOf(AclPermissionTypes, r.readInt8(), 'permission type')
          })
        })
      })
      skipTaggedFields(reader)
      return { errorCode, errorMessage, acls }
    }
  )
  if (response.errorCode === SECURITY_DISABLED) {
    return undefined
  }
  check(response.errorCode, response.errorMessage, 'describing ACLs', 'Describe on the cluster')
  return response.acls
}

export async function createAcls(cluster: KafkaCluster, acls: AclBinding[]): Promise<void> {
  if (acls.length === 0) {
    return
  }
  const request = (w: Writer) =>
    w
      .appendArray(acls, (w, acl) => {
        w.appendInt8(AclResourceTypes[acl.resourceType])
          .appendString(acl.resourceName)
          .appendInt8(AclPatternTypes[acl.patternType])
          .appendString(acl.principal)
          .appendString(acl.host)
          .appendInt8(AclOperations[acl.operation])
          .appendInt8(AclPermissionTypes[acl.permissionType])
      })
      .appendTaggedFields()
  const results = await call(
    cluster,
    'creating ACLs (CreateAcls)',
    'Alter on the cluster',
    ApiKeys.CreateAcls,
    3,
    request,
    reader => {
      reader.readInt32()
      const results = reader.readArray(r => ({ errorCode: r.readInt16(), errorMessage: r.readNullableString() }))
      skipTaggedFields(reader)
      return results
    }
  )
  for (const [i, result] of results.entries()) {
    const acl = acls[i]!
    check(result.errorCode, result.errorMessage, `creating the ACL ${aclName(acl)}`, 'Alter on the cluster', { acl })
  }
}

/** Every client quota of the cluster (users, client ids, IPs and their defaults). */
export async function describeClientQuotas(cluster: KafkaCluster): Promise<ClientQuota[]> {
  // No components and strict=false: every entity matches.
  const request = (w: Writer) =>
    w
      .appendArray([], () => {})
      .appendBoolean(false)
      .appendTaggedFields()
  const response = await call(
    cluster,
    'describing client quotas (DescribeClientQuotas)',
    'DescribeConfigs on the cluster',
    ApiKeys.DescribeClientQuotas,
    1,
    request,
    reader => {
      reader.readInt32()
      const errorCode = reader.readInt16()
      const errorMessage = reader.readNullableString()
      const entries =
        reader.readNullableArray(r => {
          const entity = r.readArray(r => ({ entityType: r.readString(), entityName: r.readNullableString() }))
          const values: Record<string, number> = {}
          r.readArray(r => {
            values[r.readString()] = r.readFloat64()
          })
          return { entity, values }
        }) ?? []
      skipTaggedFields(reader)
      return { errorCode, errorMessage, entries }
    }
  )
  check(response.errorCode, response.errorMessage, 'describing client quotas', 'DescribeConfigs on the cluster')
  return response.entries
}

/** Sets quota values (never removes one). `validateOnly`: the broker checks and changes nothing. */
export async function alterClientQuotas(
  cluster: KafkaCluster,
  quotas: ClientQuota[],
  validateOnly: boolean
): Promise<void> {
  if (quotas.length === 0) {
    return
  }
  const request = (w: Writer) =>
    w
      .appendArray(quotas, (w, quota) => {
        w.appendArray(quota.entity, (w, e) => {
          w.appendString(e.entityType).appendString(e.entityName)
        }).appendArray(Object.entries(quota.values), (w, [key, value]) => {
          w.appendString(key).appendFloat64(value).appendBoolean(false)
        })
      })
      .appendBoolean(validateOnly)
      .appendTaggedFields()
  const results = await call(
    cluster,
    'setting client quotas (AlterClientQuotas)',
    'AlterConfigs on the cluster',
    ApiKeys.AlterClientQuotas,
    1,
    request,
    reader => {
      reader.readInt32()
      const results = reader.readArray(r => ({
        errorCode: r.readInt16(),
        errorMessage: r.readNullableString(),
        entity: r.readArray(r => ({ entityType: r.readString(), entityName: r.readNullableString() }))
      }))
      skipTaggedFields(reader)
      return results
    }
  )
  for (const result of results) {
    check(
      result.errorCode,
      result.errorMessage,
      `setting the client quotas of ${quotaEntityName(result.entity)}`,
      'AlterConfigs on the cluster',
      { entity: result.entity }
    )
  }
}

const mechanismNames = new Map<number, ScramMechanism>(
  Object.entries(ScramMechanisms).map(([name, id]) => [id, name as ScramMechanism])
)

/** Every SCRAM credential's user, mechanism and iterations (the broker never returns secrets). */
export async function describeScramCredentials(cluster: KafkaCluster): Promise<ScramCredentialInfo[]> {
  // A null user list: every user.
  const request = (w: Writer) => w.appendArray(null, () => {}).appendTaggedFields()
  const response = await call(
    cluster,
    'describing SCRAM credentials (DescribeUserScramCredentials)',
    'Describe on the cluster',
    ApiKeys.DescribeUserScramCredentials,
    0,
    request,
    reader => {
      reader.readInt32()
      const errorCode = reader.readInt16()
      const errorMessage = reader.readNullableString()
      const results = reader.readArray(r => ({
        user: r.readString(),
        errorCode: r.readInt16(),
        errorMessage: r.readNullableString(),
        credentials: r.readArray(r => ({ mechanism: r.readInt8(), iterations: r.readInt32() }))
      }))
      skipTaggedFields(reader)
      return { errorCode, errorMessage, results }
    }
  )
  check(response.errorCode, response.errorMessage, 'describing SCRAM credentials', 'Describe on the cluster')
  const credentials: ScramCredentialInfo[] = []
  for (const result of response.results) {
    check(
      result.errorCode,
      result.errorMessage,
      `describing the SCRAM credentials of ${result.user}`,
      'Describe on the cluster',
      { user: result.user }
    )
    for (const { mechanism, iterations } of result.credentials) {
      const name = mechanismNames.get(mechanism)
      if (name === undefined) {
        throw new BackupError(
          'KB_KAFKA',
          `the SCRAM credentials of ${result.user} use mechanism ${mechanism}, which this kafka-backup does not know`,
          { user: result.user, found: mechanism }
        )
      }
      credentials.push({ user: result.user, mechanism: name, iterations })
    }
  }
  return credentials
}

export async function upsertScramCredentials(cluster: KafkaCluster, upsertions: ScramUpsertion[]): Promise<void> {
  if (upsertions.length === 0) {
    return
  }
  const request = (w: Writer) =>
    w
      .appendArray([], () => {})
      .appendArray(upsertions, (w, u) => {
        w.appendString(u.user)
          .appendInt8(ScramMechanisms[u.mechanism])
          .appendInt32(u.iterations)
          .appendBytes(u.salt)
          .appendBytes(u.saltedPassword)
      })
      .appendTaggedFields()
  const results = await call(
    cluster,
    'creating SCRAM credentials (AlterUserScramCredentials)',
    'Alter on the cluster',
    ApiKeys.AlterUserScramCredentials,
    0,
    request,
    reader => {
      reader.readInt32()
      const results = reader.readArray(r => ({
        user: r.readString(),
        errorCode: r.readInt16(),
        errorMessage: r.readNullableString()
      }))
      skipTaggedFields(reader)
      return results
    }
  )
  for (const result of results) {
    check(
      result.errorCode,
      result.errorMessage,
      `creating the SCRAM credentials of ${result.user}`,
      'Alter on the cluster',
      { user: result.user }
    )
  }
}
