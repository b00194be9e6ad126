/**
 * `*`-only glob matching for the `docs` claim, in time linear in the id.
 *
 * The claim comes from the token, so its patterns are attacker-influenced wherever tokens are
 * issued by a less trusted party. A regular expression built from `*a*a*a*a*a*b` backtracks
 * exponentially against a long id and blocks the event loop for seconds. This matcher splits the
 * pattern at `*` into literal segments and finds them left to right, each from where the previous
 * one ended: for a glob whose only wildcard is `*`, the leftmost match of each segment is always
 * the right choice (a later one only leaves less room for the rest), so nothing is ever retried.
 * Each segment is searched once over the rest of the id, so the work is at most
 * (segments x id length) character comparisons, and AccessPolicy bounds the number of segments.
 */
export interface Glob {
  /** The literal parts between stars; `a*b*c` is ['a', 'b', 'c'], `*a*` is ['', 'a', '']. */
  readonly segments: readonly string[]
  /** Characters that are not `*`: how specific the pattern is. */
  readonly literalLength: number
}

export function compileGlob (pattern: string): Glob {
  const segments = pattern.split('*')
  return { segments, literalLength: pattern.length - (segments.length - 1) }
}

export function starCount (pattern: string): number {
  let stars = 0
  for (let i = 0; i < pattern.length; i++) if (pattern.charCodeAt(i) === 42) stars++
  return stars
}

export function matchGlob (glob: Glob, text: string): boolean {
  const { segments } = glob
  const first = segments[0]!
  if (segments.length === 1) return text === first
  const last = segments[segments.length - 1]!
  // The fixed ends first: they must not overlap each other.
  if (text.length < first.length + last.length) return false
  if (!text.startsWith(first) || !text.endsWith(last)) return false
  let position = first.length
  const end = text.length - last.length
  for (let i = 1; i < segments.length - 1; i++) {
    const segment = segments[i]!
    if (segment === '') continue
    const found = text.indexOf(segment, position)
    if (found === -1 || found + segment.length > end) return false
    position = found + segment.length
  }
  return true
}
