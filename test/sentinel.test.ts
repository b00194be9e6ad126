import t from 'tap'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { startSentinelSetup } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

t.test('Redis Sentinel: nodes follow a failover to the replica and lose nothing', async t => {
  const setup = await startSentinelSetup()
  t.teardown(setup.cleanup)
  const env = { REDIS_SENTINELS: setup.sentinels, REDIS_SENTINEL_NAME: 'mymaster', BRIDGE_HEARTBEAT_MS: '200', FLUSH_INTERVAL_MS: '100', STORE_RETRY_MAX_MS: '300' }
  const nodes: TestServer[] = [await startTestServer({ ...env, NODE_ID: 's-a' }), await startTestServer({ ...env, NODE_ID: 's-b' })]
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const token = await signToken()
  const clients: TestClient[] = [await connectSynced(nodes[0]!.url, 'ha', token), await connectSynced(nodes[1]!.url, 'ha', token)]
  t.teardown(() => clients.forEach(c => c.destroy()))
  clients[0]!.doc.getArray('x').push(['before'])
  await waitFor(() => clients[1]!.doc.getArray('x').length === 1, 'converged through the master')

  await setup.master.stop('SIGKILL')
  let edits = 1
  const deadline = Date.now() + 4000
  while (Date.now() < deadline) {
    clients[edits % 2]!.doc.getArray('x').push([`e${edits}`])
    edits++
    await sleep(50)
  }
  await waitFor(() => setup.masterPort() === setup.replica.port, 'sentinel promoted the replica', 20_000)
  await waitFor(async () => (await nodes[0]!.server.readiness()).ready && (await nodes[1]!.server.readiness()).ready, 'nodes ready on the new master', 20_000)
  await waitFor(() => clients.every(c => c.doc.getArray('x').length === edits), `all ${edits} edits on both clients`, 20_000)
  t.same(clients[0]!.doc.getArray('x').toJSON(), clients[1]!.doc.getArray('x').toJSON())

  // Stored on the new master: a fresh node loads every edit.
  await sleep(500)
  const fresh = await startTestServer({ ...env, NODE_ID: 's-c' })
  nodes.push(fresh)
  for (const c of clients) c.destroy()
  await nodes[0]!.close()
  await nodes[1]!.close()
  const reader = await connectSynced(fresh.url, 'ha', token)
  t.teardown(() => reader.destroy())
  t.equal(reader.doc.getArray('x').length, edits, 'every edit is on the promoted master')
})
