import { SignJWT } from 'jose'
import { BENCH_SECRET } from './servers.js'

const secret = new TextEncoder().encode(BENCH_SECRET)

/** HS256 tokens signed with the secret the bench gives our server; one distinct user per token. */
export async function signTokens (count: number, prefix = 'bench-user'): Promise<string[]> {
  const exp = Math.floor(Date.now() / 1000) + 6 * 3600
  const tokens: string[] = []
  for (let i = 0; i < count; i++) {
    tokens.push(await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(`${prefix}-${i}`).setIssuedAt().setExpirationTime(exp).sign(secret))
  }
  return tokens
}
