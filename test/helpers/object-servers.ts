/**
 * The object-store servers for a test file: started once (installed on first use by
 * scripts/object-servers/install.ts) and stopped in an after() hook, which node:test runs also
 * when tests fail; a server still running when the process exits is killed. Each test makes
 * its own bucket or container, so tests never see each other's objects.
 *
 *     const s3 = await useS3Server()   // at the top of a test file
 *     const bucket = await s3.createBucket()
 */

import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { BlobServiceClient } from '@azure/storage-blob'
import { Storage as GcsClient } from '@google-cloud/storage'
import {
  type AzuriteServer,
  type FakeGcsServer,
  type RunningObjectServer,
  restartObjectServer,
  type S3Server,
  startAzurite,
  startFakeGcs,
  startS3Server,
  stopObjectServer
} from '../../scripts/object-servers/servers.ts'
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3.ts'

export {
  type AzuriteServer,
  type FakeGcsServer,
  type RunningObjectServer,
  restartObjectServer,
  type S3Server,
  startAzurite,
  startFakeGcs,
  startS3Server,
  stopObjectServer
}

/** A unique, valid bucket or container name. */
export function uniqueName(base: string): string {
  return `${base}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`
}

function announce(server: RunningObjectServer): void {
  console.error(`# ${server.kind} server ${server.endpoint} ready in ${server.startupMs} ms (log ${server.logFile})`)
}

function stopAfter(server: RunningObjectServer): void {
  after(async () => {
    await stopObjectServer(server)
  })
}

export interface S3Fixture {
  server: S3Server
  /** A client with the server's credentials (path style), for checks behind the backend's back. */
  client: S3Client
  createBucket(base?: string): Promise<string>
  /** Our S3 backend on `bucket`, with the server's credentials and path-style addressing. */
  storageFor(bucket: string, options?: Partial<S3StorageOptions>): S3Storage
}

export async function useS3Server(): Promise<S3Fixture> {
  const server = await startS3Server()
  announce(server)
  stopAfter(server)
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKey, secretAccessKey: server.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED'
  })
  after(() => client.destroy())
  return {
    server,
    client,
    async createBucket(base = 'kb') {
      const bucket = uniqueName(base)
      await client.send(new CreateBucketCommand({ Bucket: bucket }))
      return bucket
    },
    storageFor(bucket, options = {}) {
      return new S3Storage({
        bucket,
        endpoint: server.endpoint,
        region: server.region,
        accessKey: server.accessKey,
        secretKey: server.secretKey,
        forcePathStyle: true,
        ...options
      })
    }
  }
}

export interface AzureFixture {
  server: AzuriteServer
  service: BlobServiceClient
  createContainer(base?: string): Promise<string>
}

export async function useAzurite(): Promise<AzureFixture> {
  const server = await startAzurite()
  announce(server)
  stopAfter(server)
  const service = BlobServiceClient.fromConnectionString(server.connectionString)
  return {
    server,
    service,
    async createContainer(base = 'kb') {
      const container = uniqueName(base)
      await service.getContainerClient(container).create()
      return container
    }
  }
}

export interface GcsFixture {
  server: FakeGcsServer
  client: GcsClient
  createBucket(base?: string): Promise<string>
}

export async function useFakeGcs(): Promise<GcsFixture> {
  const server = await startFakeGcs()
  announce(server)
  stopAfter(server)
  const client = new GcsClient({ apiEndpoint: server.endpoint, projectId: 'kafka-backup-tests' })
  return {
    server,
    client,
    async createBucket(base = 'kb') {
      const bucket = uniqueName(base)
      await client.createBucket(bucket)
      return bucket
    }
  }
}
