import t from 'tap'
import * as Y from 'yjs'
import { connectSynced } from './helpers/clients.js'
import { rawClient, upgradeStatus } from './helpers/raw-socket.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer } from './helpers/server.js'
import { slowReader } from './helpers/slow-reader.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'
import { encodeSyncUpdate } from '../src/protocol/messages.js'
import { stockProvider } from './helpers/providers.js'

async function admin (port: number, path: string, init: RequestInit): Promise<Response> {
  const token = await signToken({ sub: 'ops', extra: { admin: true } })
  return await fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } })
}

t.test('a flooding client is cut off with 4529 while other clients of the document keep receiving', async t => {
  const ts = await startTestServer({ RATE_LIMIT_MESSAGES_PER_SECOND: '50', RATE_LIMIT_MESSAGES_BURST: '100' })
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'flooded', token)
  const b = await connectSynced(ts.url, 'flooded', token)
  t.teardown(() => { a.destroy(); b.destroy() })
  const flooder = rawClient(`${ts.url}/flooded?token=${token}`)
  await flooder.opened
  const source = new Y.Doc()
  let sent = 0
  const flood = setInterval(() => {
    for (let i = 0; i < 50 && flooder.ws.readyState === flooder.ws.OPEN; i++) {
      const sv = Y.encodeStateVector(source)
      source.getArray('spam').push([sent++])
      flooder.ws.send(encodeSyncUpdate(Y.encodeStateAsUpdate(source, sv)))
    }
  }, 10)
  t.teardown(() => clearInterval(flood))
  let delivered = 0
  const writer = setInterval(() => { a.doc.getArray('honest').push([delivered++]) }, 20)
  t.equal((await flooder.closed).code, 4529, 'flooder closed with 4529')
  clearInterval(flood)
  await sleep(200)
  clearInterval(writer)
  await waitFor(() => b.doc.getArray('honest').length === delivered, 'honest edits all delivered')
  t.ok(sent > 100, `the flooder got ${sent} messages out before being cut`)
  t.equal(a.provider.wsconnected && b.provider.wsconnected, true, 'honest clients never disconnected')
  t.equal(ts.logs.filter(l => l.includes('rate limit exceeded')).length, 1, 'logged once, not per message')
})

t.test('connection caps per node and per document answer 503 with a reason', async t => {
  const ts = await startTestServer({ MAX_CONNECTIONS: '3', MAX_CONNECTIONS_PER_DOCUMENT: '2' })
  t.teardown(ts.close)
  const token = await signToken()
  const one = await connectSynced(ts.url, 'capped', token)
  const two = await connectSynced(ts.url, 'capped', token)
  t.teardown(() => { one.destroy(); two.destroy() })
  const third = await upgradeStatus(`${ts.url}/capped?token=${token}`)
  t.equal(third.status, 503)
  t.match(JSON.parse(third.body), { error: 'document_full' })
  const other = await connectSynced(ts.url, 'other', token)
  t.teardown(() => other.destroy())
  const fourth = await upgradeStatus(`${ts.url}/third-doc?token=${token}`)
  t.equal(fourth.status, 503)
  t.match(JSON.parse(fourth.body), { error: 'server_full' })
  t.equal(one.text(), '', 'existing clients unaffected')
})

t.test('a rate-limited y-websocket 3.x client (4529) reconnects by itself and keeps its edits', async t => {
  const ts = await startTestServer({ RATE_LIMIT_MESSAGES_PER_SECOND: '5', RATE_LIMIT_MESSAGES_BURST: '20' })
  t.teardown(ts.close)
  const { doc, provider } = stockProvider('3.1.0', ts.url, 'limited', { token: await signToken({ sub: 'busy' }) })
  t.teardown(() => { provider.destroy(); doc.destroy() })
  const codes: number[] = []
  let closedForGood = false
  provider.on('connection-close', (event: { code: number } | null) => { if (event !== null) codes.push(event.code) })
  provider.on('closed', () => { closedForGood = true })
  await waitFor(() => provider.synced, 'synced')
  for (let i = 0; i < 40; i++) doc.getArray('a').push([i]) // 40 messages at once: past the burst
  await waitFor(() => codes.includes(4529), 'closed with 4529')
  await waitFor(() => provider.synced, 'reconnected and synced again')
  t.notOk(closedForGood, 'the provider did not give up (it would after 4400-4499)')
  const reader = await connectSynced(ts.url, 'limited', await signToken({ sub: 'reader' }))
  t.teardown(() => reader.destroy())
  await waitFor(() => reader.doc.getArray('a').length === 40, 'every edit arrived, re-sent after the reconnect')
})

t.test('an update that would grow a document past MAX_DOCUMENT_BYTES is refused and the client told', async t => {
  const ts = await startTestServer({ MAX_DOCUMENT_BYTES: '20000' })
  t.teardown(ts.close)
  const token = await signToken()
  const writer = await connectSynced(ts.url, 'bounded', token)
  const reader = await connectSynced(ts.url, 'bounded', token)
  t.teardown(() => { writer.destroy(); reader.destroy() })
  writer.doc.getText('t').insert(0, 'x'.repeat(5000))
  await waitFor(() => reader.text().length === 5000, 'small edit accepted')
  const warnings: string[] = []
  const originalWarn = console.warn
  console.warn = (...args: unknown[]) => { warnings.push(String(args[0])) }
  t.teardown(() => { console.warn = originalWarn })
  writer.doc.getText('t').insert(0, 'y'.repeat(18000))
  await waitFor(() => warnings.some(w => w.includes('document size limit reached')), 'client told')
  await sleep(100)
  t.equal(reader.text().length, 5000, 'the oversize update reached nobody')
  t.equal(ts.server.registry.get('bounded')?.ydoc.getText('t').length, 5000, 'server document unchanged')
  t.equal(writer.provider.wsconnected, true, 'the connection stays open')
})

t.test('ALLOWED_ORIGINS refuses other browser origins with 403', async t => {
  const ts = await startTestServer({ ALLOWED_ORIGINS: 'https://app.example.com' })
  t.teardown(ts.close)
  const url = `${ts.url}/o?token=${await signToken()}`
  t.equal((await upgradeStatus(url, { origin: 'https://app.example.com' })).status, 101)
  const evil = await upgradeStatus(url, { origin: 'https://evil.example.com' })
  t.equal(evil.status, 403)
  t.match(JSON.parse(evil.body), { error: 'origin_not_allowed' })
  t.equal((await upgradeStatus(url)).status, 101, 'non-browser clients without Origin are judged by their token')
})

t.test('a connection is closed with 4401 when its token expires', async t => {
  const ts = await startTestServer({ JWT_CLOCK_TOLERANCE_SECONDS: '0' })
  t.teardown(ts.close)
  // Tokens with less than 5 s left are refused at the upgrade: this one has 6-7 s.
  const token = await signToken({ expiresIn: 7 })
  const client = rawClient(`${ts.url}/expiring?token=${token}`)
  await client.opened
  const started = Date.now()
  const { code } = await client.closed
  t.equal(code, 4401)
  t.ok(Date.now() - started < 8500, 'closed at exp, not later')
})

t.test('revocation closes the user at once, refuses reconnects, and can be lifted', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const mallory = await signToken({ sub: 'mallory' })
  const alice = await connectSynced(ts.url, 'secret-plans', await signToken({ sub: 'alice' }))
  t.teardown(() => alice.destroy())
  const client = rawClient(`${ts.url}/secret-plans?token=${mallory}`)
  await client.opened
  const res = await admin(ts.port, '/admin/revocations', { method: 'POST', body: JSON.stringify({ docId: 'secret-plans', userId: 'mallory' }) })
  t.equal(res.status, 200)
  t.equal((await client.closed).code, 4403)
  const again = await upgradeStatus(`${ts.url}/secret-plans?token=${mallory}`)
  t.equal(again.status, 403)
  t.match(JSON.parse(again.body), { error: 'access_revoked' })
  t.equal((await upgradeStatus(`${ts.url}/other-doc?token=${mallory}`)).status, 101, 'other documents unaffected')
  t.equal(alice.provider.wsconnected, true, 'other users unaffected')
  t.equal((await admin(ts.port, '/admin/revocations', { method: 'DELETE', body: JSON.stringify({ docId: 'secret-plans', userId: 'mallory' }) })).status, 200)
  t.equal((await upgradeStatus(`${ts.url}/secret-plans?token=${mallory}`)).status, 101, 'restored')
  t.equal((await admin(ts.port, '/admin/revocations', { method: 'POST', body: '{"docId": 5}' })).status, 400)
})

t.test('revocation reaches connections on every node', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const a = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'a' })
  const b = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'b' })
  t.teardown(async () => { await a.close(); await b.close() })
  const token = await signToken({ sub: 'mallory' })
  const onB = rawClient(`${b.url}/shared?token=${token}`)
  await onB.opened
  t.equal((await admin(a.port, '/admin/revocations', { method: 'POST', body: JSON.stringify({ docId: 'shared', userId: 'mallory' }) })).status, 200)
  t.equal((await onB.closed).code, 4403, 'closed on the other node')
  t.equal((await upgradeStatus(`${b.url}/shared?token=${token}`)).status, 403, 'refused on the other node too')
})

t.test('a slow reader is closed at the backpressure limit; memory stays bounded; it re-syncs complete', async t => {
  const ts = await startTestServer({ MAX_BACKPRESSURE_BYTES: String(64 * 1024), RATE_LIMIT_BYTES_PER_SECOND: String(64 * 1024 * 1024) })
  t.teardown(ts.close)
  const token = await signToken()
  const writer = await connectSynced(ts.url, 'firehose', token)
  t.teardown(() => writer.destroy())
  const slow = await slowReader(ts.port, `/ws/document/firehose?token=${token}`)
  t.teardown(() => slow.socket.destroy())
  await waitFor(() => ts.server.connectionCount === 2, 'slow reader connected')
  const rssBefore = process.memoryUsage().rss
  const chunk = 'z'.repeat(16 * 1024)
  for (let i = 0; i < 400 && ts.server.connectionCount === 2; i++) {
    writer.doc.getArray('blobs').push([`${i}:${chunk}`])
    await sleep(2)
  }
  await waitFor(() => ts.server.connectionCount === 1, 'slow reader closed by the server')
  const rssGrowth = process.memoryUsage().rss - rssBefore
  t.ok(rssGrowth < 64 * 1024 * 1024, `memory bounded (grew ${Math.round(rssGrowth / 1024 / 1024)} MiB)`)
  t.ok(ts.logs.some(l => l.includes('connection dropped by the server') || l.includes('"code":1006')), 'the drop is logged')
  // Everything the writer sent is on the server; a reconnecting client gets it all.
  const count = writer.doc.getArray('blobs').length
  await waitFor(() => ts.server.registry.get('firehose')?.ydoc.getArray('blobs').length === count, 'server has all')
  const fresh = await connectSynced(ts.url, 'firehose', token)
  t.teardown(() => fresh.destroy())
  t.equal(fresh.doc.getArray('blobs').length, count, 'complete after reconnect')
})

t.test('idle timeout: the server pings, a client that answers stays, a silent one is closed', async t => {
  // WEBSOCKET_SESSION_TIMEOUT_SECONDS is the seed design's name for IDLE_TIMEOUT_SECONDS.
  const ts = await startTestServer({ WEBSOCKET_SESSION_TIMEOUT_SECONDS: '8' })
  t.teardown(ts.close)
  const token = await signToken()
  const answering = rawClient(`${ts.url}/idle?token=${token}`) // ws answers pings with pongs
  await answering.opened
  let pings = 0
  answering.ws.on('ping', () => { pings++ })
  const silent = await slowReader(ts.port, `/ws/document/idle?token=${token}`)
  t.teardown(() => { silent.socket.destroy(); answering.ws.close() })
  await waitFor(() => ts.server.connectionCount === 1, 'silent connection closed', 20_000)
  t.ok(pings > 0, 'the server pinged')
  t.equal(answering.ws.readyState, answering.ws.OPEN, 'the answering client is still connected')
})
