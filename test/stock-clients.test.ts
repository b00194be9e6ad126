import t, { type Test } from 'tap'
import type * as Y from 'yjs'
import { stockProvider, type StockProvider } from './helpers/providers.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { startTcpProxy } from './helpers/tcp-proxy.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// What a person using a stock y-websocket provider notices: whether it stays connected when alone
// and idle, and whether the others keep seeing them across a dropped connection.

type Provider = StockProvider

interface Person {
  doc: Y.Doc
  provider: Provider
  /** Times the provider went back to 'connecting' after it first connected. */
  reconnects: () => number
  destroy: () => void
}

type Version = 'v1' | 'v3' | 'v4'

function join (version: Version, url: string, docId: string, token: string, name: string | null): Person {
  const { doc, provider } = stockProvider(version === 'v1' ? '1.5.4' : version === 'v4' ? '4.0.0-3' : '3.1.0', url, docId, { token })
  if (name === null) provider.awareness.setLocalState(null)
  else provider.awareness.setLocalStateField('user', name)
  let connected = false
  let reconnects = 0
  provider.on('status', ({ status }: { status: string }) => {
    if (status === 'connected') connected = true
    else if (status === 'connecting' && connected) reconnects++
  })
  return { doc, provider, reconnects: () => reconnects, destroy: () => { provider.destroy(); doc.destroy() } }
}

const sees = (viewer: Person, of: Person): boolean => viewer.provider.awareness.getStates().has(of.doc.clientID)

t.test('people alone in a document stay connected past the stock 30 s timer: writers, viewers, with and without presence, provider versions 1.5, 3.1 and 4.0', { timeout: 90_000 }, async t => {
  const ts = await startTestServer({ LOG_LEVEL: 'warn' })
  t.teardown(ts.close)
  const people = await Promise.all([
    ['v3', 'read-write', 'writer'],
    ['v3', 'read-only', null],
    ['v1', 'read-write', 'writer'],
    ['v1', 'read-only', null],
    ['v4', 'read-write', 'writer'],
    ['v4', 'read-only', null]
  ].map(async ([version, access, name], i) => {
    const docId = `alone-${i}`
    const person = join(version as Version, ts.url, docId, await signToken({ sub: `p${i}`, docs: { [docId]: access! } }), name ?? null)
    await waitFor(() => person.provider.synced || person.provider.wsconnected, `person ${i} connected`)
    return person
  }))
  t.teardown(() => people.forEach(p => p.destroy()))
  // The stock providers close after 30 s without a message; keep-alives arrive every 15 s.
  await sleep(40_000)
  people.forEach((p, i) => {
    t.equal(p.reconnects(), 0, `person ${i} never reconnected`)
    t.ok(p.provider.wsconnected, `person ${i} is connected`)
  })
})

t.test('KEEPALIVE_INTERVAL_SECONDS=0 turns the keep-alive off (and then a lone client does reconnect)', { timeout: 90_000 }, async t => {
  const ts = await startTestServer({ LOG_LEVEL: 'warn', KEEPALIVE_INTERVAL_SECONDS: '0' })
  t.teardown(ts.close)
  const lone = join('v3', ts.url, 'no-keepalive', await signToken(), null)
  t.teardown(() => lone.destroy())
  await waitFor(() => lone.provider.wsconnected, 'connected')
  await waitFor(() => lone.reconnects() > 0, 'the stock timer reconnects a client that hears nothing', 45_000)
  t.pass('the keep-alive is what keeps the first test connected')
})

async function cutAndWatch (t: Test, viewers: Person[], watched: Person, cut: () => void): Promise<void> {
  await waitFor(() => viewers.every(v => sees(v, watched)), 'everyone sees the person before the cut')
  let longestGap = 0
  let gapStart: number | null = null
  const started = Date.now()
  cut()
  // Watch for five seconds: long enough for the provider to reconnect and for any removal to land.
  while (Date.now() - started < 5_000) {
    const visible = viewers.every(v => sees(v, watched))
    if (!visible && gapStart === null) gapStart = Date.now()
    if (visible && gapStart !== null) {
      longestGap = Math.max(longestGap, Date.now() - gapStart)
      gapStart = null
    }
    await sleep(10)
  }
  if (gapStart !== null) longestGap = Math.max(longestGap, Date.now() - gapStart)
  t.ok(watched.reconnects() >= 1, 'the person\'s provider reconnected')
  t.ok(longestGap <= 1_000, `the others saw the person again within a second (longest gap ${longestGap} ms)`)
  t.equal(longestGap, 0, 'in fact they never saw the person vanish')
}

t.test('a dropped connection that comes back shows no gap in presence (one node)', async t => {
  const ts = await startTestServer({ LOG_LEVEL: 'warn' })
  t.teardown(ts.close)
  const proxy = await startTcpProxy(ts.port)
  t.teardown(proxy.close)
  const token = await signToken({ sub: 'ada' })
  const ada = join('v3', `ws://127.0.0.1:${proxy.port}/ws/document`, 'drop', token, 'Ada')
  const bob = join('v3', ts.url, 'drop', await signToken({ sub: 'bob' }), 'Bob')
  t.teardown(() => { ada.destroy(); bob.destroy() })
  await cutAndWatch(t, [bob], ada, () => proxy.retarget(ts.port))
  ada.doc.getText('t').insert(0, 'after the drop')
  await waitFor(() => bob.doc.getText('t').toString() === 'after the drop', 'edits flow again')
})

t.test('a dropped connection that comes back through another node shows no gap either', async t => {
  const { startRedis } = await import('./helpers/redis.js')
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const env = { REDIS_URL: redis.url, BRIDGE_HEARTBEAT_MS: '200', LOG_LEVEL: 'warn' }
  const a: TestServer = await startTestServer({ ...env, NODE_ID: 'a' })
  const b: TestServer = await startTestServer({ ...env, NODE_ID: 'b' })
  t.teardown(async () => { await a.close(); await b.close() })
  const proxy = await startTcpProxy(a.port)
  t.teardown(proxy.close)
  const ada = join('v3', `ws://127.0.0.1:${proxy.port}/ws/document`, 'roam', await signToken({ sub: 'ada' }), 'Ada')
  const onA = join('v3', a.url, 'roam', await signToken({ sub: 'bob' }), 'Bob')
  const onB = join('v3', b.url, 'roam', await signToken({ sub: 'cleo' }), 'Cleo')
  t.teardown(() => { ada.destroy(); onA.destroy(); onB.destroy() })
  // The load balancer's node a "dies" for this client: it reconnects, and lands on node b.
  await cutAndWatch(t, [onA, onB], ada, () => proxy.retarget(b.port))
})

t.test('presence of someone who really left disappears promptly', async t => {
  const ts = await startTestServer({ LOG_LEVEL: 'warn' })
  t.teardown(ts.close)
  const proxy = await startTcpProxy(ts.port)
  t.teardown(proxy.close)
  const bob = join('v3', ts.url, 'leave', await signToken({ sub: 'bob' }), 'Bob')
  const ada = join('v3', ts.url, 'leave', await signToken({ sub: 'ada' }), 'Ada')
  const cleo = join('v3', `ws://127.0.0.1:${proxy.port}/ws/document`, 'leave', await signToken({ sub: 'cleo' }), 'Cleo')
  t.teardown(() => { bob.destroy(); cleo.destroy() })
  await waitFor(() => sees(bob, ada) && sees(bob, cleo), 'bob sees both')

  // Closing a tab: the provider removes its own state, then the socket closes.
  const left = Date.now()
  ada.provider.awareness.setLocalState(null)
  ada.destroy()
  await waitFor(() => !sees(bob, ada), 'ada is gone for bob')
  t.ok(Date.now() - left < 1_000, `gone within a second (${Date.now() - left} ms)`)

  // A connection that drops and never comes back: gone once the grace period (3 s) has passed.
  cleo.provider.disconnect()
  const dropped = Date.now()
  proxy.retarget(1)
  await waitFor(() => !sees(bob, cleo), 'cleo is gone for bob', 10_000)
  t.ok(Date.now() - dropped < 5_000, `gone within the grace period (${Date.now() - dropped} ms)`)
})

t.test('idle people stay present past the 30 s presence timeout; one whose network vanished is gone for newcomers', { timeout: 150_000 }, async t => {
  const ts = await startTestServer({ LOG_LEVEL: 'warn' })
  t.teardown(ts.close)
  const proxy = await startTcpProxy(ts.port)
  t.teardown(proxy.close)
  const ada = join('v3', `ws://127.0.0.1:${proxy.port}/ws/document`, 'idle-presence', await signToken({ sub: 'ada' }), 'Ada')
  const bob = join('v4', ts.url, 'idle-presence', await signToken({ sub: 'bob' }), 'Bob')
  t.teardown(() => { ada.destroy(); bob.destroy() })
  await waitFor(() => sees(bob, ada) && sees(ada, bob), 'they see each other')

  // Nobody moves for longer than the timeout: the stock providers renew their state every 15 s.
  await sleep(40_000)
  t.ok(sees(bob, ada) && sees(ada, bob), 'they still see each other')
  const newcomer = join('v1', ts.url, 'idle-presence', await signToken({ sub: 'cy' }), 'Cy')
  await waitFor(() => sees(newcomer, ada) && sees(newcomer, bob), 'a newcomer is shown both: the server kept their renewed states')
  newcomer.destroy()

  // Ada's network vanishes without a close: only the server's timeout can tell.
  proxy.partition()
  await sleep(36_000)
  t.notOk(sees(bob, ada), 'Bob no longer sees Ada')
  const late = join('v3', ts.url, 'idle-presence', await signToken({ sub: 'dee' }), 'Dee')
  t.teardown(() => late.destroy())
  await waitFor(() => sees(late, bob), 'a later newcomer is shown Bob')
  t.notOk(sees(late, ada), 'and not Ada: the server dropped her state when it was no longer renewed')
})
