import type { AccessLevel } from '../config/config.js'
import { AccessPolicy, InvalidClaimError } from './access-policy.js'

/** Who a verified token belongs to and what it may open. */
export interface Principal {
  userId: string
  policy: AccessPolicy
  /**
   * When the connection must end, in epoch milliseconds, when the token has an expiry: `exp` plus
   * the clock tolerance for JWTs (the moment verification itself would start refusing it).
   */
  expiresAt?: number
  /** The token carries `"admin": true` (for the admin API). */
  admin: boolean
}

export type AuthFailureReason = 'missing' | 'invalid' | 'expired' | 'unavailable'

/** Why a token was refused. `unavailable` means the verifier could not decide (503, retry). */
export class AuthError extends Error {
  constructor (readonly reason: AuthFailureReason, message: string) {
    super(message)
  }
}

/**
 * A token must have at least this much life left when it is checked. One that passes and is closed
 * with 4401 a moment later makes a stock y-websocket client reconnect with the same token in a
 * loop; refused at the upgrade (401 token_expired) it tells the client to fetch a new one.
 */
export const MIN_REMAINING_LIFE_MS = 5_000

/** Throws `expired` when a principal's token has less than MIN_REMAINING_LIFE_MS left. */
export function requireRemainingLife (principal: Principal, now = Date.now()): Principal {
  if (principal.expiresAt !== undefined && principal.expiresAt - now < MIN_REMAINING_LIFE_MS) {
    throw new AuthError('expired', 'token expired or expires within seconds')
  }
  return principal
}

export interface TokenVerifier {
  verify (token: string): Promise<Principal>
}

/** Builds a Principal from JWT claims or an auth service's user JSON (same field names). */
export function principalFromClaims (claims: Record<string, unknown>, defaultAccess: AccessLevel): Principal {
  const userId = firstString(claims.sub, claims.userId, claims.user_id, claims.id)
  if (userId === undefined) throw new AuthError('invalid', 'token has no user id (sub)')
  let policy: AccessPolicy
  try {
    policy = AccessPolicy.fromClaim(claims.docs, defaultAccess)
  } catch (err) {
    if (err instanceof InvalidClaimError) throw new AuthError('invalid', err.message)
    throw err
  }
  const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined
  return { userId, policy, expiresAt: exp, admin: claims.admin === true }
}

function firstString (...values: unknown[]): string | undefined {
  for (const value of values) {
    if (typeof value === 'string' && value !== '') return value
    if (typeof value === 'number') return String(value)
  }
  return undefined
}
