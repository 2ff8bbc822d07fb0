/**
 * Captures the cluster metadata `backup.metadata` selects (docs/cluster-metadata.md). Runs
 * before the backup writes anything, so a principal that may not describe what was asked for
 * fails the run at once, naming the right it lacks.
 */
import {
  CLUSTER_METADATA_FORMAT,
  CLUSTER_METADATA_VERSION,
  type ClusterMetadataDocument
} from '../catalog/cluster-metadata.ts'
import type { ClusterMetadataKind } from '../config/schema-parts.ts'
import type { KafkaCluster } from '../kafka/cluster.ts'
import { describeAcls, describeClientQuotas, describeScramCredentials } from '../kafka/cluster-metadata.ts'

export async function captureClusterMetadata(
  cluster: KafkaCluster,
  kinds: readonly ClusterMetadataKind[],
  clusterId: string | null,
  onWarning?: (message: string, context: Record<string, unknown>) => void
): Promise<ClusterMetadataDocument> {
  const wanted = new Set(kinds)
  const [acls, quotas, scramUsers] = await Promise.all([
    wanted.has('acls') ? describeAcls(cluster) : undefined,
    wanted.has('quotas') ? describeClientQuotas(cluster) : undefined,
    wanted.has('scram_users') ? describeScramCredentials(cluster) : undefined
  ])
  if (wanted.has('acls') && acls === undefined) {
    onWarning?.('backup.metadata has acls, but the source cluster has no authorizer: there are no ACLs to capture', {
      path: 'backup.metadata'
    })
  }
  const byText = (a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b))
  return {
    format: CLUSTER_METADATA_FORMAT,
    formatVersion: CLUSTER_METADATA_VERSION,
    capturedAt: new Date().toISOString(),
    clusterId,
    // Sorted, so that two captures of the same cluster are the same file.
    ...(wanted.has('acls') && { acls: { authorizer: acls !== undefined, bindings: (acls ?? []).sort(byText) } }),
    ...(quotas && { quotas: quotas.sort(byText) }),
    ...(scramUsers && { scramUsers: scramUsers.sort(byText) })
  }
}
