/**
 * Name patterns of the config (`source.topics`, `restore.topics`, `restore.consumer_groups`):
 * a literal name, or `*` matching any run of characters. Nothing else is special, so a `.` in a
 * topic name is a dot.
 */
function patternToRegExp(pattern: string): RegExp {
  const escaped = pattern.split('*').map(part => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
  return new RegExp(`^${escaped.join('.*')}$`)
}

export interface TopicSelection {
  include: string[]
  exclude?: string[]
}

export function topicMatcher({ include, exclude = [] }: TopicSelection): (topic: string) => boolean {
  const includes = include.map(patternToRegExp)
  const excludes = exclude.map(patternToRegExp)
  return topic => includes.some(re => re.test(topic)) && !excludes.some(re => re.test(topic))
}
