/**
 * Kafka's error codes (the protocol guide's table) and the errors our client layer throws.
 * Failures keep what caused them in `cause`, so src/kafka/failure.ts can tell a refused
 * certificate, a failed SASL exchange or an authorization error from a broker that is gone.
 */

// Codes in order from 0; a `*` suffix marks the ones Kafka's clients retry.
const names = `NONE OFFSET_OUT_OF_RANGE CORRUPT_MESSAGE* UNKNOWN_TOPIC_OR_PARTITION* INVALID_FETCH_SIZE
LEADER_NOT_AVAILABLE* NOT_LEADER_OR_FOLLOWER* REQUEST_TIMED_OUT* BROKER_NOT_AVAILABLE REPLICA_NOT_AVAILABLE*
MESSAGE_TOO_LARGE STALE_CONTROLLER_EPOCH OFFSET_METADATA_TOO_LARGE NETWORK_EXCEPTION* COORDINATOR_LOAD_IN_PROGRESS*
COORDINATOR_NOT_AVAILABLE* NOT_COORDINATOR* INVALID_TOPIC_EXCEPTION RECORD_LIST_TOO_LARGE NOT_ENOUGH_REPLICAS*
NOT_ENOUGH_REPLICAS_AFTER_APPEND* INVALID_REQUIRED_ACKS ILLEGAL_GENERATION INCONSISTENT_GROUP_PROTOCOL INVALID_GROUP_ID
UNKNOWN_MEMBER_ID INVALID_SESSION_TIMEOUT REBALANCE_IN_PROGRESS INVALID_COMMIT_OFFSET_SIZE TOPIC_AUTHORIZATION_FAILED
GROUP_AUTHORIZATION_FAILED CLUSTER_AUTHORIZATION_FAILED INVALID_TIMESTAMP UNSUPPORTED_SASL_MECHANISM ILLEGAL_SASL_STATE
UNSUPPORTED_VERSION TOPIC_ALREADY_EXISTS INVALID_PARTITIONS INVALID_REPLICATION_FACTOR INVALID_REPLICA_ASSIGNMENT
INVALID_CONFIG NOT_CONTROLLER* INVALID_REQUEST UNSUPPORTED_FOR_MESSAGE_FORMAT POLICY_VIOLATION
OUT_OF_ORDER_SEQUENCE_NUMBER DUPLICATE_SEQUENCE_NUMBER INVALID_PRODUCER_EPOCH INVALID_TXN_STATE
INVALID_PRODUCER_ID_MAPPING INVALID_TRANSACTION_TIMEOUT CONCURRENT_TRANSACTIONS* TRANSACTION_COORDINATOR_FENCED
TRANSACTIONAL_ID_AUTHORIZATION_FAILED SECURITY_DISABLED OPERATION_NOT_ATTEMPTED KAFKA_STORAGE_ERROR* LOG_DIR_NOT_FOUND
SASL_AUTHENTICATION_FAILED UNKNOWN_PRODUCER_ID REASSIGNMENT_IN_PROGRESS DELEGATION_TOKEN_AUTH_DISABLED
DELEGATION_TOKEN_NOT_FOUND DELEGATION_TOKEN_OWNER_MISMATCH DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
DELEGATION_TOKEN_AUTHORIZATION_FAILED DELEGATION_TOKEN_EXPIRED INVALID_PRINCIPAL_TYPE NON_EMPTY_GROUP GROUP_ID_NOT_FOUND
FETCH_SESSION_ID_NOT_FOUND* INVALID_FETCH_SESSION_EPOCH* LISTENER_NOT_FOUND* TOPIC_DELETION_DISABLED
FENCED_LEADER_EPOCH* UNKNOWN_LEADER_EPOCH* UNSUPPORTED_COMPRESSION_TYPE STALE_BROKER_EPOCH OFFSET_NOT_AVAILABLE*
MEMBER_ID_REQUIRED PREFERRED_LEADER_NOT_AVAILABLE* GROUP_MAX_SIZE_REACHED FENCED_INSTANCE_ID
ELIGIBLE_LEADERS_NOT_AVAILABLE* ELECTION_NOT_NEEDED* NO_REASSIGNMENT_IN_PROGRESS GROUP_SUBSCRIBED_TO_TOPIC
INVALID_RECORD UNSTABLE_OFFSET_COMMIT* THROTTLING_QUOTA_EXCEEDED* PRODUCER_FENCED RESOURCE_NOT_FOUND
DUPLICATE_RESOURCE UNACCEPTABLE_CREDENTIAL INCONSISTENT_VOTER_SET INVALID_UPDATE_VERSION FEATURE_UPDATE_FAILED
PRINCIPAL_DESERIALIZATION_FAILURE SNAPSHOT_NOT_FOUND POSITION_OUT_OF_RANGE UNKNOWN_TOPIC_ID*
DUPLICATE_BROKER_REGISTRATION BROKER_ID_NOT_REGISTERED INCONSISTENT_TOPIC_ID* INCONSISTENT_CLUSTER_ID
TRANSACTIONAL_ID_NOT_FOUND FETCH_SESSION_TOPIC_ID_ERROR* INELIGIBLE_REPLICA NEW_LEADER_ELECTED
OFFSET_MOVED_TO_TIERED_STORAGE FENCED_MEMBER_EPOCH UNRELEASED_INSTANCE_ID UNSUPPORTED_ASSIGNOR STALE_MEMBER_EPOCH
MISMATCHED_ENDPOINT_TYPE UNSUPPORTED_ENDPOINT_TYPE UNKNOWN_CONTROLLER_ID UNKNOWN_SUBSCRIPTION_ID TELEMETRY_TOO_LARGE
INVALID_REGISTRATION TRANSACTION_ABORTABLE INVALID_RECORD_STATE SHARE_SESSION_NOT_FOUND*
INVALID_SHARE_SESSION_EPOCH* FENCED_STATE_EPOCH INVALID_VOTER_KEY DUPLICATE_VOTER VOTER_NOT_FOUND`.split(/\s+/)

const byCode = new Map<number, { name: string; retriable: boolean }>([
  [-1, { name: 'UNKNOWN_SERVER_ERROR', retriable: false }],
  ...names.map((entry, code) => [code, { name: entry.replace('*', ''), retriable: entry.endsWith('*') }] as const)
])

/** The error code's name, e.g. `NOT_LEADER_OR_FOLLOWER`; `error N` for a code we do not know. */
export function errorName(code: number): string {
  return byCode.get(code)?.name ?? `error ${code}`
}

export function isKnownErrorCode(code: number): boolean {
  return byCode.has(code)
}

/** Whether a retry may cure the error; unknown codes count as not retriable. */
export function isRetriable(code: number): boolean {
  return byCode.get(code)?.retriable ?? false
}

/** An error code in a broker's response. */
export class ProtocolError extends Error {
  readonly errorCode: number
  /** The code's name, e.g. `TOPIC_AUTHORIZATION_FAILED`. */
  readonly errorName: string
  readonly retriable: boolean
  /** The broker's own message, when the response has one. */
  readonly serverMessage: string | undefined
  /** The topic the error is about, where the response says. */
  readonly topic: string | undefined

  constructor(errorCode: number, what: string, serverMessage?: string | null, topic?: string) {
    const name = errorName(errorCode)
    super(`${what} failed with ${name}${serverMessage ? `: ${serverMessage}` : ''}`)
    this.name = 'ProtocolError'
    this.errorCode = errorCode
    this.errorName = name
    this.retriable = isRetriable(errorCode)
    this.serverMessage = serverMessage ?? undefined
    this.topic = topic
  }
}

/** Throws a ProtocolError for a non-zero code. */
export function checkErrorCode(errorCode: number, what: string, serverMessage?: string | null): void {
  if (errorCode !== 0) {
    throw new ProtocolError(errorCode, what, serverMessage)
  }
}

/**
 * A connection that could not be made, broke, or did not answer in time. Always worth a retry
 * on another connection, unless its cause is a TLS or SASL failure (see failure.ts).
 */
export class NetworkError extends Error {
  readonly host: string
  readonly port: number
  readonly timeout: boolean

  constructor(message: string, options: { host: string; port: number; cause?: unknown; timeout?: boolean }) {
    super(message, { cause: options.cause })
    this.name = 'NetworkError'
    this.host = options.host
    this.port = options.port
    this.timeout = options.timeout ?? false
  }
}

/** The SASL exchange failed (a ProtocolError from the broker is its cause, when it sent one). */
export class AuthenticationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AuthenticationError'
  }
}
