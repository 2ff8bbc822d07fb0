/**
 * `${VAR}` substitution in config values. It runs on string scalars after YAML parsing, never on
 * the file's text, so a value (a password with `#` or `: `) can never change the YAML structure.
 *
 *   ${NAME}            the variable's value; an unset variable is an error (KB_CONFIG_ENV)
 *   ${NAME:-default}   the default when NAME is unset or empty (as in the shell)
 *   $${                a literal `${`
 */

export type Env = Readonly<Record<string, string | undefined>>

export type Substitution =
  | { ok: true; value: string; substituted: boolean }
  | { ok: false; problem: 'unset'; variable: string }
  | { ok: false; problem: 'malformed' }

const reference = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/

export function substituteEnv(text: string, env: Env): Substitution {
  if (!text.includes('${')) return { ok: true, value: text, substituted: false }
  let value = ''
  let substituted = false
  let index = 0
  while (index < text.length) {
    if (text.startsWith('$${', index)) {
      value += '${'
      index += 3
    } else if (text.startsWith('${', index)) {
      const close = text.indexOf('}', index + 2)
      if (close === -1) return { ok: false, problem: 'malformed' }
      const match = reference.exec(text.slice(index + 2, close))
      if (match === null) return { ok: false, problem: 'malformed' }
      const name = match[1] as string
      const fallback = match[2]
      const found = env[name]
      if (fallback !== undefined && (found === undefined || found === '')) {
        value += fallback
      } else if (found === undefined) {
        return { ok: false, problem: 'unset', variable: name }
      } else {
        value += found
      }
      substituted = true
      index = close + 1
    } else {
      value += text[index]
      index += 1
    }
  }
  return { ok: true, value, substituted }
}
