import type { CryptoKey } from 'jose'
// jose's entry point loads all of JOSE (about 180 modules, ~4 MB of a node's memory): only
// verification is loaded up front; key import and JWKS only when configured.
import * as errors from 'jose/errors'
import { jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose/jwt/verify'
import type { AccessLevel, AuthConfig, JwtCommon } from '../config/config.js'
import { AuthError, principalFromClaims, requireRemainingLife, type Principal, type TokenVerifier } from './principal.js'

type KeySource = Uint8Array | CryptoKey | JWTVerifyGetKey

/**
 * Verifies JWTs locally with jose: an HS* secret, one PEM public key, or a JWKS endpoint.
 *
 * Every mode: `exp` is required unless JWT_REQUIRE_EXP=false (a token without it is `invalid`:
 * it is not expired, it is not a token this server accepts), and a token with less than
 * MIN_REMAINING_LIFE_MS left after the clock tolerance is `expired`. Only the configured
 * algorithms verify, JWKS included.
 */
export class JwtVerifier implements TokenVerifier {
  private constructor (
    private readonly keyFor: (alg: string) => Promise<KeySource>,
    private readonly options: JWTVerifyOptions,
    private readonly defaultAccess: AccessLevel,
    private readonly clockToleranceMs: number
  ) {}

  static async create (auth: Extract<AuthConfig, { common: JwtCommon }>, defaultAccess: AccessLevel): Promise<JwtVerifier> {
    const base: JWTVerifyOptions = {
      issuer: auth.common.issuer,
      audience: auth.common.audience,
      clockTolerance: auth.common.clockToleranceSec,
      ...(auth.common.requireExp ? { requiredClaims: ['exp'] } : {})
    }
    const toleranceMs = auth.common.clockToleranceSec * 1000
    switch (auth.kind) {
      case 'jwt-secret': {
        // Import the secret once per HMAC algorithm: handing jose the raw bytes makes it import a
        // key on every verification, which costs about 40 % of a verification.
        const keys = new Map<string, CryptoKey>()
        for (const [alg, hash] of [['HS256', 'SHA-256'], ['HS384', 'SHA-384'], ['HS512', 'SHA-512']] as const) {
          keys.set(alg, await crypto.subtle.importKey('raw', auth.secret, { name: 'HMAC', hash }, false, ['verify']))
        }
        const keyFor = async (alg: string): Promise<CryptoKey> => {
          const key = keys.get(alg)
          if (key === undefined) throw new AuthError('invalid', `algorithm ${alg} not allowed`)
          return key
        }
        return new JwtVerifier(keyFor, { ...base, algorithms: [...keys.keys()] }, defaultAccess, toleranceMs)
      }
      case 'jwt-public-key': {
        // Import eagerly so a PEM that does not match its algorithm fails at start, not per token.
        const { importSPKI } = await import('jose/key/import')
        const keys = new Map<string, CryptoKey>()
        for (const alg of auth.algorithms) {
          try {
            keys.set(alg, await importSPKI(auth.publicKeyPem, alg))
          } catch (err) {
            throw new Error(`JWT_PUBLIC_KEY cannot be used with ${alg}: ${(err as Error).message}`)
          }
        }
        const keyFor = async (alg: string): Promise<CryptoKey> => {
          const key = keys.get(alg)
          if (key === undefined) throw new AuthError('invalid', `algorithm ${alg} not allowed`)
          return key
        }
        return new JwtVerifier(keyFor, { ...base, algorithms: auth.algorithms }, defaultAccess, toleranceMs)
      }
      case 'jwks': {
        const { createRemoteJWKSet } = await import('jose/jwks/remote')
        const jwks = unavailableWhenUnreachable(createRemoteJWKSet(auth.jwksUrl, { timeoutDuration: 5_000, cooldownDuration: 30_000 }))
        const allowed = new Set(auth.algorithms)
        // Refuse a disallowed algorithm before the JWKS is fetched: a flood of such tokens then
        // costs no request to the endpoint. jose checks `algorithms` again after.
        const keyFor = async (alg: string): Promise<JWTVerifyGetKey> => {
          if (!allowed.has(alg)) throw new AuthError('invalid', `algorithm ${alg} not allowed`)
          return jwks
        }
        return new JwtVerifier(keyFor, { ...base, algorithms: auth.algorithms }, defaultAccess, toleranceMs)
      }
    }
  }

  async verify (token: string): Promise<Principal> {
    if (token === '') throw new AuthError('missing', 'no token')
    try {
      const alg = peekAlgorithm(token)
      const key = await this.keyFor(alg)
      // jose's overloads split on key type; both branches call the same verifier.
      const { payload } = typeof key === 'function'
        ? await jwtVerify(token, key, this.options)
        : await jwtVerify(token, key, this.options)
      const principal = principalFromClaims(payload as Record<string, unknown>, this.defaultAccess)
      if (principal.expiresAt !== undefined) principal.expiresAt += this.clockToleranceMs
      return requireRemainingLife(principal)
    } catch (err) {
      throw toAuthError(err)
    }
  }
}

/**
 * A JWKS endpoint that answers an error, invalid JSON or nothing is the server's problem, not the
 * client's: jose reports those as generic JOSEErrors (which would read as "invalid token", 401),
 * so failures of the key-set function itself become `unavailable` (503, the client retries).
 * Failures about the token (no key with its kid, several candidate keys) stay `invalid`.
 */
function unavailableWhenUnreachable (jwks: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await jwks(header, token)
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported || err instanceof errors.JOSEAlgNotAllowed) throw err
      if (err instanceof errors.JWKSTimeout) throw new AuthError('unavailable', 'JWKS endpoint timed out')
      throw new AuthError('unavailable', 'JWKS endpoint unavailable or sent no valid key set')
    }
  }
}

function peekAlgorithm (token: string): string {
  const headerPart = token.split('.', 1)[0] ?? ''
  try {
    const header = JSON.parse(Buffer.from(headerPart, 'base64url').toString('utf8')) as { alg?: unknown }
    if (typeof header.alg === 'string') return header.alg
  } catch {}
  throw new AuthError('invalid', 'malformed token header')
}

function toAuthError (err: unknown): AuthError {
  if (err instanceof AuthError) return err
  if (err instanceof errors.JWTExpired) return new AuthError('expired', 'token expired')
  if (err instanceof errors.JWKSTimeout) return new AuthError('unavailable', 'JWKS endpoint timed out')
  if (err instanceof errors.JOSEError) return new AuthError('invalid', err.code)
  // Network failures while fetching a JWKS are not the client's fault.
  if (err instanceof TypeError && /fetch/i.test(err.message)) return new AuthError('unavailable', 'JWKS endpoint unreachable')
  return new AuthError('invalid', 'token rejected')
}
