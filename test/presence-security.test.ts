import t from 'tap'
import { CloseCode } from '../src/protocol/close-codes.js'
import { awarenessFrame, type AwarenessEntry as Entry } from './helpers/awareness.js'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { rawClient, type RawClient } from './helpers/raw-socket.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// Presence (awareness) as an attacker with a valid, even read-only, token would abuse it: states
// that break encoders, other people's client ids, floods of entries. Honest stock clients on the
// same document must not notice.


async function attacker (ts: TestServer, docId: string, sub = 'mallory', access = 'read-only'): Promise<RawClient> {
  const token = await signToken({ sub, docs: { [docId]: access } })
  const raw = rawClient(`${ts.url}/${docId}?token=${token}`)
  await raw.opened
  return raw
}

async function person (ts: TestServer, docId: string, name: string): Promise<TestClient> {
  const client = await connectSynced(ts.url, docId, await signToken({ sub: name }))
  client.provider.awareness.setLocalStateField('user', name)
  return client
}

/** An awareness message with entries (not the keep-alive, which has none). */
const isPresence = (m: Uint8Array): boolean => m[0] === 1 && !(m.length === 3 && m[2] === 0)

const stateOf = (viewer: TestClient, of: TestClient): unknown => viewer.provider.awareness.getStates().get(of.doc.clientID)

t.test('a deeply nested or oversized state closes its sender with 4413, and later joins still work', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const alice = await person(ts, 'deep', 'alice')
  t.teardown(() => alice.destroy())

  const deep = await attacker(ts, 'deep')
  deep.ws.send(awarenessFrame([[424242, 5, '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000)]]))
  t.equal((await deep.closed).code, CloseCode.PresenceTooLarge, 'nested 20,000 levels: 4413')

  const big = await attacker(ts, 'deep')
  big.ws.send(awarenessFrame([[434343, 5, JSON.stringify({ blob: 'x'.repeat(70 * 1024) })]]))
  t.equal((await big.closed).code, CloseCode.PresenceTooLarge, 'a 70 KiB state: 4413')

  const bob = await person(ts, 'deep', 'bob')
  t.teardown(() => bob.destroy())
  await waitFor(() => (stateOf(bob, alice) as { user?: string } | undefined)?.user === 'alice', 'the next joiner sees alice')
  t.notOk(bob.provider.awareness.getStates().has(424242), 'nothing of the refused states was stored')
  t.notOk(bob.provider.awareness.getStates().has(434343))
  t.ok(alice.provider.wsconnected && bob.provider.wsconnected, 'honest clients connected')

  const querier = await attacker(ts, 'deep', 'carol', 'read-write')
  querier.ws.send(Uint8Array.of(3))
  await waitFor(() => querier.messages.some(isPresence), 'query-awareness answered')
})

t.test('MAX_AWARENESS_STATE_BYTES and MAX_AWARENESS_STATE_DEPTH are the limits', async t => {
  const ts = await startTestServer({ MAX_AWARENESS_STATE_BYTES: '256', MAX_AWARENESS_STATE_DEPTH: '3' })
  t.teardown(ts.close)
  const fine = await attacker(ts, 'limits', 'dave', 'read-write')
  fine.ws.send(awarenessFrame([[1, 1, JSON.stringify({ a: { b: { c: 'x'.repeat(100) } } })]]))
  const deeper = await attacker(ts, 'limits', 'erin', 'read-write')
  deeper.ws.send(awarenessFrame([[2, 1, JSON.stringify({ a: { b: { c: {} } } })]]))
  t.equal((await deeper.closed).code, CloseCode.PresenceTooLarge, 'four levels over a limit of three')
  const larger = await attacker(ts, 'limits', 'frank', 'read-write')
  larger.ws.send(awarenessFrame([[3, 1, JSON.stringify({ a: 'x'.repeat(300) })]]))
  t.equal((await larger.closed).code, CloseCode.PresenceTooLarge, '300 bytes over a limit of 256')
  await sleep(100)
  t.equal(fine.ws.readyState, fine.ws.OPEN, 'a state within both limits is accepted')
})

t.test('nobody can forge or remove another user\'s presence; a user may take its own id back', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const alice = await person(ts, 'forge', 'alice')
  const bob = await person(ts, 'forge', 'bob')
  t.teardown(() => { alice.destroy(); bob.destroy() })
  await waitFor(() => (stateOf(bob, alice) as { user?: string } | undefined)?.user === 'alice', 'bob sees alice')

  const mallory = await attacker(ts, 'forge')
  const victim = alice.doc.clientID
  mallory.ws.send(awarenessFrame([[victim, 1_000_000, JSON.stringify({ user: 'forged' })]]))
  mallory.ws.send(awarenessFrame([[victim, 1_000_001, 'null']]))
  await sleep(300)
  t.same(stateOf(bob, alice), { user: 'alice' }, 'bob still sees alice as she is')
  t.same(alice.provider.awareness.getLocalState(), { user: 'alice' }, 'alice\'s own state was not replaced')
  t.equal(mallory.ws.readyState, mallory.ws.OPEN, 'dropped, not closed: the stock provider echoes states it receives')

})

t.test('a user\'s reconnect takes its id back; its other open tabs echoing that state do not', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const bob = await person(ts, 'tabs', 'bob')
  t.teardown(() => bob.destroy())
  const token = await signToken({ sub: 'alice' })
  const id = 424_242
  const seen = (): string | undefined => (bob.provider.awareness.getStates().get(id) as { user?: string } | undefined)?.user
  const tab1 = rawClient(`${ts.url}/tabs?token=${token}`)
  await tab1.opened
  tab1.ws.send(awarenessFrame([[id, 1, JSON.stringify({ user: 'alice' })]]))
  await waitFor(() => seen() === 'alice', 'bob sees alice\'s first tab')

  // A second tab of alice's announces its own id, then echoes the first tab's state (the stock
  // provider echoes what it receives), then closes: the first tab's presence stays.
  const tab2 = rawClient(`${ts.url}/tabs?token=${token}`)
  await tab2.opened
  tab2.ws.send(awarenessFrame([[id + 1, 1, JSON.stringify({ user: 'alice, tab 2' })]]))
  tab2.ws.send(awarenessFrame([[id, 1, JSON.stringify({ user: 'alice' })]]))
  await sleep(100)
  tab2.ws.close()
  await sleep(3_500)
  t.equal(seen(), 'alice', 'the echo did not take the id away from the open tab')

  // The first tab's connection drops; its provider reconnects with the same id and clock.
  tab1.ws.terminate()
  const again = rawClient(`${ts.url}/tabs?token=${token}`)
  await again.opened
  again.ws.send(awarenessFrame([[id, 1, JSON.stringify({ user: 'alice' })]]))
  again.ws.send(awarenessFrame([[id, 2, JSON.stringify({ user: 'alice, reconnected' })]]))
  await waitFor(() => seen() === 'alice, reconnected', 'the reconnect took the id over')
  await sleep(3_500)
  t.equal(seen(), 'alice, reconnected', 'and the old connection\'s delayed removal spared it')
  again.ws.close()
})

t.test('a connection announcing more client ids than it may is closed; a document holds a bounded number', async t => {
  const ts = await startTestServer({ MAX_AWARENESS_ENTRIES_PER_DOCUMENT: '3' })
  t.teardown(ts.close)
  const alice = await person(ts, 'flood', 'alice')
  t.teardown(() => alice.destroy())

  const flood = await attacker(ts, 'flood')
  flood.ws.send(awarenessFrame(Array.from({ length: 30_000 }, (_, i): Entry => [10_000 + i, 1, '{}'])))
  t.equal((await flood.closed).code, CloseCode.PresenceTooLarge, '30,000 client ids on one connection: 4413')

  const fillers = await Promise.all(['p', 'q', 'r', 's'].map(async (name, i) => {
    const raw = await attacker(ts, 'flood', name)
    raw.ws.send(awarenessFrame([[500 + i, 1, JSON.stringify({ n: name })]]))
    return raw
  }))
  t.teardown(() => fillers.forEach(f => f.ws.close()))
  await sleep(300)
  const present = [...alice.provider.awareness.getStates().keys()].filter(id => id >= 500 && id < 504)
  t.ok(present.length <= 2, `at most 3 entries with alice's own (${present.length} others)`)
  t.notOk(alice.provider.awareness.getStates().has(10_000), 'nothing of the flood was stored')
  t.ok(alice.provider.wsconnected, 'alice stays connected')
})

t.test('query-awareness is answered from one encoding, at most once a second per connection', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const alice = await person(ts, 'query', 'alice')
  t.teardown(() => alice.destroy())
  await sleep(100)
  const querier = await attacker(ts, 'query')
  await waitFor(() => querier.messages.some(isPresence), 'greeting with presence')
  const before = querier.messages.filter(isPresence).length
  for (let i = 0; i < 50; i++) querier.ws.send(Uint8Array.of(3))
  await sleep(300)
  const answers = querier.messages.filter(isPresence).length - before
  t.equal(answers, 0, 'fifty queries right after the greeting get no answer')
  await sleep(800)
  querier.ws.send(Uint8Array.of(3))
  await waitFor(() => querier.messages.filter(isPresence).length === before + 1, 'one answer a second later')
  querier.ws.close()
})

t.test('presence ownership holds across nodes', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const a = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'a', BRIDGE_HEARTBEAT_MS: '200' })
  const b = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'b', BRIDGE_HEARTBEAT_MS: '200' })
  t.teardown(async () => { await a.close(); await b.close() })
  const alice = await person(a, 'nodes', 'alice')
  const bob = await person(b, 'nodes', 'bob')
  t.teardown(() => { alice.destroy(); bob.destroy() })
  await waitFor(() => (stateOf(bob, alice) as { user?: string } | undefined)?.user === 'alice', 'bob on node b sees alice on node a')

  const mallory = await attacker(b, 'nodes')
  mallory.ws.send(awarenessFrame([[alice.doc.clientID, 1_000_000, JSON.stringify({ user: 'forged' })]]))
  const onA = await attacker(a, 'nodes', 'mallory-2')
  onA.ws.send(awarenessFrame([[bob.doc.clientID, 1_000_000, 'null']]))
  await sleep(500)
  t.same(stateOf(bob, alice), { user: 'alice' }, 'node b refused to forge a user of node a')
  t.same(stateOf(alice, bob), { user: 'bob' }, 'node a refused to remove a user of node b')
  mallory.ws.close()
  onA.ws.close()
})

t.test('a document\'s presence is bounded in bytes, so what every join receives stays small', async t => {
  const ts = await startTestServer({ MAX_AWARENESS_BYTES_PER_DOCUMENT: '3000' })
  t.teardown(ts.close)
  const big = JSON.stringify({ pad: 'x'.repeat(1_000) })
  const senders = await Promise.all(['p', 'q', 'r', 's'].map(async (name, i) => {
    const raw = await attacker(ts, 'budget', name)
    raw.ws.send(awarenessFrame([[900 + i, 1, big]]))
    await sleep(50)
    return raw
  }))
  t.teardown(() => senders.forEach(s => s.ws.close()))
  await sleep(200)
  const joiner = await attacker(ts, 'budget', 'joiner', 'read-write')
  await waitFor(() => joiner.messages.some(isPresence), 'greeting with presence')
  const greeting = joiner.messages.find(isPresence)!
  t.ok(greeting.length <= 3_100, `the joiner received ${greeting.length} bytes of presence`)
  t.ok(senders.every(s => s.ws.readyState === s.ws.OPEN), 'states over the budget are dropped, their senders not closed')
  joiner.ws.close()
})

t.test('an id its owner released stays that user\'s: nobody else can claim it while they are away', async t => {
  const ts = await startTestServer({ PRESENCE_GRACE_MS: '0' })
  t.teardown(ts.close)
  const bob = await person(ts, 'away', 'bob')
  t.teardown(() => bob.destroy())
  const id = 123_456_789
  const aliceToken = await signToken({ sub: 'alice' })
  const first = rawClient(`${ts.url}/away?token=${aliceToken}`)
  await first.opened
  first.ws.send(awarenessFrame([[id, 1, JSON.stringify({ user: 'alice' })]]))
  await waitFor(() => (bob.provider.awareness.getStates().get(id) as { user?: string } | undefined)?.user === 'alice', 'bob sees alice')
  first.ws.close()
  await waitFor(() => !bob.provider.awareness.getStates().has(id), 'alice left')

  const mallory = await attacker(ts, 'away')
  mallory.ws.send(awarenessFrame([[id, 1000, JSON.stringify({ user: 'alice (forged)' })]]))
  await sleep(300)
  t.notOk(bob.provider.awareness.getStates().has(id), 'mallory could not take alice\'s released id')

  const back = rawClient(`${ts.url}/away?token=${aliceToken}`)
  await back.opened
  back.ws.send(awarenessFrame([[id, 2, JSON.stringify({ user: 'alice, back' })]]))
  await waitFor(() => (bob.provider.awareness.getStates().get(id) as { user?: string } | undefined)?.user === 'alice, back', 'alice herself can')
  back.ws.close()
  mallory.ws.close()
})
