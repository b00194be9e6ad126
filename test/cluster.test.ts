import t from 'tap'
import * as Y from 'yjs'
import { decodeEnvelope, EnvelopeKind } from '../src/cluster/envelope.js'
import { connectClient, connectSynced, type TestClient } from './helpers/clients.js'
import { LossyPubSub } from './helpers/lossy-pubsub.js'
import { metricValue, scrape } from './helpers/metrics.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

async function startNodes (redisUrl: string, count: number, env: Record<string, string> = {}, pubsubs: LossyPubSub[] = []): Promise<TestServer[]> {
  const nodes: TestServer[] = []
  for (let i = 0; i < count; i++) {
    const lossy = pubsubs[i]
    nodes.push(await startTestServer({ REDIS_URL: redisUrl, NODE_ID: `node-${i}`, BRIDGE_HEARTBEAT_MS: '200', ...env }, lossy === undefined ? {} : { wrapPubSub: lossy.wrap }))
  }
  return nodes
}

function allEqual (clients: TestClient[], read: (c: TestClient) => unknown): boolean {
  const first = JSON.stringify(read(clients[0]!))
  return clients.every(c => JSON.stringify(read(c)) === first)
}

t.test('three nodes: clients spread over them converge; awareness and participants cross nodes', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const nodes = await startNodes(redis.url, 3)
  t.teardown(async () => { for (const n of nodes) await n.close() })

  const clients: TestClient[] = []
  for (let i = 0; i < 6; i++) {
    clients.push(await connectSynced(nodes[i % 3]!.url, 'spread', await signToken({ sub: `user-${i}` })))
  }
  t.teardown(() => clients.forEach(c => c.destroy()))

  for (let round = 0; round < 20; round++) {
    clients.forEach((c, i) => c.doc.getArray('log').push([`${i}:${round}`]))
  }
  clients[0]!.doc.getText('t').insert(0, 'hello ')
  clients[4]!.doc.getText('t').insert(0, 'world ')
  await waitFor(() => clients.every(c => c.doc.getArray('log').length === 120) && allEqual(clients, c => c.doc.getArray('log').toJSON()) && allEqual(clients, c => c.text()), 'convergence across nodes')
  t.equal(clients[0]!.doc.getArray('log').length, 120)
  t.equal(clients[3]!.text().length, 12)

  // Awareness set on node 0 shows up on node 1 and node 2.
  clients[0]!.provider.awareness.setLocalStateField('user', { name: 'Ada' })
  const seesAda = (c: TestClient): boolean => (c.provider.awareness.getStates().get(clients[0]!.doc.clientID) as any)?.user?.name === 'Ada'
  await waitFor(() => seesAda(clients[1]!) && seesAda(clients[2]!), 'awareness crosses nodes')

  // A newcomer on another node sees the presence of clients on other nodes.
  const late = await connectSynced(nodes[2]!.url, 'spread', await signToken({ sub: 'late' }))
  t.teardown(() => late.destroy())
  await waitFor(() => seesAda(late), 'newcomer sees remote presence')

  // Removal crosses nodes too.
  clients[0]!.provider.disconnect()
  await waitFor(() => !clients[1]!.provider.awareness.getStates().has(clients[0]!.doc.clientID) && !clients[2]!.provider.awareness.getStates().has(clients[0]!.doc.clientID), 'removal crosses nodes')

  // The cluster-wide participant list.
  const token = await signToken({ sub: 'auditor' })
  await waitFor(async () => {
    const res = await fetch(`http://127.0.0.1:${nodes[1]!.port}/documents/spread/participants`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.json() as { participants: Array<{ userId: string; nodeId: string }> }
    const users = new Set(body.participants.map(p => p.userId))
    const nodeIds = new Set(body.participants.map(p => p.nodeId))
    return users.has('user-1') && users.has('user-5') && users.has('late') && !users.has('user-0') && nodeIds.size === 3
  }, 'participant list spans nodes')
  const denied = await fetch(`http://127.0.0.1:${nodes[1]!.port}/documents/spread/participants`)
  t.equal(denied.status, 401, 'participants endpoint needs a token')
  const scoped = await signToken({ docs: { other: 'read-write' } })
  const forbidden = await fetch(`http://127.0.0.1:${nodes[1]!.port}/documents/spread/participants`, { headers: { authorization: `Bearer ${scoped}` } })
  t.equal(forbidden.status, 403, 'and access to the document')
})

t.test('a dropped bridge message is repaired by gap detection, without any client reconnecting', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  // Node a's update envelopes can be lost on their way to Redis.
  const lossy = new LossyPubSub(message => decodeEnvelope(message)?.t === EnvelopeKind.Update)
  const [a, b] = await startNodes(redis.url, 2, {}, [lossy])
  t.teardown(async () => { await a!.close(); await b!.close() })
  const token = await signToken()
  const onA = await connectSynced(a!.url, 'lossy', token)
  const onB = await connectSynced(b!.url, 'lossy', token)
  t.teardown(() => { onA.destroy(); onB.destroy() })
  let reconnects = 0
  onB.provider.on('status', (e: { status: string }) => { if (e.status === 'connecting') reconnects++ })

  onA.doc.getText('t').insert(0, 'first ')
  await waitFor(() => onB.text() === 'first ', 'first update crosses')

  // The last message is lost: only the heartbeat can reveal it.
  lossy.dropNext()
  onA.doc.getText('t').insert(6, 'lost ')
  await sleep(100)
  t.equal(onB.text(), 'first ', 'the dropped update did not arrive by itself')
  await waitFor(() => onB.text() === 'first lost ', 'heartbeat gap repaired it')

  // A lost message in the middle of a stream is caught by the next sequence number.
  lossy.dropNext()
  onA.doc.getText('t').insert(11, 'middle ')
  onA.doc.getText('t').insert(18, 'next ')
  await waitFor(() => onB.text() === 'first lost middle next ', 'sequence gap repaired it')
  t.ok(metricValue((await scrape(b!.port)).text, 'collab_bridge_gaps_total') >= 2, 'gaps were detected')
  t.equal(reconnects, 0, 'no client reconnected')
})

t.test('every node restarted with Redis kept: all content loads intact from Redis', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  let nodes = await startNodes(redis.url, 3)
  const token = await signToken()
  const clients = await Promise.all(nodes.map(async (n, i) => await connectSynced(n.url, `doc-${i % 2}`, token)))
  clients.forEach((c, i) => { for (let k = 0; k < 30; k++) c.doc.getArray('items').push([`${i}-${k}`]) })
  await waitFor(() => clients[0]!.doc.getArray('items').length === 60 && clients[2]!.doc.getArray('items').length === 60, 'doc-0 converged')
  const expected0 = clients[0]!.doc.getArray('items').toJSON().sort()
  const expected1 = clients[1]!.doc.getArray('items').toJSON().sort()
  clients.forEach(c => c.destroy())
  for (const n of nodes) await n.close()

  nodes = await startNodes(redis.url, 3)
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const fresh0 = await connectSynced(nodes[2]!.url, 'doc-0', token)
  const fresh1 = await connectSynced(nodes[0]!.url, 'doc-1', token)
  t.teardown(() => { fresh0.destroy(); fresh1.destroy() })
  t.same(fresh0.doc.getArray('items').toJSON().sort(), expected0)
  t.same(fresh1.doc.getArray('items').toJSON().sort(), expected1)
})

t.test('Redis down for seconds during edits on two nodes: nothing lost, readiness false then true', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const [a, b] = await startNodes(redis.url, 2, { STORE_RETRY_MAX_MS: '300' })
  t.teardown(async () => { await a!.close(); await b!.close() })
  const token = await signToken()
  const onA = await connectSynced(a!.url, 'outage', token)
  const onB = await connectSynced(b!.url, 'outage', token)
  t.teardown(() => { onA.destroy(); onB.destroy() })
  onA.doc.getArray('x').push(['before'])
  await waitFor(() => onB.doc.getArray('x').length === 1, 'pre-outage sync')
  t.equal((await a!.server.readiness()).ready, true)

  await redis.stop('SIGKILL')
  await waitFor(async () => !(await a!.server.readiness()).ready && !(await b!.server.readiness()).ready, 'both nodes not ready')
  for (let i = 0; i < 25; i++) {
    onA.doc.getArray('x').push([`a${i}`])
    onB.doc.getArray('x').push([`b${i}`])
    await sleep(40)
  }
  await sleep(1500)
  await redis.start()
  await waitFor(async () => (await a!.server.readiness()).ready && (await b!.server.readiness()).ready, 'both nodes ready again', 20_000)
  await waitFor(() => onA.doc.getArray('x').length === 51 && onB.doc.getArray('x').length === 51, 'convergence after outage', 20_000)
  t.same(onA.doc.getArray('x').toJSON(), onB.doc.getArray('x').toJSON())

  // Durable in Redis: a third node loads it all from the store alone after the others flushed.
  await sleep(300)
  const [c] = await startNodes(redis.url, 1, { NODE_ID: 'node-c' })
  t.teardown(async () => { await c!.close() })
  onA.destroy(); onB.destroy()
  await a!.close(); await b!.close()
  const fresh = await connectSynced(c!.url, 'outage', token)
  t.teardown(() => fresh.destroy())
  t.equal(fresh.doc.getArray('x').length, 51, 'every edit made during the outage reached Redis')
})

t.test('a node that loads a document others hold gets their unflushed updates', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  // Node a never flushes on its own (1 min interval): the content exists only in its memory.
  const [a] = await startNodes(redis.url, 1, { FLUSH_INTERVAL_MS: '60000' })
  const [b] = await startNodes(redis.url, 1, { NODE_ID: 'node-b' })
  t.teardown(async () => { await a!.close(); await b!.close() })
  const token = await signToken()
  const onA = await connectSynced(a!.url, 'unflushed', token)
  t.teardown(() => onA.destroy())
  onA.doc.getText('t').insert(0, 'only in node a memory')
  await sleep(200)
  const onB = connectClient(b!.url, 'unflushed', token)
  t.teardown(() => onB.destroy())
  await waitFor(() => onB.text() === 'only in node a memory', 'b learns it from a')
  t.pass()
})

t.test('server documents on all nodes are identical after concurrent edits', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const nodes = await startNodes(redis.url, 3)
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const token = await signToken()
  const clients = await Promise.all(nodes.map(async n => await connectSynced(n.url, 'same', token)))
  t.teardown(() => clients.forEach(c => c.destroy()))
  for (let i = 0; i < 50; i++) clients.forEach((c, k) => c.doc.getText('t').insert(0, `${k}`))
  await waitFor(() => nodes.every(n => n.server.registry.get('same')?.ydoc.getText('t').length === 150), 'all server docs complete')
  const states = nodes.map(n => Y.encodeStateVector(n.server.registry.get('same')!.ydoc))
  t.same(states[0], states[1])
  t.same(states[1], states[2])
})

t.test('unload/reload races across nodes lose nothing (4 nodes, repeated joins and leaves)', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  // Documents unload 30 ms after their last client leaves, so loads and unloads interleave with edits.
  const nodes = await startNodes(redis.url, 4, { DOC_IDLE_UNLOAD_MS: '30', FLUSH_INTERVAL_MS: '40' })
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const token = await signToken()
  const steady = await connectSynced(nodes[0]!.url, 'churn', token)
  t.teardown(() => steady.destroy())
  let expected = 0
  for (let round = 0; round < 12; round++) {
    // A visitor joins another node (loading the document there), edits, and leaves (unloading it).
    const node = nodes[1 + (round % 3)]!
    const visitor = await connectSynced(node.url, 'churn', token)
    visitor.doc.getArray('log').push([`visitor-${round}`])
    steady.doc.getArray('log').push([`steady-${round}`])
    expected += 2
    await waitFor(() => visitor.doc.getArray('log').length === expected, `visitor ${round} sees everything`)
    visitor.destroy()
    await sleep(round % 2 === 0 ? 10 : 80)
  }
  await waitFor(() => steady.doc.getArray('log').length === expected, 'steady client has everything')
  // Every node, loading it fresh from Redis plus its peers, has every edit.
  steady.destroy()
  await sleep(300)
  for (const node of nodes) {
    const check = await connectSynced(node.url, 'churn', token)
    t.equal(check.doc.getArray('log').length, expected, `complete when reloaded on ${node.server.nodeId}`)
    check.destroy()
  }
})

t.test('a document whose channel stays broken takes the node out of rotation: /readyz 503, the gauge and the inspector say so, until it works again', { timeout: 90_000 }, async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const lossy = new LossyPubSub()
  const [a, b] = await startNodes(redis.url, 2, {}, [lossy])
  t.teardown(async () => { await a!.close(); await b!.close() })
  const token = await signToken({ sub: 'writer' })
  const onA = await connectSynced(a!.url, 'stranded', token)
  const onB = await connectSynced(b!.url, 'stranded', token)
  t.teardown(() => { onA.destroy(); onB.destroy() })
  onA.doc.getArray('log').push(['before'])
  await waitFor(() => onB.doc.getArray('log').length === 1, 'edits cross')

  lossy.cutSubscriptions(channel => channel.includes('{stranded}'))
  onB.doc.getArray('log').push(['while stranded'])
  const admin = await signToken({ sub: 'ops', extra: { admin: true } })
  const started = Date.now()
  await waitFor(async () => (await fetch(`http://127.0.0.1:${a!.port}/readyz`)).status === 503, 'node a answers 503', 30_000)
  t.ok(Date.now() - started >= 9_000, `not ready only once the break lasted (${Date.now() - started} ms)`)
  t.equal((await fetch(`http://127.0.0.1:${b!.port}/readyz`)).status, 200, 'node b, whose channel works, stays ready')
  t.equal(metricValue((await scrape(a!.port, admin)).text, 'collab_bridge_broken_documents'), 1, 'the gauge counts the document')
  const inspect = await (await fetch(`http://127.0.0.1:${a!.port}/inspect.json`, { headers: { authorization: `Bearer ${admin}` } })).json() as { self: { documents: Array<{ docId: string, bridgeBroken: boolean }> } }
  t.equal(inspect.self.documents.find(d => d.docId === 'stranded')?.bridgeBroken, true, 'the inspector marks it')

  lossy.heal()
  await waitFor(async () => (await fetch(`http://127.0.0.1:${a!.port}/readyz`)).status === 200, 'ready again once the channel works', 15_000)
  await waitFor(() => onA.doc.getArray('log').length === 2, 'what a missed arrives with the re-sync')
  await waitFor(async () => metricValue((await scrape(a!.port, admin)).text, 'collab_bridge_broken_documents') === 0, 'the gauge back at 0')
})
