import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { crc32c } from '../../src/batch/crc.ts'
import { newSegmentKey } from '../../src/crypto/frames.ts'
import { type KeyProvider, parseKeyring } from '../../src/crypto/keys.ts'
import { isBackupError } from '../../src/errors.ts'
import { FOOTER_SUMMARY_SIZE, FRAME_ROW_SIZE, RowField, TRAILER_SIZE, TrailerField } from '../../src/segment/format.ts'
import { bufferSource, readSegmentBatches, readSegmentIndex, validateSegment } from '../../src/segment/reader.ts'
import { jsonValue, makeBatch, makeBatches, segmentCodecs, writeSegment } from './batches.ts'

const k1 = randomBytes(32)
const k2 = randomBytes(32)
const oneKey = parseKeyring(`k1 ${k1.toString('hex')}`, 'keyring file one')
const bothKeys = parseKeyring(`k1 ${k1.toString('hex')}\nk2 ${k2.toString('base64')}`, 'keyring file both')
const onlyK2 = parseKeyring(`k2 ${k2.toString('base64')}`, 'keyring file only-k2')
const wrongK1 = parseKeyring(`k1 ${randomBytes(32).toString('hex')}`, 'keyring file wrong')

async function readAll(bytes: Buffer, keys?: KeyProvider): Promise<Buffer[]> {
  const read: Buffer[] = []
  for await (const batch of readSegmentBatches(bufferSource(bytes), 'enc.seg', { keys, verifyBatchCrc: true })) {
    read.push(Buffer.from(batch.bytes))
  }
  return read
}

/** The material of every key above, as an error or log line would spell it. */
function keyMaterial(): string[] {
  return [k1, k2].flatMap(key => [key.toString('hex'), key.toString('base64'), key.toString('latin1')])
}

function assertNoKeyMaterial(text: string): void {
  for (const secret of keyMaterial()) {
    assert.ok(!text.includes(secret), `no key material in: ${text}`)
  }
}

/** Flips a byte of frame `frame` and fixes every CRC, as a deliberate edit would. */
function tamperFrame(bytes: Buffer, frame: number): Buffer {
  const copy = Buffer.from(bytes)
  const trailerAt = copy.length - TRAILER_SIZE
  const footerOffset = Number(copy.readBigUInt64BE(trailerAt + TrailerField.footerOffset))
  const footerLength = copy.readUInt32BE(trailerAt + TrailerField.footerLength)
  const row = footerOffset + FOOTER_SUMMARY_SIZE + frame * FRAME_ROW_SIZE
  const frameOffset = Number(copy.readBigUInt64BE(row + RowField.frameOffset))
  const storedLength = copy.readUInt32BE(row + RowField.storedLength)
  copy[frameOffset + 3]! ^= 0x01
  copy.writeUInt32BE(crc32c(copy.subarray(frameOffset, frameOffset + storedLength)), row + RowField.checksum)
  copy.writeUInt32BE(
    crc32c(copy.subarray(footerOffset, footerOffset + footerLength)),
    trailerAt + TrailerField.footerCrc
  )
  copy.writeUInt32BE(
    crc32c(copy.subarray(trailerAt, trailerAt + TrailerField.trailerCrc)),
    trailerAt + TrailerField.trailerCrc
  )
  return copy
}

for (const codec of segmentCodecs) {
  test(`an encrypted ${codec} segment reads back byte for byte with its key, and its frames hide the records`, async () => {
    const batches = makeBatches(40, 10, 1000n, 200)
    const key = await newSegmentKey(oneKey, 'orders', 3)
    const { bytes, summary } = await writeSegment(batches, { codec, encryption: key })
    const plain = await writeSegment(batches, { codec })
    assert.ok(summary.frameCount > 1)
    // The 16-byte tag per frame is all encryption adds, besides the header's key id and wrapped key.
    assert.equal(bytes.length - plain.bytes.length, summary.frameCount * 16 + 4 + 2 + 60)
    assert.deepEqual(
      await readAll(bytes, oneKey),
      batches.map(batch => batch.bytes)
    )
    const index = await readSegmentIndex(bufferSource(bytes), 'enc.seg')
    assert.equal(index.header.version, 2)
    assert.equal(index.header.encryption?.keyId, 'k1')
    assert.equal(index.footer.recordCount, 400)
    assert.ok(!bytes.includes(jsonValue(1000n, 200).subarray(0, 24)), 'no record value in the clear')
    assert.ok(!bytes.includes(key.dataKey), 'the data key is stored only wrapped')
  })
}

test('a missing key, a keyring without the id and a different key under the id fail with their own codes', async () => {
  const { bytes } = await writeSegment(makeBatches(20, 10, 0n, 200), {
    encryption: await newSegmentKey(oneKey, 'orders', 3)
  })
  const failures: string[] = []
  const expect =
    (code: string, ...parts: string[]) =>
    (error: unknown) => {
      assert.ok(isBackupError(error), String(error))
      assert.equal(error.code, code, error.message)
      for (const part of parts) {
        assert.ok(error.message.includes(part), `${error.message} names ${part}`)
      }
      failures.push(`${error.message} ${JSON.stringify(error)}`)
      return true
    }
  await assert.rejects(readAll(bytes), expect('KB_KEY_NOT_FOUND', 'enc.seg', 'key id k1', 'no keyring was given'))
  await assert.rejects(readAll(bytes, onlyK2), expect('KB_KEY_NOT_FOUND', 'keyring file only-k2 has no key k1'))
  await assert.rejects(readAll(bytes, wrongK1), expect('KB_DECRYPT_FAILED', 'enc.seg', 'key k1 of keyring file wrong'))
  await assert.rejects(
    validateSegment(bufferSource(bytes), 'enc.seg', { deep: true }),
    expect('KB_KEY_NOT_FOUND', 'key id k1')
  )
  assertNoKeyMaterial(failures.join('\n'))
  // Checksums cover the stored (encrypted) bytes: a shallow validation needs no key.
  const shallow = await validateSegment(bufferSource(bytes), 'enc.seg')
  assert.equal(shallow.recordCount, 200)
  const deep = await validateSegment(bufferSource(bytes), 'enc.seg', { deep: true, keys: oneKey })
  assert.equal(deep.recordCount, 200)
})

test('a changed frame with every CRC fixed fails its tag, naming the segment, topic, partition and frame', async () => {
  const { bytes, summary } = await writeSegment(makeBatches(20, 10, 0n, 200), {
    encryption: await newSegmentKey(oneKey, 'orders', 3)
  })
  const frame = summary.frameCount - 1
  const tampered = tamperFrame(bytes, frame)
  // Without the tag this would be caught only if the codec noticed; a CRC fixed up passes everything else.
  await validateSegment(bufferSource(tampered), 'enc.seg')
  await assert.rejects(
    validateSegment(bufferSource(tampered), 'enc.seg', { deep: true, keys: oneKey }),
    (error: unknown) => {
      assert.ok(isBackupError(error, 'KB_DECRYPT_FAILED'), String(error))
      assert.ok(
        error.message.includes(`segment enc.seg (orders/3): frame ${frame} fails its authentication tag under key k1`),
        error.message
      )
      assert.equal(error.frame, frame)
      return true
    }
  )
})

test('a data key wrapped for another partition does not unwrap here', async () => {
  const { bytes } = await writeSegment(makeBatches(5, 10, 0n, 200), {
    encryption: await newSegmentKey(oneKey, 'orders', 4)
  })
  await assert.rejects(readAll(bytes, oneKey), (error: unknown) => isBackupError(error, 'KB_DECRYPT_FAILED'))
})

test('after a rotation new segments name the new key and older ones still read with the keyring that holds both', async () => {
  const before = await writeSegment(makeBatches(5, 10, 0n, 200), {
    encryption: await newSegmentKey(oneKey, 'orders', 3)
  })
  const after = await writeSegment(makeBatches(5, 10, 50n, 200), {
    encryption: await newSegmentKey(bothKeys, 'orders', 3)
  })
  assert.equal((await readSegmentIndex(after.source, 'a')).header.encryption?.keyId, 'k2')
  assert.equal((await readAll(before.bytes, bothKeys)).length, 5)
  assert.equal((await readAll(after.bytes, bothKeys)).length, 5)
  await assert.rejects(readAll(before.bytes, onlyK2), (error: unknown) => isBackupError(error, 'KB_KEY_NOT_FOUND'))
})

test('every single-byte change anywhere in an encrypted segment is detected', async () => {
  const { bytes } = await writeSegment(makeBatches(3, 2, 0n, 40), {
    frameMaxBytes: 200,
    encryption: await newSegmentKey(oneKey, 'orders', 3)
  })
  for (let at = 0; at < bytes.length; at++) {
    const changed = Buffer.from(bytes)
    changed[at]! ^= 0x10
    await assert.rejects(
      validateSegment(bufferSource(changed), 'enc.seg', { deep: true, keys: oneKey }),
      (error: unknown) => isBackupError(error),
      `byte ${at} of ${bytes.length}`
    )
  }
})

test('producer-compressed batches stored decompressed read back the same encrypted as in the clear', async () => {
  const batches = [0, 1, 2, 3].map(i =>
    makeBatch({ baseOffset: BigInt(i * 10), recordCount: 10, valueBytes: 300, compression: 'lz4' })
  )
  const plain = await writeSegment(batches, { storeRecords: 'decompressed' })
  const encrypted = await writeSegment(batches, {
    storeRecords: 'decompressed',
    encryption: await newSegmentKey(oneKey, 'orders', 3)
  })
  const read = await readAll(encrypted.bytes, oneKey)
  assert.equal(read.length, 4)
  assert.deepEqual(read, await readAll(plain.bytes))
})
