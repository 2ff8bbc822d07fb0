import { readFileSync } from 'node:fs'

/** The version in package.json, read once; the same file sits one level above src/ and dist/. */
export const toolVersion: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version
