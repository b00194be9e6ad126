import { createRemoteJWKSet, errors, importSPKI, jwtVerify, type CryptoKey, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose'
import type { AccessLevel, AuthConfig, JwtCommon } from '../config/config.js'
import { AuthError, principalFromClaims, type Principal, type TokenVerifier } from './principal.js'

type KeySource = Uint8Array | CryptoKey | JWTVerifyGetKey

/** Verifies JWTs locally with jose: an HS* secret, one PEM public key, or a JWKS endpoint. */
export class JwtVerifier implements TokenVerifier {
  private constructor (
    private readonly keyFor: (alg: string) => Promise<KeySource>,
    private readonly options: JWTVerifyOptions,
    private readonly defaultAccess: AccessLevel
  ) {}

  static async create (auth: Extract<AuthConfig, { common: JwtCommon }>, defaultAccess: AccessLevel): Promise<JwtVerifier> {
    const base: JWTVerifyOptions = {
      issuer: auth.common.issuer,
      audience: auth.common.audience,
      clockTolerance: auth.common.clockToleranceSec
    }
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
        return new JwtVerifier(keyFor, { ...base, algorithms: [...keys.keys()] }, defaultAccess)
      }
      case 'jwt-public-key': {
        // Import eagerly so a PEM that does not match its algorithm fails at start, not per token.
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
        return new JwtVerifier(keyFor, { ...base, algorithms: auth.algorithms }, defaultAccess)
      }
      case 'jwks': {
        const jwks = createRemoteJWKSet(auth.jwksUrl, { timeoutDuration: 5_000, cooldownDuration: 30_000 })
        return new JwtVerifier(async () => jwks, base, defaultAccess)
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
      return principalFromClaims(payload as Record<string, unknown>, this.defaultAccess)
    } catch (err) {
      throw toAuthError(err)
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
