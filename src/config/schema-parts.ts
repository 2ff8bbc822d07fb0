/**
 * Building blocks of the config schema that both the schema (schema.ts) and the storage backends'
 * own sections (storage/backends.ts) use. They live apart so that the two can import them
 * without importing each other.
 */
import { z } from 'zod'

/** A byte count: integers only, never negative. */
export function byteCount(min = 1) {
  return z.int().min(min)
}

/** An object-store key prefix. The loader drops leading and trailing slashes; `..` segments are refused. */
export const keyPrefix = z
  .string()
  .refine(value => !value.split('/').some(segment => segment === '..' || segment === '.'), {
    message: 'expected a key prefix without "." or ".." segments'
  })

export const httpUrl = z.string().refine(
  value => {
    if (!URL.canParse(value)) return false
    const { protocol } = new URL(value)
    return protocol === 'http:' || protocol === 'https:'
  },
  { message: 'expected an http:// or https:// URL' }
)

/**
 * Adds an issue in the loader's expected/found form. `found` defaults to the value at `path`;
 * pass it when the value shown should be another (e.g. a default the operator did not write).
 */
export function fail(ctx: z.RefinementCtx, path: PropertyKey[], expected: string, ...found: [] | [unknown]): void {
  ctx.addIssue({
    code: 'custom',
    path,
    message: `expected ${expected}`,
    params: found.length === 0 ? { expected } : { expected, found: found[0] }
  })
}

/** Adds an issue whose message is a whole sentence (for rules that span several keys). */
export function refuse(ctx: z.RefinementCtx, path: PropertyKey[], message: string): void {
  ctx.addIssue({ code: 'custom', path, message })
}

/**
 * Rules across keys run only once every key is valid on its own, so they never compare a value
 * that is already reported (a negative size against another size).
 */
export const whenValid: z.core.$ZodSuperRefineParams = { when: payload => payload.issues.length === 0 }
