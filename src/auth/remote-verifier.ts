import { createHash } from 'node:crypto'
import type { AccessLevel, AuthConfig } from '../config/config.js'
import { AuthError, principalFromClaims, type Principal, type TokenVerifier } from './principal.js'

type RemoteAuthConfig = Extract<AuthConfig, { kind: 'remote' }>

/**
 * Asks an external auth service (the seed's AuthService) about each token:
 * `GET AUTH_SERVICE_URL` with `Authorization: Bearer <token>`; 200 with user JSON is valid,
 * 401/403 is invalid, anything else (or a timeout) is "unavailable" and the client retries.
 *
 * Valid answers are cached for AUTH_CACHE_TTL_MS (never past the token's own exp), keyed by a
 * hash so tokens are not kept in memory, and concurrent checks of one token share one request.
 */
export class RemoteVerifier implements TokenVerifier {
  private readonly cache = new Map<string, { principal: Principal; until: number }>()
  private readonly inFlight = new Map<string, Promise<Principal>>()

  constructor (private readonly config: RemoteAuthConfig, private readonly defaultAccess: AccessLevel) {}

  async verify (token: string): Promise<Principal> {
    if (token === '') throw new AuthError('missing', 'no token')
    const key = createHash('sha256').update(token).digest('base64url')
    const cached = this.cache.get(key)
    const now = Date.now()
    if (cached !== undefined) {
      if (cached.until > now) return cached.principal
      this.cache.delete(key)
    }
    let pending = this.inFlight.get(key)
    if (pending === undefined) {
      pending = this.ask(token).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    const principal = await pending
    this.remember(key, principal)
    return principal
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
    const principal = principalFromClaims(user as Record<string, unknown>, this.defaultAccess)
    if (principal.expiresAt !== undefined && principal.expiresAt <= Date.now()) {
      throw new AuthError('expired', 'token expired')
    }
    return principal
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
