/** CreateTopics v7 and DescribeConfigs v4 (topic resources). */
import { checkErrorCode } from '../wire/errors.ts'
import type { Reader } from '../wire/reader.ts'
import type { Writer } from '../wire/writer.ts'

export const CREATE_TOPICS = { apiKey: 19, version: 7 } as const
export const DESCRIBE_CONFIGS = { apiKey: 32, version: 4 } as const

/** DescribeConfigs resource type of a topic. */
export const TOPIC_RESOURCE = 2
/** Config source of a value set on the topic itself. */
export const DYNAMIC_TOPIC_CONFIG = 1

export interface NewTopic {
  name: string
  partitions: number
  replicationFactor: number
  configs: Record<string, string>
}

export function encodeCreateTopics(topics: NewTopic[], timeoutMs: number): (w: Writer) => void {
  return w =>
    w
      .appendArray(topics, (w, topic) =>
        w
          .appendString(topic.name)
          .appendInt32(topic.partitions)
          .appendInt16(topic.replicationFactor)
          .appendArray([], () => {}) // no manual assignment
          .appendArray(Object.entries(topic.configs), (w, [name, value]) => w.appendString(name).appendString(value))
      )
      .appendInt32(timeoutMs)
      .appendBoolean(false) // validate only
      .appendTaggedFields()
}

/** Throws the first topic's error, with the broker's message. */
export function decodeCreateTopics(r: Reader): void {
  r.readInt32() // throttle time
  const topics = r.readArray(r => {
    const name = r.readString()
    r.readUUID()
    const errorCode = r.readInt16()
    const errorMessage = r.readNullableString()
    r.readInt32() // partitions
    r.readInt16() // replication factor
    r.readNullableArray(r => {
      r.readString()
      r.readNullableString()
      r.readBoolean()
      r.readInt8()
      r.readBoolean()
    })
    return { name, errorCode, errorMessage }
  })
  r.skipTaggedFields()
  for (const topic of topics) {
    checkErrorCode(topic.errorCode, `CreateTopics of ${topic.name}`, topic.errorMessage)
  }
}

export interface TopicConfigEntry {
  name: string
  value: string | null
  configSource: number
  isSensitive: boolean
}

/** `keys` undefined asks for every config. */
export function encodeDescribeConfigs(topics: string[], keys: string[] | undefined): (w: Writer) => void {
  return w =>
    w
      .appendArray(topics, (w, topic) =>
        w
          .appendInt8(TOPIC_RESOURCE)
          .appendString(topic)
          .appendArray(keys ?? null, (w, key) => w.appendString(key), true, false)
      )
      .appendBoolean(false) // synonyms
      .appendBoolean(false) // documentation
      .appendTaggedFields()
}

/** Configs by topic; a resource's error (unknown topic, not authorized) is thrown. */
export function decodeDescribeConfigs(r: Reader): Map<string, TopicConfigEntry[]> {
  r.readInt32() // throttle time
  const results = r.readArray(r => {
    const errorCode = r.readInt16()
    const errorMessage = r.readNullableString()
    r.readInt8() // resource type
    const resourceName = r.readString()
    const configs = r.readArray(r => {
      const name = r.readString()
      const value = r.readNullableString()
      r.readBoolean() // read only
      const configSource = r.readInt8()
      const isSensitive = r.readBoolean()
      r.readArray(r => {
        r.readString()
        r.readNullableString()
        r.readInt8()
      })
      r.readInt8() // config type
      r.readNullableString() // documentation
      return { name, value, configSource, isSensitive }
    })
    return { errorCode, errorMessage, resourceName, configs }
  })
  r.skipTaggedFields()
  const configs = new Map<string, TopicConfigEntry[]>()
  for (const result of results) {
    checkErrorCode(result.errorCode, `DescribeConfigs of topic ${result.resourceName}`, result.errorMessage)
    configs.set(result.resourceName, result.configs)
  }
  return configs
}
