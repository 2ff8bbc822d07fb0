/**
 * Topic selection with `*` wildcards, as operators write it in `topics.include/exclude`.
 * A pattern without `*` matches one topic name exactly; `*` matches any run of characters.
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
