/** A KafkaCluster for a validated `source` or `target` config section (bootstrap, TLS, SASL). */
import { readFileSync } from 'node:fs'
import type { SecurityConfig, SourceConfig, TargetConfig } from '../config/schema.ts'
import { BackupError } from '../errors.ts'
import { type ClusterOptions, KafkaCluster } from './cluster.ts'
import { clientCredentialsTokens } from './oauth.ts'

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path)
  } catch (error) {
    throw new BackupError('KB_CONFIG_INVALID', `security.${key}: cannot read ${path} (${(error as Error).message})`, {
      path: `security.${key}`,
      file: path,
      cause: error
    })
  }
}

/** `configKey` names the section in messages ("source.security"). */
export function securityOptions(
  security: SecurityConfig,
  configKey = 'security'
): Pick<ClusterOptions, 'tls' | 'sasl'> {
  const protocol = security.security_protocol
  const tls =
    protocol === 'SSL' || protocol === 'SASL_SSL'
      ? {
          ca: security.ssl_ca_location ? readPem(security.ssl_ca_location, 'ssl_ca_location') : undefined,
          cert: security.ssl_certificate_location
            ? readPem(security.ssl_certificate_location, 'ssl_certificate_location')
            : undefined,
          key: security.ssl_key_location ? readPem(security.ssl_key_location, 'ssl_key_location') : undefined,
          passphrase: security.ssl_key_password
        }
      : undefined
  const sasl =
    protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL'
      ? security.sasl_mechanism === 'OAUTHBEARER'
        ? {
            mechanism: security.sasl_mechanism,
            token: clientCredentialsTokens({
              tokenEndpointUrl: security.sasl_oauthbearer_token_endpoint_url!,
              clientId: security.sasl_oauthbearer_client_id!,
              clientSecret: security.sasl_oauthbearer_client_secret!,
              scope: security.sasl_oauthbearer_scope,
              configKey
            })
          }
        : {
            mechanism: security.sasl_mechanism!,
            username: security.sasl_username,
            password: security.sasl_password
          }
      : undefined
  return { tls, sasl }
}

export function connectCluster(section: SourceConfig | TargetConfig): KafkaCluster {
  // Only the source section selects topics: messages name the section's keys by its name.
  const configKey = 'topics' in section ? 'source' : 'target'
  return new KafkaCluster({
    bootstrapServers: section.bootstrap_servers,
    clientId: section.client_id,
    unreachableTimeoutMs: section.unreachable_timeout_secs * 1000,
    configKey,
    ...securityOptions(section.security, `${configKey}.security`)
  })
}
