import type { AccessLevel } from '../config/config.js'
import { compileGlob, matchGlob, starCount, type Glob } from './glob.js'

/**
 * Most `*` in one pattern. Real claims use one or two (`team-*`, `*-draft-*`); the bound keeps
 * the matcher's work per id small whatever a token carries. More makes the token invalid (401).
 */
export const MAX_PATTERN_STARS = 8

/**
 * Per-document access carried by a token's `docs` claim (see README "Tokens"):
 *
 *   "docs": { "handbook": "read-only", "team-*": "read-write", "team-secret": "none" }
 *
 * Keys are document ids or patterns where `*` matches any run of characters. An exact id wins over
 * any pattern; among patterns the most specific (most literal characters) wins. A token with a
 * `docs` claim has no access to documents it does not match. A token without one gets the
 * configured default (DEFAULT_DOC_ACCESS). Patterns are matched in linear time (glob.ts), with at
 * most MAX_PATTERN_STARS stars each.
 */
export class AccessPolicy {
  private constructor (
    private readonly exact: Map<string, AccessLevel>,
    private readonly patterns: Array<{ glob: Glob; access: AccessLevel }>,
    private readonly fallback: AccessLevel
  ) {}

  static uniform (access: AccessLevel): AccessPolicy {
    return new AccessPolicy(new Map(), [], access)
  }

  /**
   * Parses a `docs` claim. Returns the uniform default when the claim is absent; throws
   * InvalidClaimError when it is present but malformed, so a bad token is refused, not widened.
   */
  static fromClaim (claim: unknown, defaultAccess: AccessLevel): AccessPolicy {
    if (claim === undefined || claim === null) return AccessPolicy.uniform(defaultAccess)
    if (typeof claim !== 'object' || Array.isArray(claim)) {
      throw new InvalidClaimError('"docs" claim must be an object of id or pattern to access level')
    }
    const exact = new Map<string, AccessLevel>()
    const patterns: Array<{ glob: Glob; access: AccessLevel; specificity: number }> = []
    for (const [key, value] of Object.entries(claim as Record<string, unknown>)) {
      const access = parseAccessLevel(value)
      if (access === undefined) {
        throw new InvalidClaimError(`"docs" claim: access for "${key}" must be read-write, read-only or none`)
      }
      if (key.includes('*')) {
        if (starCount(key) > MAX_PATTERN_STARS) {
          throw new InvalidClaimError(`"docs" claim: a pattern may have at most ${MAX_PATTERN_STARS} "*"`)
        }
        const glob = compileGlob(key)
        patterns.push({ glob, access, specificity: glob.literalLength })
      } else {
        exact.set(key, access)
      }
    }
    patterns.sort((a, b) => b.specificity - a.specificity)
    return new AccessPolicy(exact, patterns, 'none')
  }

  accessFor (docId: string): AccessLevel {
    const exact = this.exact.get(docId)
    if (exact !== undefined) return exact
    for (const pattern of this.patterns) {
      if (matchGlob(pattern.glob, docId)) return pattern.access
    }
    return this.fallback
  }
}

export class InvalidClaimError extends Error {}

function parseAccessLevel (value: unknown): AccessLevel | undefined {
  switch (value) {
    case 'read-write': case 'rw': case 'write': return 'read-write'
    case 'read-only': case 'r': case 'read': return 'read-only'
    case 'none': return 'none'
    default: return undefined
  }
}
