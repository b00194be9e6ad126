import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportSPKI, generateKeyPair, SignJWT } from 'jose'
import * as Y from 'yjs'
import { connectClient, connectSynced } from './helpers/clients.js'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

t.test('upgrade answers 401 for missing, expired and wrongly signed tokens', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const base = `${ts.url}/doc-a`

  const missing = await upgradeStatus(base)
  t.equal(missing.status, 401, 'missing token')
  t.match(JSON.parse(missing.body), { error: 'token_missing' })

  const expired = await upgradeStatus(`${base}?token=${await signToken({ expiresIn: -60 })}`)
  t.equal(expired.status, 401, 'expired token')
  t.match(JSON.parse(expired.body), { error: 'token_expired' })

  const wrongKey = await upgradeStatus(`${base}?token=${await signToken({ secret: 'another-secret-that-is-32-bytes-long!!' })}`)
  t.equal(wrongKey.status, 401, 'wrongly signed token')
  t.match(JSON.parse(wrongKey.body), { error: 'token_invalid' })

  t.equal((await upgradeStatus(`${base}?token=garbage`)).status, 401, 'garbage token')

  const good = await signToken()
  t.equal((await upgradeStatus(`${base}?token=${good}`)).status, 101, 'valid token upgrades')
  t.equal((await upgradeStatus(base, { authorization: `Bearer ${good}` })).status, 101, 'Authorization: Bearer works too')
})

t.test('upgrade answers 400 for invalid document ids', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  for (const bad of ['', 'a'.repeat(129), 'has space', 'sl/ash', 'per%20cent', 'quote"']) {
    const { status } = await upgradeStatus(`${ts.url}/${bad}?token=${token}`)
    t.equal(status, 400, `rejects ${JSON.stringify(bad.slice(0, 20))}`)
  }
  t.equal((await upgradeStatus(`${ts.url}?token=${token}`)).status, 400, 'no id at all')
})

t.test('403 for a document outside the token scope; patterns and exact ids', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken({ docs: { 'team-*': 'read-write', 'team-secret': 'none', handbook: 'read-only' } })
  t.equal((await upgradeStatus(`${ts.url}/team-1?token=${token}`)).status, 101, 'pattern match')
  t.equal((await upgradeStatus(`${ts.url}/handbook?token=${token}`)).status, 101, 'exact read-only')
  t.equal((await upgradeStatus(`${ts.url}/team-secret?token=${token}`)).status, 403, 'exact none beats pattern')
  const other = await upgradeStatus(`${ts.url}/other?token=${token}`)
  t.equal(other.status, 403, 'not listed')
  t.match(JSON.parse(other.body), { error: 'forbidden' })

  const malformedClaim = await signToken({ extra: { docs: ['not', 'an', 'object'] } })
  t.equal((await upgradeStatus(`${ts.url}/team-1?token=${malformedClaim}`)).status, 401, 'malformed docs claim is refused')
})

t.test('DEFAULT_DOC_ACCESS applies to tokens without a docs claim', async t => {
  const ts = await startTestServer({ DEFAULT_DOC_ACCESS: 'none' })
  t.teardown(ts.close)
  t.equal((await upgradeStatus(`${ts.url}/x?token=${await signToken()}`)).status, 403)
})

t.test('a read-only client receives everything and changes nothing', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const writerToken = await signToken({ sub: 'writer' })
  const readerToken = await signToken({ sub: 'reader', docs: { shared: 'read-only' } })
  const writer = await connectSynced(ts.url, 'shared', writerToken)
  writer.doc.getText('t').insert(0, 'from writer')
  const reader = await connectSynced(ts.url, 'shared', readerToken)
  const observer = await connectSynced(ts.url, 'shared', writerToken)
  t.teardown(() => { writer.destroy(); reader.destroy(); observer.destroy() })
  await waitFor(() => reader.text() === 'from writer', 'reader gets initial state')

  let denied = 0
  reader.provider.on('status', () => {})
  const originalWarn = console.warn
  console.warn = (...args: unknown[]) => { if (String(args[0]).includes('Permission denied')) denied++ }
  t.teardown(() => { console.warn = originalWarn })

  reader.doc.getText('t').insert(0, 'reader was here ')
  writer.doc.getText('t').insert(11, '!')
  await waitFor(() => observer.text() === 'from writer!', 'writer edit reaches observer')
  await waitFor(() => reader.text().endsWith('from writer!'), 'writer edit reaches reader')
  await waitFor(() => denied > 0, 'reader told permission denied')
  await sleep(200)
  t.equal(observer.text(), 'from writer!', 'reader edit did not reach others')
  t.equal(ts.server.registry.get('shared')?.ydoc.getText('t').toString(), 'from writer!', 'server doc unchanged')

  // Nothing of the reader's reaches the store: reload from disk after unload.
  writer.destroy(); reader.destroy(); observer.destroy()
  await waitFor(() => ts.server.registry.get('shared') === undefined, 'document unloaded')
  const fresh = await connectSynced(ts.url, 'shared', writerToken)
  t.teardown(() => fresh.destroy())
  t.equal(fresh.text(), 'from writer!', 'stored state has no read-only edit')
})

t.test('RS256 public key verification (PEM)', async t => {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const pem = await exportSPKI(publicKey)
  const ts = await startTestServer({ JWT_SECRET: undefined, JWT_PUBLIC_KEY: pem, JWT_ALGORITHMS: 'RS256', JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'collab' })
  t.teardown(ts.close)
  const sign = async (claims: { iss: string; aud: string }): Promise<string> => await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256' }).setSubject('rsa-user').setIssuer(claims.iss).setAudience(claims.aud)
    .setExpirationTime('1h').sign(privateKey)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await sign({ iss: 'https://issuer.test', aud: 'collab' })}`)).status, 101)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await sign({ iss: 'https://evil.test', aud: 'collab' })}`)).status, 401, 'wrong issuer')
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await sign({ iss: 'https://issuer.test', aud: 'other' })}`)).status, 401, 'wrong audience')
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await signToken()}`)).status, 401, 'HS token refused when a public key is configured')
})

t.test('ES256 via JWKS URL', async t => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const { exportJWK } = await import('jose')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  const jwksServer = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [jwk] }))
  })
  await new Promise<void>(resolve => jwksServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { jwksServer.closeAllConnections(); jwksServer.close() })
  const port = (jwksServer.address() as AddressInfo).port
  const ts = await startTestServer({ JWT_SECRET: undefined, JWKS_URL: `http://127.0.0.1:${port}/jwks.json` })
  t.teardown(ts.close)
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('jwks-user').setExpirationTime('1h').sign(privateKey)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${token}`)).status, 101)
  t.equal((await upgradeStatus(`${ts.url}/d?token=${await signToken()}`)).status, 401)
})

t.test('remote auth service: valid, refused, unavailable, cached', async t => {
  let calls = 0
  let available = true
  const authServer = createServer((req, res) => {
    calls++
    if (!available) { res.statusCode = 500; res.end(); return }
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    if (token === 'good-token') {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id: 'remote-user', email: 'r@example.test', docs: { 'remote-*': 'read-write' } }))
    } else {
      res.statusCode = 401
      res.end()
    }
  })
  await new Promise<void>(resolve => authServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { authServer.closeAllConnections(); authServer.close() })
  const port = (authServer.address() as AddressInfo).port
  const ts = await startTestServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: `http://127.0.0.1:${port}/validate_token`, AUTH_CACHE_TTL_MS: '60000' })
  t.teardown(ts.close)

  t.equal((await upgradeStatus(`${ts.url}/remote-1?token=good-token`)).status, 101)
  t.equal((await upgradeStatus(`${ts.url}/other?token=good-token`)).status, 403, 'docs from the service apply')
  t.equal((await upgradeStatus(`${ts.url}/remote-1?token=bad-token`)).status, 401)
  const before = calls
  t.equal((await upgradeStatus(`${ts.url}/remote-2?token=good-token`)).status, 101, 'cached')
  t.equal(calls, before, 'served from cache')
  available = false
  t.equal((await upgradeStatus(`${ts.url}/remote-1?token=other-token`)).status, 503, 'service down: 503, not 401')

  const client = connectClient(ts.url, 'remote-1', 'good-token')
  t.teardown(() => client.destroy())
  await waitFor(() => client.provider.synced, 'sync via remote auth')
  t.ok(client.doc instanceof Y.Doc)
})
