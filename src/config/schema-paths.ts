/**
 * Walks the config schema by key path, through its JSON Schema form (the input side, before
 * defaults and transforms). The loader uses it to know which keys a mapping accepts (for "did you
 * mean" hints) and which type a key takes (to type `${VAR}` values); the reference generator
 * uses it to list every key.
 */
import { z } from 'zod'
import { configSchema } from './schema.ts'

export interface JsonSchema {
  type?: string | string[]
  description?: string
  default?: unknown
  const?: unknown
  enum?: unknown[]
  format?: string
  pattern?: string
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minItems?: number
  minLength?: number
  properties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: JsonSchema | boolean
  propertyNames?: JsonSchema
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
}

let cached: JsonSchema | undefined

/** The JSON Schema of a config file as written (input side). */
export function configJsonSchema(): JsonSchema {
  cached ??= z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema
  return cached
}

function variantsOf(node: JsonSchema): JsonSchema[] | undefined {
  return node.oneOf ?? node.anyOf
}

function jsonTypeOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value
}

function acceptsType(node: JsonSchema, type: string): boolean {
  const types = Array.isArray(node.type) ? node.type : node.type === undefined ? [] : [node.type]
  return types.includes(type) || (type === 'integer' && types.includes('number'))
}

/** The discriminator of a union of mappings: the property that is a `const` in every variant. */
export function discriminatorOf(variants: JsonSchema[]): string | undefined {
  const first = variants[0]?.properties
  if (first === undefined) return undefined
  return Object.keys(first).find(key => variants.every(variant => variant.properties?.[key]?.const !== undefined))
}

/**
 * Resolves a union to the variant that `value` is meant for: by discriminator for mappings
 * (`mode`, `storage.backend`), else by the value's type. Returns the node itself when it is no
 * union or nothing fits.
 */
export function resolveVariant(node: JsonSchema, value: unknown): JsonSchema {
  const variants = variantsOf(node)
  if (variants === undefined) return node
  const discriminator = discriminatorOf(variants)
  if (discriminator !== undefined) {
    const chosen =
      value !== null && typeof value === 'object'
        ? variants.find(
            variant => variant.properties?.[discriminator]?.const === (value as Record<string, unknown>)[discriminator]
          )
        : undefined
    return chosen ?? node
  }
  const type = jsonTypeOf(value)
  return variants.find(variant => acceptsType(variant, type)) ?? node
}

/** The schema of the key at `path` in `input`, or undefined when the schema has no such key. */
export function schemaAt(
  path: readonly PropertyKey[],
  input: unknown,
  root = configJsonSchema()
): JsonSchema | undefined {
  let node: JsonSchema | undefined = root
  let value = input
  for (const key of path) {
    node = resolveVariant(node, value)
    if (typeof key === 'number') {
      node = node.items
    } else {
      const name = String(key)
      node =
        node.properties?.[name] ??
        (typeof node.additionalProperties === 'object' ? node.additionalProperties : undefined)
    }
    value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined
    if (node === undefined) return undefined
  }
  return node
}

/** The keys a mapping at `path` accepts (after choosing its variant from `input`). */
export function knownKeysAt(path: readonly PropertyKey[], input: unknown): string[] {
  const node = schemaAt(path, input)
  if (node === undefined) return []
  const value = valueAt(input, path)
  return Object.keys(resolveVariant(node, value).properties ?? {})
}

/** Every JSON Schema type a node (or any of its union members) accepts. */
export function typesOf(node: JsonSchema): Set<string> {
  const types = new Set<string>()
  const visit = (current: JsonSchema): void => {
    if (Array.isArray(current.type)) for (const type of current.type) types.add(type)
    else if (current.type !== undefined) types.add(current.type)
    for (const variant of variantsOf(current) ?? []) visit(variant)
  }
  visit(node)
  return types
}

export function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

/** A key path as operators write it: `backup.compression_level`, `source.bootstrap_servers[1]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = ''
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`
    else text += text === '' ? String(key) : `.${String(key)}`
  }
  return text === '' ? '(top level)' : text
}

export interface KeyPath {
  /** Keys from the top, e.g. ['storage', 'bucket']. */
  path: string[]
  /** Conditions under which the key applies, e.g. ['mode: backup', 'backend: s3']. */
  conditions: string[]
  node: JsonSchema
  required: boolean
}

/**
 * Every key of the schema, depth first in schema order, mappings before their keys. A key that
 * exists in several variants (e.g. `backup_id` in both modes) appears once per variant.
 */
export function allKeyPaths(root = configJsonSchema()): KeyPath[] {
  const paths: KeyPath[] = []
  const visitMapping = (node: JsonSchema, path: string[], conditions: string[]): void => {
    const variants = variantsOf(node)
    const discriminator = variants === undefined ? undefined : discriminatorOf(variants)
    if (variants !== undefined && discriminator !== undefined) {
      for (const variant of variants) {
        visitMapping(variant, path, [
          ...conditions,
          `${discriminator}: ${String(variant.properties?.[discriminator]?.const)}`
        ])
      }
      return
    }
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const childPath = [...path, key]
      paths.push({ path: childPath, conditions, node: child, required: node.required?.includes(key) ?? false })
      if (isMapping(child)) visitMapping(child, childPath, conditions)
    }
  }
  visitMapping(root, [], [])
  return paths
}

/** A section with named keys (not a free-form map such as `topic_mapping`). */
export function isMapping(node: JsonSchema): boolean {
  if (node.properties !== undefined) return true
  const variants = variantsOf(node)
  return variants !== undefined && discriminatorOf(variants) !== undefined
}
