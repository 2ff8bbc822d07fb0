import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { createRecordsBatch } from '@platformatic/kafka'
import { Offset, RecordBatchView } from '../../src/batch/header.ts'
import {
  decodeHeader,
  decodeTrailer,
  encodeHeader,
  encodeTrailer,
  FOOTER_SUMMARY_SIZE,
  FRAME_ROW_SIZE,
  MAX_HEADER_SIZE,
  SEGMENT_MAGIC,
  TRAILER_SIZE
} from '../../src/segment/format.ts'
import { bufferSource, readSegmentIndex } from '../../src/segment/reader.ts'
import { SegmentWriter } from '../../src/segment/writer.ts'
import { collect } from './batches.ts'

/** The example in docs/segment-format.md: one batch, one record, codec none. */
async function exampleSegment(): Promise<Buffer> {
  const batch = Buffer.from(
    createRecordsBatch(
      [{ topic: 'orders', key: Buffer.from('k1'), value: Buffer.from('{"id":1}'), timestamp: 1_700_000_000_000n }],
      { compression: 'none' }
    ).buffer
  )
  batch.writeBigInt64BE(42n, Offset.baseOffset)
  const writer = new SegmentWriter({
    topic: 'orders',
    partition: 3,
    name: 'example',
    codec: 'none',
    createdAtMs: 1_700_000_000_500
  })
  const bytes = collect(writer.readable)
  await writer.append(new RecordBatchView(batch))
  await writer.finish()
  return bytes
}

function hexDump(bytes: Buffer): string {
  const lines: string[] = []
  for (let at = 0; at < bytes.length; at += 16) {
    const hex = bytes
      .subarray(at, at + 16)
      .toString('hex')
      .replace(/(..)(?!$)/g, '$1 ')
    lines.push(`${at.toString(16).padStart(4, '0')}  ${hex}`)
  }
  return lines.join('\n')
}

test('the example in docs/segment-format.md is what the writer produces, byte for byte', async () => {
  const segment = await exampleSegment()
  const doc = readFileSync(new URL('../../docs/segment-format.md', import.meta.url), 'utf8')
  const match = /<!-- example:begin -->\n```\n([\s\S]*?)\n```\n<!-- example:end -->/.exec(doc)
  assert.ok(match, 'the doc has an example block')
  assert.equal(match[1], hexDump(segment))
  const index = await readSegmentIndex(bufferSource(segment), 'example')
  assert.equal(index.header.topic, 'orders')
  assert.equal(index.footer.frames[0]!.firstOffset, 42n)
})

test('fixed sizes match the documented layout', () => {
  assert.equal(SEGMENT_MAGIC.toString('hex'), '894b425345470d0a')
  assert.equal(FOOTER_SUMMARY_SIZE, 88)
  assert.equal(FRAME_ROW_SIZE, 64)
  assert.equal(TRAILER_SIZE, 32)
  // Version 2 adds an encryption block: cipher, key id (up to 64 bytes) and wrapped key (up to 1024).
  assert.equal(MAX_HEADER_SIZE, 30 + 249 + 4 + 64 + 1024)
})

test('header and trailer round-trip through their encoders', () => {
  const header = encodeHeader({ codec: 'zstd', level: 3, topic: 'a.b-c_d', partition: 17, createdAtMs: 123n })
  assert.deepEqual(decodeHeader(header, 's'), {
    version: 1,
    codec: 'zstd',
    level: 3,
    topic: 'a.b-c_d',
    partition: 17,
    createdAtMs: 123n,
    length: header.length,
    crc: header.readUInt32BE(header.length - 4)
  })
  const trailer = encodeTrailer({ footerOffset: 100, footerLength: 88, footerCrc: 7, version: 1 })
  assert.deepEqual(decodeTrailer(trailer, 's', 100 + 88 + TRAILER_SIZE), {
    footerOffset: 100,
    footerLength: 88,
    footerCrc: 7,
    version: 1
  })
})
