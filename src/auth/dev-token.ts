/**
 * Signs a development token with the per-run secret that `npm start` generates when no auth is
 * configured, so a newcomer can connect at once. Never used when a real key is configured, which
 * is why jose's signing modules are loaded on first use only (a production node never loads them).
 */
export async function signDevelopmentToken (secret: Uint8Array, userId = 'dev-user', ttlSeconds = 24 * 3600, admin = false): Promise<string> {
  const { SignJWT } = await import('jose/jwt/sign')
  return await new SignJWT(admin ? { docs: { '*': 'read-write' }, admin: true } : { docs: { '*': 'read-write' } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(secret)
}
