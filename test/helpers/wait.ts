/**
 * Waiting on events: tests poll a condition until it holds, with a deadline generous enough for
 * a loaded 2-core CI machine, never sleep for a fixed time and hope the event has happened.
 */
import { setTimeout as sleep } from 'node:timers/promises'

export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 60_000, intervalMs = 50 } = {}
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`waited ${timeoutMs} ms for ${what}`)
    }
    await sleep(intervalMs)
  }
}
