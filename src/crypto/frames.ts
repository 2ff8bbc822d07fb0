/**
 * Frame encryption (docs/encryption.md): AES-256-GCM over each compressed frame, with a data key
 * drawn for the segment alone. Because no two segments share a data key, a nonce needs only to
 * be unique within the segment, so it is the frame's index (nothing stored per frame but the
 * 16-byte tag). The additional data binds the frame to its place: topic, partition, the
 * segment's first offset, the frame index and the offsets and length its index row states, so a
 * frame moved, reordered or paired with an edited row fails its tag.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { BackupError } from '../errors.ts'
import { KEY_BYTES, type KeyProvider } from './keys.ts'

export const FRAME_TAG_BYTES = 16
const NONCE_BYTES = 12

/** Cipher ids as stored in a segment header. */
export const CipherIds = { 'aes-256-gcm': 1 } as const
export type CipherName = keyof typeof CipherIds

/** What a segment header carries about its encryption; none of it is secret. */
export interface SegmentEncryptionHeader {
  cipher: CipherName
  keyId: string
  /** The data key as the key provider wrapped it. */
  wrappedKey: Buffer
}

export interface SegmentKey extends SegmentEncryptionHeader {
  dataKey: Buffer
}

/** What a wrapped data key is bound to: unwrapping it for another partition fails. */
export function wrapContext(topic: string, partition: number, keyId: string): Buffer {
  const context = Buffer.alloc(2 + Buffer.byteLength(topic) + 4 + keyId.length)
  let at = context.writeUInt16BE(Buffer.byteLength(topic), 0)
  at += context.write(topic, at, 'utf8')
  at = context.writeInt32BE(partition, at)
  context.write(keyId, at, 'ascii')
  return context
}

/** A fresh data key for one segment, wrapped with the provider's active key. */
export async function newSegmentKey(keys: KeyProvider, topic: string, partition: number): Promise<SegmentKey> {
  const dataKey = randomBytes(KEY_BYTES)
  const keyId = keys.activeKeyId
  const wrappedKey = await keys.wrap(keyId, dataKey, wrapContext(topic, partition, keyId))
  return { cipher: 'aes-256-gcm', keyId, wrappedKey, dataKey }
}

/** The facts of a frame its tag vouches for (besides its bytes). */
export interface FramePlace {
  frame: number
  segmentFirstOffset: bigint
  firstOffset: bigint
  lastOffset: bigint
  uncompressedLength: number
}

export class FrameCipher {
  readonly #dataKey: Buffer
  readonly #topic: Buffer
  readonly #partition: number
  readonly keyId: string

  constructor(dataKey: Buffer, topic: string, partition: number, keyId: string) {
    this.#dataKey = dataKey
    this.#topic = Buffer.from(topic, 'utf8')
    this.#partition = partition
    this.keyId = keyId
  }

  #nonce(frame: number): Buffer {
    const nonce = Buffer.alloc(NONCE_BYTES)
    nonce.writeUInt32BE(frame, NONCE_BYTES - 4)
    return nonce
  }

  #aad(place: FramePlace): Buffer {
    const aad = Buffer.alloc(2 + this.#topic.length + 4 + 8 + 4 + 8 + 8 + 4)
    let at = aad.writeUInt16BE(this.#topic.length, 0)
    at += this.#topic.copy(aad, at)
    at = aad.writeInt32BE(this.#partition, at)
    at = aad.writeBigInt64BE(place.segmentFirstOffset, at)
    at = aad.writeUInt32BE(place.frame, at)
    at = aad.writeBigInt64BE(place.firstOffset, at)
    at = aad.writeBigInt64BE(place.lastOffset, at)
    aad.writeUInt32BE(place.uncompressedLength, at)
    return aad
  }

  /**
   * The stored frame, `ciphertext | tag` (16 bytes longer than `compressed`), in pieces: joining
   * them would copy every frame once more, which costs as much as the encryption itself
   * (docs/benchmarks.md, "Encryption cost").
   */
  seal(compressed: Buffer, place: FramePlace): Buffer[] {
    const cipher = createCipheriv('aes-256-gcm', this.#dataKey, this.#nonce(place.frame))
    cipher.setAAD(this.#aad(place))
    const ciphertext = cipher.update(compressed)
    // GCM is a stream mode: final() only computes the tag and returns no bytes.
    cipher.final()
    return [ciphertext, cipher.getAuthTag()]
  }

  /** The compressed frame, or KB_DECRYPT_FAILED naming the segment, topic, partition and frame. */
  open(stored: Buffer, place: FramePlace, segment: string): Buffer {
    const failed = () =>
      new BackupError(
        'KB_DECRYPT_FAILED',
        `segment ${segment} (${this.#topic.toString('utf8')}/${this.#partition}): frame ${place.frame} fails its authentication tag under key ${this.keyId}: the frame or its index row was changed, or it was sealed under another key`,
        {
          segment,
          topic: this.#topic.toString('utf8'),
          partition: this.#partition,
          frame: place.frame,
          keyId: this.keyId
        }
      )
    if (stored.length < FRAME_TAG_BYTES) {
      throw failed()
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#dataKey, this.#nonce(place.frame))
    decipher.setAAD(this.#aad(place))
    decipher.setAuthTag(stored.subarray(stored.length - FRAME_TAG_BYTES))
    const head = decipher.update(stored.subarray(0, stored.length - FRAME_TAG_BYTES))
    try {
      const tail = decipher.final()
      return tail.length === 0 ? head : Buffer.concat([head, tail])
    } catch {
      throw failed()
    }
  }
}
