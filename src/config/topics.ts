/**
 * Name patterns of the config (`source.topics`, `restore.topics`, `restore.consumer_groups`):
 * a literal name, or `*` matching any run of characters. Nothing else is special, so a `.` in a
 * topic name is a dot.
 */

/** The anchored expression of one pattern. */
export function patternToRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map(part => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*')
  return new RegExp(`^${body}$`)
}

/** True when `name` matches at least one of `patterns`. */
export function matchesAny(patterns: readonly string[], name: string): boolean {
  return patterns.some(pattern => (pattern.includes('*') ? patternToRegExp(pattern).test(name) : pattern === name))
}

/** A predicate for a `{ include, exclude }` selection: included and not excluded. */
export function compileNameFilter(selection: {
  readonly include: readonly string[]
  readonly exclude: readonly string[]
}): (name: string) => boolean {
  const include = selection.include.map(patternToRegExp)
  const exclude = selection.exclude.map(patternToRegExp)
  return name => include.some(pattern => pattern.test(name)) && !exclude.some(pattern => pattern.test(name))
}
