/**
 * Preloaded into the CLI processes bench/startup.ts starts (`node --import
 * bench/first-request.ts ...`): records the wall-clock time (epoch ms) at which the process
 * writes its first Kafka Fetch (API key 1) and Produce (API key 0) request to a socket, and at
 * exit writes them to BENCH_FIRST_REQUEST_FILE as JSON, with the CPU time (user + system) spent
 * by then: on a loaded machine CPU time varies far less than wall time. It watches socket writes rather than
 * the protocol library, so the figure stays comparable if the library is replaced. Does
 * nothing when that variable is unset. With BENCH_FIRST_REQUEST_EXIT=1 the process exits as soon
 * as it has written its first Fetch or Produce, so that a `--cpu-prof` profile covers start-up only.
 */
import { writeFileSync } from 'node:fs'
import { Socket } from 'node:net'

export interface FirstRequests {
  /** Epoch milliseconds of the first request with that API key, if one was sent. */
  fetchAt?: number
  produceAt?: number
  /** CPU milliseconds (user + system) when the first Fetch or Produce was written, and at exit. */
  cpuMsAtFirstRequest?: number
  cpuMsAtExit: number
}

function cpuMs(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

const file = process.env.BENCH_FIRST_REQUEST_FILE
if (file) {
  const seen: FirstRequests = { cpuMsAtExit: 0 }
  const exitAtFirstRequest = process.env.BENCH_FIRST_REQUEST_EXIT === '1'
  const write = Socket.prototype.write
  // Bytes of the request being written that are still to come, per socket: a request may be
  // written in several chunks, and a later chunk's bytes are not a request header.
  const frameBytesLeft = new WeakMap<Socket, number>()
  const onRequest = (apiKey: number) => {
    if (apiKey === 1 && seen.fetchAt === undefined) {
      seen.fetchAt = performance.timeOrigin + performance.now()
      seen.cpuMsAtFirstRequest ??= cpuMs()
    } else if (apiKey === 0 && seen.produceAt === undefined) {
      seen.produceAt = performance.timeOrigin + performance.now()
      seen.cpuMsAtFirstRequest ??= cpuMs()
    }
    if (exitAtFirstRequest && seen.cpuMsAtFirstRequest !== undefined) {
      process.exit(0)
    }
  }
  // A Kafka request starts with its int32 size and int16 API key (the request header).
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (Buffer.isBuffer(chunk)) {
      let left = frameBytesLeft.get(this) ?? 0
      let position = 0
      while (position < chunk.length) {
        if (left > 0) {
          const step = Math.min(left, chunk.length - position)
          left -= step
          position += step
        } else if (chunk.length - position >= 6) {
          onRequest(chunk.readInt16BE(position + 4))
          left = chunk.readInt32BE(position) + 4
        } else {
          break
        }
      }
      frameBytesLeft.set(this, left)
    }
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof Socket.prototype.write
  process.on('exit', () => {
    seen.cpuMsAtExit = cpuMs()
    writeFileSync(file, JSON.stringify(seen))
  })
}
