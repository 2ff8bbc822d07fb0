/**
 * Reads a V8 .cpuprofile (from `node --cpu-prof`) and lists the functions with the most self
 * time, so that the benchmark can name a bottleneck with evidence.
 *
 * `node bench/cpu-profile.ts FILE.cpuprofile [top]` prints the list for a profile of your own.
 */
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface HotFunction {
  name: string
  location: string
  selfMs: number
  selfPercent: number
}

const repoRoot = new URL('..', import.meta.url).pathname

function locationOf(url: string, lineNumber: number): string {
  if (url === '') {
    return '(native)'
  }
  const path = url.startsWith('file://') ? relative(repoRoot, new URL(url).pathname) : url
  return `${path}:${lineNumber + 1}`
}

export function hotFunctions(file: string, top = 15): { totalMs: number; functions: HotFunction[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map(node => [node.id, node]))
  const selfMicros = new Map<string, { name: string; location: string; micros: number }>()
  let totalMicros = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!)
    const delta = profile.timeDeltas[i] ?? 0
    if (!node) {
      continue
    }
    totalMicros += delta
    const { functionName, url, lineNumber } = node.callFrame
    const name = functionName || '(anonymous)'
    const location = locationOf(url, lineNumber)
    const key = `${name} ${location}`
    const entry = selfMicros.get(key) ?? { name, location, micros: 0 }
    entry.micros += delta
    selfMicros.set(key, entry)
  }
  const functions = [...selfMicros.values()]
    .sort((a, b) => b.micros - a.micros)
    .slice(0, top)
    .map(entry => ({
      name: entry.name,
      location: entry.location,
      selfMs: entry.micros / 1000,
      selfPercent: totalMicros === 0 ? 0 : (entry.micros / totalMicros) * 100
    }))
  return { totalMs: totalMicros / 1000, functions }
}

if (import.meta.main) {
  const [file, top] = process.argv.slice(2)
  if (!file) {
    console.error('usage: node bench/cpu-profile.ts FILE.cpuprofile [top]')
    process.exitCode = 2
  } else {
    const { totalMs, functions } = hotFunctions(file, Number(top ?? 20))
    console.log(`${totalMs.toFixed(0)} ms sampled`)
    for (const f of functions) {
      console.log(
        `${f.selfPercent.toFixed(1).padStart(5)}%  ${f.selfMs.toFixed(0).padStart(6)} ms  ${f.name}  ${f.location}`
      )
    }
  }
}
