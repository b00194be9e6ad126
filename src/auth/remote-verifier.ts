import { createHash } from 'node:crypto'
import type { AccessLevel, AuthConfig } from '../config/config.js'
import { AuthError, principalFromClaims, requireRemainingLife, type Principal, type TokenVerifier } from './principal.js'

type RemoteAuthConfig = Extract<AuthConfig, { kind: 'remote' }>

/**
 * Asks an external auth service (the seed's AuthService) about each token:
 * `GET AUTH_SERVICE_URL` with `Authorization: Bearer <token>`; 200 with user JSON is valid,
 * 401/403 is invalid, anything else (or a timeout) is "unavailable" and the client retries.
 *
 * Valid answers are cached for AUTH_CACHE_TTL_MS (never past the token's own exp), keyed by a
 * hash so tokens are not kept in memory, and concurrent checks of one token share one request.
 * Refusals (invalid, expired) are cached too, for AUTH_NEGATIVE_CACHE_TTL_MS under the same key,
 * so a client reconnecting in a loop with a bad token, or a flood of one bad token, costs the
 * service one call per TTL. "Unavailable" is never cached: the next attempt asks again.
 *
 * At most AUTH_SERVICE_MAX_CONCURRENT calls are in flight; a check beyond that answers
 * "unavailable" (503) at once instead of queueing, so a flood of distinct tokens cannot pile up
 * sockets and memory here or overload the auth service.
 */
export class RemoteVerifier implements TokenVerifier {
  private readonly cache = new Map<string, { principal: Principal; until: number }>()
  private readonly refused = new Map<string, { error: AuthError; until: number }>()
  private readonly inFlight = new Map<string, Promise<Principal>>()

  constructor (private readonly config: RemoteAuthConfig, private readonly defaultAccess: AccessLevel) {}

  async verify (token: string): Promise<Principal> {
    if (token === '') throw new AuthError('missing', 'no token')
    const key = createHash('sha256').update(token).digest('base64url')
    const cached = this.cache.get(key)
    const now = Date.now()
    if (cached !== undefined) {
      if (cached.until > now) return requireRemainingLife(cached.principal, now)
      this.cache.delete(key)
    }
    const refusal = this.refused.get(key)
    if (refusal !== undefined) {
      if (refusal.until > now) throw refusal.error
      this.refused.delete(key)
    }
    let pending = this.inFlight.get(key)
    if (pending === undefined) {
      if (this.inFlight.size >= this.config.maxConcurrent) {
        throw new AuthError('unavailable', 'too many auth service checks in flight')
      }
      pending = this.ask(token).then(principal => {
        this.remember(key, principal)
        return principal
      }, (err: unknown) => {
        if (err instanceof AuthError && err.reason !== 'unavailable') this.rememberRefusal(key, err)
        throw err
      }).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    return requireRemainingLife(await pending)
  }

  private async ask (token: string): Promise<Principal> {
    let response: Response
    try {
      response = await fetch(this.config.url, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(this.config.timeoutMs)
      })
    } catch {
      throw new AuthError('unavailable', 'auth service unreachable or timed out')
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel()
      throw new AuthError('invalid', `auth service refused the token (${response.status})`)
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      throw new AuthError('unavailable', `auth service answered ${response.status}`)
    }
    let user: unknown
    try {
      user = await response.json()
    } catch {
      throw new AuthError('unavailable', 'auth service sent invalid JSON')
    }
    if (typeof user !== 'object' || user === null) throw new AuthError('unavailable', 'auth service sent no user object')
    return requireRemainingLife(principalFromClaims(user as Record<string, unknown>, this.defaultAccess))
  }

  private rememberRefusal (key: string, error: AuthError): void {
    if (this.config.negativeCacheTtlMs === 0 || this.config.cacheMaxEntries === 0) return
    if (this.refused.size >= this.config.cacheMaxEntries) {
      const oldest = this.refused.keys().next().value
      if (oldest !== undefined) this.refused.delete(oldest)
    }
    this.refused.set(key, { error, until: Date.now() + this.config.negativeCacheTtlMs })
  }

  private remember (key: string, principal: Principal): void {
    if (this.config.cacheTtlMs === 0 || this.config.cacheMaxEntries === 0) return
    let until = Date.now() + this.config.cacheTtlMs
    if (principal.expiresAt !== undefined) until = Math.min(until, principal.expiresAt)
    if (this.cache.size >= this.config.cacheMaxEntries) {
      // Map iteration order is insertion order: drop the oldest entry.
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(key, { principal, until })
  }
}
