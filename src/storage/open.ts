/**
 * The Storage for a validated `storage` config section, opened by its backend's descriptor
 * (backends.ts), which imports an object-store SDK only when that backend is used.
 */
import type { StorageConfig } from '../config/schema.ts'
import { backendOf } from './backends.ts'
import type { Storage } from './storage.ts'

export async function openStorage(config: StorageConfig): Promise<Storage> {
  return backendOf(config).open(config)
}
