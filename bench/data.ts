/**
 * Benchmark data: Kafka RecordBatches of 1 KiB JSON-like events, as an uncompressed producer
 * would send them. Values are generated from a seeded PRNG so runs are comparable; they vary
 * enough (ids, timestamps, prices, free text) that zstd compresses them about 3-5x, not 50x.
 */
import { writeFileSync } from 'node:fs'
import { createRecordsBatch } from '@platformatic/kafka'
import { Offset, RecordBatchView } from '../src/batch/header.ts'

export function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const words =
  'order shipped delayed customer payment refund review product warehouse courier parcel invoice discount coupon return exchange size colour blue red green large small premium express standard'.split(
    ' '
  )
const countries = ['DE', 'FR', 'US', 'GB', 'IT', 'ES', 'NL', 'SE', 'PL', 'JP']
const types = ['page_view', 'add_to_cart', 'checkout', 'purchase', 'search', 'login']

function hex(random: () => number, length: number): string {
  let text = ''
  while (text.length < length) {
    text += Math.floor(random() * 0xffffffff)
      .toString(16)
      .padStart(8, '0')
  }
  return text.slice(0, length)
}

export function jsonEvent(random: () => number, offset: number, bytes: number): Buffer {
  const event: Record<string, unknown> = {
    event_id: hex(random, 32),
    ts: 1_700_000_000_000 + offset * 37 + Math.floor(random() * 1000),
    user_id: Math.floor(random() * 1_000_000),
    session: hex(random, 12),
    type: types[Math.floor(random() * types.length)],
    page: `/products/${Math.floor(random() * 5000)}/${words[Math.floor(random() * words.length)]}`,
    geo: {
      country: countries[Math.floor(random() * countries.length)],
      lat: random() * 180 - 90,
      lon: random() * 360 - 180
    },
    ua: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    cart: [] as unknown[]
  }
  const cart = event.cart as unknown[]
  let text = JSON.stringify(event)
  while (text.length < bytes) {
    cart.push({
      sku: `SKU-${Math.floor(random() * 100000)}`,
      qty: 1 + Math.floor(random() * 5),
      price: Math.round(random() * 100000) / 100,
      note: `${words[Math.floor(random() * words.length)]} ${words[Math.floor(random() * words.length)]}`
    })
    text = JSON.stringify(event)
  }
  return Buffer.from(text.slice(0, bytes))
}

export interface Dataset {
  batches: RecordBatchView[]
  totalBytes: number
  recordCount: number
}

/** About `totalMiB` MiB of batches of `recordsPerBatch` 1 KiB records, offsets contiguous. */
export function buildDataset(totalMiB: number, recordsPerBatch = 31, valueBytes = 1024): Dataset {
  const random = mulberry32(42)
  const batches: RecordBatchView[] = []
  let totalBytes = 0
  let offset = 0
  while (totalBytes < totalMiB * 1024 * 1024) {
    const messages = Array.from({ length: recordsPerBatch }, (_, i) => ({
      topic: 'bench',
      key: Buffer.from(`user-${Math.floor(random() * 100000)}`),
      value: jsonEvent(random, offset + i, valueBytes),
      timestamp: BigInt(1_700_000_000_000 + (offset + i) * 37)
    }))
    const bytes = Buffer.from(createRecordsBatch(messages, { compression: 'none' }).buffer)
    bytes.writeBigInt64BE(BigInt(offset), Offset.baseOffset)
    batches.push(new RecordBatchView(bytes))
    totalBytes += bytes.length
    offset += recordsPerBatch
  }
  return { batches, totalBytes, recordCount: offset }
}

/** Batches concatenated into record sets of about `bytes` each, as Fetch responses carry them. */
export function recordSets(batches: RecordBatchView[], bytes: number): Buffer[] {
  const sets: Buffer[] = []
  let current: Buffer[] = []
  let size = 0
  for (const batch of batches) {
    if (size + batch.bytes.length > bytes && current.length > 0) {
      sets.push(Buffer.concat(current))
      current = []
      size = 0
    }
    current.push(batch.bytes)
    size += batch.bytes.length
  }
  if (current.length > 0) {
    sets.push(Buffer.concat(current))
  }
  return sets
}

/**
 * A payload file for Kafka's ProducerPerformance (`--payload-file`): `lines` distinct 1 KiB
 * JSON-like events, one per line. ProducerPerformance sends a randomly chosen line per record,
 * so with thousands of lines a 1 MiB frame holds few repeats and compresses like real events.
 */
export function writePayloadFile(path: string, lines: number, valueBytes = 1024, seed = 42): void {
  const random = mulberry32(seed)
  const events: string[] = []
  for (let i = 0; i < lines; i++) {
    events.push(jsonEvent(random, i, valueBytes).toString('latin1'))
  }
  writeFileSync(path, events.join('\n'))
}
