/**
 * The Azure Blob backend against Azurite, Microsoft's emulator, run as a real process: the
 * storage contract, plus staged-block uploads, credentials and missing containers.
 */
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  generateAccountSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential
} from '@azure/storage-blob'
import { isBackupError } from '../../src/errors.ts'
import { AzureBlobStorage } from '../../src/storage/azure.ts'
import { useAzurite } from '../helpers/object-servers.ts'
import { storageContract } from './contract.ts'

const MiB = 1024 * 1024
const azure = await useAzurite()

function storageFor(container: string, prefix?: string): AzureBlobStorage {
  return new AzureBlobStorage({
    container,
    accountName: azure.server.accountName,
    accountKey: azure.server.accountKey,
    endpoint: azure.server.endpoint,
    prefix,
    blockSize: 4 * MiB,
    maxConcurrency: 4
  })
}

storageContract('azure (Azurite, shared key)', async () => ({
  storage: storageFor(await azure.createContainer()),
  cleanup: async () => undefined
}))

/** An account SAS for the blob service, signed with `key` (Azurite's own, unless a test says otherwise). */
function accountSas(permissions: string, key = azure.server.accountKey): string {
  return generateAccountSASQueryParameters(
    {
      permissions: AccountSASPermissions.parse(permissions),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
      expiresOn: new Date(Date.now() + 3_600_000),
      protocol: SASProtocol.HttpsAndHttp
    },
    new StorageSharedKeyCredential(azure.server.accountName, key)
  ).toString()
}

function sasStorage(container: string, sasToken: string): AzureBlobStorage {
  return new AzureBlobStorage({
    container,
    accountName: azure.server.accountName,
    sasToken,
    endpoint: azure.server.endpoint,
    blockSize: 4 * MiB,
    maxTries: 1
  })
}

storageContract('azure (Azurite, SAS token)', async () => ({
  storage: sasStorage(await azure.createContainer(), `?${accountSas('rwdlac')}`),
  cleanup: async () => undefined
}))

storageContract('azure (Azurite, connection string, prefix)', async () => ({
  storage: new AzureBlobStorage({
    container: await azure.createContainer(),
    connectionString: azure.server.connectionString,
    prefix: 'backups/prod/'
  }),
  cleanup: async () => undefined
}))

function isCode(code: string, ...mustMention: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isBackupError(error) && error.code === code, `expected ${code}, got ${String(error)}`)
    for (const text of mustMention) {
      assert.ok(error.message.includes(text), `"${error.message}" should mention ${text}`)
    }
    return true
  }
}

function chunked(size: number, chunkSize: number, fill = (i: number) => i % 251): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < size; offset += chunkSize) {
        const chunk = Buffer.allocUnsafe(Math.min(chunkSize, size - offset))
        for (let i = 0; i < chunk.length; i++) chunk[i] = fill(offset + i)
        yield chunk
      }
    })(),
    { objectMode: false }
  )
}

describe('azure blob storage', () => {
  test('a stream larger than a block is committed from staged blocks, and a prefix is part of the blob name', async () => {
    const container = await azure.createContainer()
    const storage = storageFor(container, 'kb')
    const size = 10 * MiB + 12_345
    await storage.put('topics/t/0/00000000000000000000.seg', chunked(size, 64 * 1024 + 3))
    const blob = azure.service
      .getContainerClient(container)
      .getBlockBlobClient('kb/topics/t/0/00000000000000000000.seg')
    const blocks = await blob.getBlockList('committed')
    assert.equal(blocks.committedBlocks?.length, 3, 'three 4 MiB blocks')
    const stored = await storage.get('topics/t/0/00000000000000000000.seg')
    assert.equal(stored.length, size)
    for (const offset of [0, 4 * MiB - 1, 8 * MiB, size - 1]) {
      assert.equal(stored[offset], offset % 251, `byte ${offset}`)
    }
    assert.equal(storage.location, `az://${container}/kb`)
  })

  test('a failed staged upload commits nothing and leaves the previous blob', async () => {
    const container = await azure.createContainer()
    const storage = storageFor(container)
    await storage.put('seg', Buffer.from('old'))
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(9 * MiB, 1)
        throw new Error('segment writer crashed')
      })(),
      { objectMode: false }
    )
    await assert.rejects(storage.put('seg', failing), isCode('KB_STORAGE', 'segment writer crashed', 'seg'))
    assert.equal((await storage.get('seg')).toString(), 'old')
    const blocks = await azure.service.getContainerClient(container).getBlockBlobClient('seg').getBlockList('committed')
    assert.equal(blocks.committedBlocks?.length ?? 0, 0, 'the old blob was one Put Blob, not blocks')
  })

  test('a wrong account key is KB_STORAGE_ACCESS_DENIED naming the settings, never the key', async () => {
    const container = await azure.createContainer()
    const wrongKey = Buffer.alloc(64, 7).toString('base64')
    const storage = new AzureBlobStorage({
      container,
      accountName: azure.server.accountName,
      accountKey: wrongKey,
      endpoint: azure.server.endpoint,
      maxTries: 1
    })
    for (const attempt of [() => storage.put('k', Buffer.from('x')), () => storage.get('k'), () => storage.list('')]) {
      await assert.rejects(attempt(), (error: unknown) => {
        isCode('KB_STORAGE_ACCESS_DENIED', 'storage.account_name and storage.account_key', container)(error)
        assert.ok(!(error as Error).message.includes(wrongKey))
        return true
      })
    }
  })

  test('a missing container is KB_STORAGE_NOT_FOUND naming it', async () => {
    const storage = storageFor('no-such-container-here')
    await assert.rejects(storage.put('k', Buffer.from('x')), isCode('KB_STORAGE_NOT_FOUND', 'no-such-container-here'))
    await assert.rejects(storage.get('k'), isCode('KB_STORAGE_NOT_FOUND', 'no-such-container-here', 'container'))
    await assert.rejects(storage.list(''), isCode('KB_STORAGE_NOT_FOUND', 'no-such-container-here'))
    await assert.rejects(
      storage.put('big', chunked(9 * MiB, MiB)),
      isCode('KB_STORAGE_NOT_FOUND', 'no-such-container-here')
    )
  })

  test('an unreachable endpoint is a KB_STORAGE error naming the location and the key', async () => {
    const storage = new AzureBlobStorage({
      container: 'anything',
      accountName: azure.server.accountName,
      accountKey: azure.server.accountKey,
      endpoint: 'http://127.0.0.1:9/devstoreaccount1',
      maxTries: 1
    })
    await assert.rejects(storage.get('topics/x'), isCode('KB_STORAGE', 'az://anything', 'topics/x'))
  })

  test('settings are checked when the storage is made', () => {
    assert.throws(() => new AzureBlobStorage({ container: '' }), isCode('KB_STORAGE', 'storage.container'))
    assert.throws(() => new AzureBlobStorage({ container: 'c' }), isCode('KB_STORAGE', 'storage.account_name'))
    assert.throws(
      () => new AzureBlobStorage({ container: 'c', accountName: 'a', accountKey: 'k', sasToken: 'sig=x' }),
      isCode('KB_STORAGE', 'storage.sas_token is not allowed together with storage.account_key')
    )
    assert.throws(
      () => new AzureBlobStorage({ container: 'c', accountName: 'a', prefix: 'a/../b' }),
      isCode('KB_STORAGE', '..')
    )
  })

  test('a SAS token signed with another key, or without write permission, is KB_STORAGE_ACCESS_DENIED naming storage.sas_token, never the token', async () => {
    const container = await azure.createContainer()
    const forged = accountSas('rwdlac', Buffer.alloc(64, 7).toString('base64'))
    const readOnly = accountSas('rl')
    for (const [token, attempts] of [
      [forged, [(s: AzureBlobStorage) => s.get('k'), (s: AzureBlobStorage) => s.list('')]],
      [
        readOnly,
        [
          (s: AzureBlobStorage) => s.put('k', Buffer.from('x')),
          (s: AzureBlobStorage) => s.put('big', chunked(9 * MiB, MiB))
        ]
      ]
    ] as const) {
      const storage = sasStorage(container, token)
      for (const attempt of attempts) {
        await assert.rejects(attempt(storage), (error: unknown) => {
          isCode('KB_STORAGE_ACCESS_DENIED', 'storage.sas_token', container)(error)
          assert.ok(
            !(error as Error).message.includes(new URLSearchParams(token).get('sig')!),
            'the signature is never shown'
          )
          return true
        })
      }
    }
  })

  test('a connection string with a SharedAccessSignature works; one with a wrong AccountKey is KB_STORAGE_ACCESS_DENIED naming storage.connection_string', async () => {
    const container = await azure.createContainer()
    const withSas = new AzureBlobStorage({
      container,
      connectionString: `BlobEndpoint=${azure.server.endpoint};SharedAccessSignature=${accountSas('rwdlac')}`
    })
    await withSas.put('k', Buffer.from('sas'))
    assert.equal((await withSas.get('k')).toString(), 'sas')
    const wrongKey = Buffer.alloc(64, 9).toString('base64')
    const wrong = new AzureBlobStorage({
      container,
      connectionString: azure.server.connectionString.replace(azure.server.accountKey, wrongKey),
      maxTries: 1
    })
    await assert.rejects(wrong.get('k'), (error: unknown) => {
      isCode('KB_STORAGE_ACCESS_DENIED', 'storage.connection_string', container)(error)
      assert.ok(!(error as Error).message.includes(wrongKey))
      return true
    })
  })
})
