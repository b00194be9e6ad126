/**
 * Attacks on token verification against real servers (uWS sockets, real JWTs, real HTTP JWKS and
 * auth-service endpoints on loopback): tokens without exp, tokens about to expire, algorithm
 * substitution on JWKS, pathological `docs` patterns, floods against the remote auth service, and
 * key endpoints that fail.
 */
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT } from 'jose'
import WebSocket from 'ws'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken, TEST_SECRET } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

const secret = new TextEncoder().encode(TEST_SECRET)
const now = (): number => Math.floor(Date.now() / 1000)

async function listen (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server, url: string }> {
  const server = createServer(handler)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const errorOf = (body: string): string => (JSON.parse(body) as { error: string }).error

t.test('a token without exp is refused (401 token_invalid) unless JWT_REQUIRE_EXP=false', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const forever = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('eve').setIssuedAt().sign(secret)
  const refused = await upgradeStatus(`${ts.url}/d?token=${forever}`)
  t.equal(refused.status, 401)
  t.equal(errorOf(refused.body), 'token_invalid')
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await signToken()}`)).status, 101, 'the same token with exp upgrades')

  const optOut = await startTestServer({ JWT_REQUIRE_EXP: 'false' })
  t.teardown(optOut.close)
  t.equal((await upgradeStatus(`${optOut.url}/d?token=${forever}`)).status, 101, 'explicit opt-out accepts it')
})

t.test('a token without exp is refused with a public key too', async t => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const ts = await startTestServer({ JWT_SECRET: undefined, JWT_PUBLIC_KEY: await exportSPKI(publicKey), JWT_ALGORITHMS: 'ES256' })
  t.teardown(ts.close)
  const forever = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('eve').sign(privateKey)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${forever}`)).status, 401)
  const good = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('ok').setExpirationTime('1h').sign(privateKey)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${good}`)).status, 101)
})

t.test('a token with less than 5 s of life left is refused at the upgrade (401 token_expired), not closed right after', async t => {
  const strict = await startTestServer({ JWT_CLOCK_TOLERANCE_SECONDS: '0' })
  t.teardown(strict.close)
  const almost = await upgradeStatus(`${strict.url}/d?token=${await signToken({ expiresIn: 3 })}`)
  t.equal(almost.status, 401, '3 s left, no tolerance')
  t.equal(errorOf(almost.body), 'token_expired')
  t.equal((await upgradeStatus(`${strict.url}/d?token=${await signToken({ expiresIn: 20 })}`)).status, 101, '20 s left upgrades')

  // Default tolerance (5 s): a token that expired 2 s ago passed jose's check and was closed with
  // 4401 at once; it has 3 s of tolerated life left, so it is refused now.
  const lenient = await startTestServer()
  t.teardown(lenient.close)
  const justExpired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setExpirationTime(now() - 2).sign(secret)
  const res = await upgradeStatus(`${lenient.url}/d?token=${justExpired}`)
  t.equal(res.status, 401)
  t.equal(errorOf(res.body), 'token_expired')
})

t.test('the remote auth service\'s exp gets the same rule', async t => {
  const { url } = await listen(t, (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ id: 'remote-user', exp: now() + 2 }))
  })
  const ts = await startTestServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: `${url}/validate` })
  t.teardown(ts.close)
  const res = await upgradeStatus(`${ts.url}/d?token=opaque-token`)
  t.equal(res.status, 401)
  t.equal(errorOf(res.body), 'token_expired')
})

t.test('JWKS: only the configured algorithms verify (PS256 with an RS256 key is refused by default)', async t => {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
  // The same RSA key pair, imported for RSA-PSS: what an attacker holding a token-signing path for
  // another algorithm, or a confused issuer, would produce.
  const privateJwk = await exportJWK(privateKey)
  const keys: Record<string, Awaited<ReturnType<typeof importJWK>>> = { RS256: privateKey, PS256: await importJWK(privateJwk, 'PS256') }
  // No "alg" on the published key: jose would then accept every RSA algorithm the key allows.
  const jwk = { ...(await exportJWK(publicKey)), kid: 'rsa-1', use: 'sig' }
  const { url } = await listen(t, (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [jwk] }))
  })
  const sign = async (alg: string): Promise<string> => await new SignJWT({}).setProtectedHeader({ alg, kid: 'rsa-1' })
    .setSubject('jwks-user').setIssuer('https://issuer.test').setAudience('collab').setExpirationTime('1h').sign(keys[alg]!)
  const env = { JWT_SECRET: undefined, JWKS_URL: `${url}/jwks.json`, JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'collab' }

  const byDefault = await startTestServer(env)
  t.teardown(byDefault.close)
  t.equal((await upgradeStatus(`${byDefault.url}/d?token=${await sign('RS256')}`)).status, 101, 'RS256 verifies')
  const substituted = await upgradeStatus(`${byDefault.url}/d?token=${await sign('PS256')}`)
  t.equal(substituted.status, 401, 'PS256 with the same key is refused')
  t.equal(errorOf(substituted.body), 'token_invalid')

  const psOnly = await startTestServer({ ...env, JWT_ALGORITHMS: 'PS256' })
  t.teardown(psOnly.close)
  t.equal((await upgradeStatus(`${psOnly.url}/d?token=${await sign('PS256')}`)).status, 101, 'JWT_ALGORITHMS=PS256 applies to JWKS')
  t.equal((await upgradeStatus(`${psOnly.url}/d?token=${await sign('RS256')}`)).status, 401, 'and RS256 is then refused')
})

t.test('JWKS endpoint answering 500 or unreachable: 503 token_unavailable, not 401', async t => {
  const { privateKey } = await generateKeyPair('ES256')
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setSubject('u').setExpirationTime('1h').sign(privateKey)
  let calls = 0
  const { url } = await listen(t, (_req, res) => { calls++; res.statusCode = 500; res.end('boom') })
  const failing = await startTestServer({ JWT_SECRET: undefined, JWKS_URL: `${url}/jwks.json` })
  t.teardown(failing.close)
  const res = await upgradeStatus(`${failing.url}/d?token=${token}`)
  t.equal(res.status, 503, 'JWKS 500')
  t.equal(errorOf(res.body), 'token_unavailable')
  t.ok(calls >= 1, 'the endpoint was asked')

  // A port nothing listens on: take one and close it.
  const closed = createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const unreachable = await startTestServer({ JWT_SECRET: undefined, JWKS_URL: `http://127.0.0.1:${deadPort}/jwks.json` })
  t.teardown(unreachable.close)
  const res2 = await upgradeStatus(`${unreachable.url}/d?token=${token}`)
  t.equal(res2.status, 503, 'JWKS unreachable')
  t.equal(errorOf(res2.body), 'token_unavailable')

  // An algorithm outside JWT_ALGORITHMS is refused before any request to the endpoint.
  const before = calls
  const hs = await upgradeStatus(`${failing.url}/d?token=${await signToken()}`)
  t.equal(hs.status, 401, 'HS256 against a JWKS is invalid, not unavailable')
  t.equal(calls, before, 'and costs no JWKS request')
})

t.test('a pathological docs pattern cannot stall the server; too many stars make the token invalid', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const longId = 'a'.repeat(128)
  const evil = await signToken({ docs: { '*a*a*a*a*a*b': 'read-write' } })
  const res = await upgradeStatus(`${ts.url}/${longId}?token=${evil}`)
  t.equal(res.status, 403, 'no match: forbidden (and answered)')
  t.equal((await upgradeStatus(`${ts.url}/${'a'.repeat(127)}b?token=${evil}`)).status, 101, 'the pattern still matches what it should')
  // Another client is served meanwhile and after: the event loop is free.
  t.equal((await upgradeStatus(`${ts.url}/other?token=${await signToken()}`)).status, 101)

  const tooMany = await signToken({ docs: { [`${'*a'.repeat(9)}*b`]: 'read-write' } })
  const refused = await upgradeStatus(`${ts.url}/${longId}?token=${tooMany}`)
  t.equal(refused.status, 401)
  t.equal(errorOf(refused.body), 'token_invalid')
})

t.test('remote auth service: one bad token flooding costs one call (negative cache)', async t => {
  let calls = 0
  const { url } = await listen(t, (_req, res) => { calls++; res.statusCode = 401; res.end() })
  const ts = await startTestServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: `${url}/validate`, AUTH_NEGATIVE_CACHE_TTL_MS: '60000', AUTH_SERVICE_MAX_PENDING_PER_ADDRESS: '0' })
  t.teardown(ts.close)

  const parallel = await Promise.all(Array.from({ length: 30 }, async () => await upgradeStatus(`${ts.url}/d?token=bad-token`)))
  t.ok(parallel.every(r => r.status === 401), '30 parallel upgrades refused')
  t.equal(calls, 1, 'one call to the auth service, not 30')
  for (let i = 0; i < 10; i++) t.equal((await upgradeStatus(`${ts.url}/d?token=bad-token`)).status, 401)
  t.equal(calls, 1, 'ten more attempts one after another: still one call')
  t.equal((await upgradeStatus(`${ts.url}/d?token=another-bad-token`)).status, 401)
  t.equal(calls, 2, 'the cache is per token')
})

t.test('remote auth service: calls in flight never exceed AUTH_SERVICE_MAX_CONCURRENT; the rest get 503', async t => {
  let inFlight = 0
  let maxInFlight = 0
  let calls = 0
  const held: Array<() => void> = []
  const { url } = await listen(t, (_req, res) => {
    calls++
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    // Hold every answer until the test releases them, so all checks overlap.
    held.push(() => {
      inFlight--
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id: 'remote-user', exp: now() + 3600 }))
    })
  })
  const ts = await startTestServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: `${url}/validate`, AUTH_SERVICE_MAX_CONCURRENT: '4', AUTH_SERVICE_TIMEOUT_MS: '30000', AUTH_SERVICE_MAX_PENDING_PER_ADDRESS: '0' })
  t.teardown(ts.close)

  const results: Array<{ status: number, body: string }> = []
  const attempts = Array.from({ length: 12 }, async (_, i) => {
    const result = await upgradeStatus(`${ts.url}/d?token=distinct-token-${i}`)
    results.push(result)
    return result
  })
  await waitFor(() => held.length === 4 && results.length === 8, '4 calls held, 8 upgrades answered')
  t.ok(results.every(r => r.status === 503 && errorOf(r.body) === 'token_unavailable'), 'beyond the bound: 503 token_unavailable')
  for (const release of held) release()
  const all = await Promise.all(attempts)
  t.equal(all.filter(r => r.status === 101).length, 4, 'the 4 checks in flight succeed')
  t.equal(maxInFlight, 4, 'never more than 4 calls in flight')
  t.equal(calls, 4, 'refused checks made no call')
})

t.test('one address cannot take every auth service call: its checks in flight are bounded, others still get theirs', async t => {
  let inFlight = 0
  let maxInFlight = 0
  const held: Array<() => void> = []
  const { url } = await listen(t, (req, res) => {
    const good = req.headers.authorization === 'Bearer good-token'
    if (good) {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id: 'honest', exp: now() + 3600 }))
      return
    }
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    held.push(() => { inFlight--; res.statusCode = 401; res.end() })
  })
  const ts = await startTestServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: `${url}/validate`, AUTH_SERVICE_MAX_CONCURRENT: '16', AUTH_SERVICE_TIMEOUT_MS: '30000', AUTH_SERVICE_MAX_PENDING_PER_ADDRESS: '4' })
  t.teardown(ts.close)
  // A flood of distinct junk tokens from one address, the auth service slow to refuse them.
  const flood = Array.from({ length: 20 }, async (_, i) => await upgradeStatus(`${ts.url}/d?token=junk-${i}`))
  const participants = fetch(`http://127.0.0.1:${ts.port}/documents/d/participants`, { headers: { authorization: 'Bearer junk-participants' } })
  await waitFor(() => held.length === 4, 'four checks of that address reach the service')
  await sleep(100)
  t.equal(maxInFlight, 4, 'and no more')
  t.equal((await participants).status, 429, 'the participants route counts against the same bound')
  // Another host (another loopback source address) is served at once.
  const honest = await new Promise<number>(resolve => {
    const ws = new WebSocket(`${ts.url}/d?token=good-token`, { localAddress: '127.0.0.2' })
    ws.on('open', () => { ws.close(); resolve(101) })
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('error', () => resolve(0))
  })
  t.equal(honest, 101, 'an honest client elsewhere connects while the flood waits')
  for (const release of held) release()
  const statuses = (await Promise.all(flood)).map(r => r.status)
  t.equal(statuses.filter(s => s === 429).length, 16, 'the rest of the flood got 429')
  t.equal(statuses.filter(s => s === 401).length, 4)
})
