import { SignJWT } from 'jose'

export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long!!'
const secretBytes = new TextEncoder().encode(TEST_SECRET)

export interface TokenOptions {
  sub?: string
  docs?: Record<string, string>
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number
  secret?: string
  extra?: Record<string, unknown>
}

export async function signToken (options: TokenOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = { ...options.extra }
  if (options.docs !== undefined) claims.docs = options.docs
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(options.sub ?? 'user-1')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (options.expiresIn ?? 3600))
  const secret = options.secret === undefined ? secretBytes : new TextEncoder().encode(options.secret)
  return await jwt.sign(secret)
}
