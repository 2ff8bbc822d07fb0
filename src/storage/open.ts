/**
 * The Storage for a validated `storage` config section. Object-store SDKs are imported only
 * when their backend is used, so a filesystem backup never loads them.
 */
import type { StorageConfig } from '../config/schema.ts'
import { FilesystemStorage } from './filesystem.ts'
import { MemoryStorage } from './memory.ts'
import type { Storage } from './storage.ts'

export async function openStorage(config: StorageConfig): Promise<Storage> {
  switch (config.backend) {
    case 'filesystem':
      return new FilesystemStorage({ path: config.path, prefix: config.prefix })
    case 'memory':
      return new MemoryStorage()
    case 's3': {
      const { S3Storage } = await import('./s3.ts')
      return new S3Storage({
        bucket: config.bucket,
        region: config.region,
        prefix: config.prefix,
        endpoint: config.endpoint,
        accessKey: config.access_key,
        secretKey: config.secret_key,
        forcePathStyle: config.force_path_style,
        multipartThreshold: config.multipart_threshold,
        multipartPartSize: config.multipart_part_size,
        maxConcurrentUploads: config.max_concurrent_uploads
      })
    }
    case 'azure': {
      const { AzureBlobStorage } = await import('./azure.ts')
      return new AzureBlobStorage({
        container: config.container,
        accountName: config.account_name,
        accountKey: config.account_key,
        connectionString: config.connection_string,
        endpoint: config.endpoint,
        prefix: config.prefix
      })
    }
    case 'gcs': {
      const { GcsStorage } = await import('./gcs.ts')
      return new GcsStorage({
        bucket: config.bucket,
        prefix: config.prefix,
        serviceAccountJson: config.service_account_json,
        endpoint: config.endpoint
      })
    }
  }
}
