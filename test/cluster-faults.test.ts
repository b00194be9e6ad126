import t from 'tap'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { spawnServer, type ServerProcess } from './helpers/process.js'
import { startRedis, startRedisCluster } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { startTcpProxy } from './helpers/tcp-proxy.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

async function participants (port: number, docId: string): Promise<Array<{ userId: string; nodeId: string }>> {
  const token = await signToken({ sub: 'auditor' })
  const res = await fetch(`http://127.0.0.1:${port}/documents/${docId}/participants`, { headers: { authorization: `Bearer ${token}` } })
  const body = await res.json() as { participants: Array<{ userId: string; nodeId: string }> }
  return body.participants
}

t.test('kill -9 of one node during continuous edits: its clients move on, nothing is lost, its participants vanish', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const env = { REDIS_URL: redis.url, FLUSH_INTERVAL_MS: '100', PARTICIPANT_TTL_SECONDS: '3', BRIDGE_HEARTBEAT_MS: '200' }
  const nodes: ServerProcess[] = []
  for (const id of ['victim', 'b', 'c']) nodes.push(await spawnServer({ ...env, NODE_ID: id }))
  t.teardown(() => nodes.forEach(n => n.kill('SIGKILL')))
  const [victim, b, c] = nodes as [ServerProcess, ServerProcess, ServerProcess]
  // The clients of the victim go through a load balancer, as in production.
  const lb = await startTcpProxy(victim.port)
  t.teardown(lb.close)

  const clients: TestClient[] = [
    await connectSynced(`ws://127.0.0.1:${lb.port}/ws/document`, 'busy', await signToken({ sub: 'on-victim-1' })),
    await connectSynced(`ws://127.0.0.1:${lb.port}/ws/document`, 'busy', await signToken({ sub: 'on-victim-2' })),
    await connectSynced(b.url, 'busy', await signToken({ sub: 'on-b' })),
    await connectSynced(c.url, 'busy', await signToken({ sub: 'on-c' }))
  ]
  t.teardown(() => clients.forEach(cl => cl.destroy()))
  await waitFor(async () => (await participants(b.port, 'busy')).some(p => p.nodeId === 'victim'), 'victim participants listed')

  let sent = 0
  let killed = false
  const deadline = Date.now() + 2500
  while (Date.now() < deadline) {
    clients.forEach((cl, i) => { cl.doc.getArray('log').push([`${i}:${sent}`]) })
    sent++
    if (!killed && Date.now() > deadline - 1500) {
      killed = true
      victim.kill('SIGKILL')
      lb.retarget(b.port)
    }
    await sleep(20)
  }
  const total = sent * clients.length
  await waitFor(() => clients.every(cl => cl.doc.getArray('log').length === total), `all ${total} edits everywhere`, 30_000)
  const reference = JSON.stringify(clients[0]!.doc.getArray('log').toJSON())
  for (const cl of clients) t.equal(JSON.stringify(cl.doc.getArray('log').toJSON()), reference)
  t.equal(await victim.exited, 'SIGKILL')

  await waitFor(async () => {
    const list = await participants(c.port, 'busy')
    return !list.some(p => p.nodeId === 'victim') && list.some(p => p.userId === 'on-victim-1' && p.nodeId === 'b')
  }, 'victim participants vanished and reappeared on b', 15_000)
  t.pass('participants of the dead node vanished')

  // And it is all in Redis: a brand-new node loads the full document from the store.
  for (const cl of clients) cl.destroy()
  await sleep(400)
  b.kill('SIGTERM'); c.kill('SIGTERM')
  t.equal(await b.exited, 0)
  t.equal(await c.exited, 0)
  const fresh = await spawnServer({ ...env, NODE_ID: 'fresh' })
  t.teardown(() => fresh.kill('SIGKILL'))
  const reader = await connectSynced(fresh.url, 'busy', await signToken())
  t.teardown(() => reader.destroy())
  t.equal(reader.doc.getArray('log').length, total, 'store holds every edit')
  fresh.kill('SIGTERM')
  await fresh.exited
})

t.test('participants: a node restarted under the same NODE_ID after kill -9 does not bring back the users it had', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const env = { REDIS_URL: redis.url, PARTICIPANT_TTL_SECONDS: '3' }
  let restarted = await spawnServer({ ...env, NODE_ID: 'same-id' })
  const other = await spawnServer({ ...env, NODE_ID: 'other' })
  t.teardown(() => { restarted.kill('SIGKILL'); other.kill('SIGKILL') })
  const gone = await connectSynced(restarted.url, 'roster', await signToken({ sub: 'was-here' }))
  t.teardown(() => gone.destroy())
  await waitFor(async () => (await participants(other.port, 'roster')).some(p => p.userId === 'was-here'), 'listed while connected')
  restarted.kill('SIGKILL')
  await restarted.exited
  gone.destroy()
  restarted = await spawnServer({ ...env, NODE_ID: 'same-id' })
  const stays = await connectSynced(restarted.url, 'elsewhere', await signToken({ sub: 'on-restarted' }))
  t.teardown(() => stays.destroy())
  await waitFor(async () => (await participants(other.port, 'elsewhere')).some(p => p.userId === 'on-restarted'), 'the restarted node lists its new participants')
    .catch(async err => { throw new Error(`${(err as Error).message}: ${JSON.stringify(await participants(other.port, 'elsewhere'))}`) })
  await waitFor(async () => !(await participants(other.port, 'roster')).some(p => p.userId === 'was-here'), 'the user of the killed run is gone within PARTICIPANT_TTL_SECONDS', 10_000)
})

t.test('three nodes converge against a 3-master Redis Cluster (sharded pub/sub)', async t => {
  const cluster = await startRedisCluster(3)
  t.teardown(cluster.cleanup)
  const env = { REDIS_CLUSTER_NODES: cluster.nodeList, BRIDGE_HEARTBEAT_MS: '200' }
  let nodes: TestServer[] = []
  for (let i = 0; i < 3; i++) nodes.push(await startTestServer({ ...env, NODE_ID: `rc-${i}` }))
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const token = await signToken()
  // Several documents, so their keys and channels land on different shards.
  const docIds = ['alpha', 'bravo', 'charlie', 'delta', 'echo']
  const clients: Array<{ docId: string; client: TestClient }> = []
  for (const docId of docIds) {
    for (let i = 0; i < 3; i++) clients.push({ docId, client: await connectSynced(nodes[i]!.url, docId, token) })
  }
  t.teardown(() => clients.forEach(c => c.client.destroy()))
  clients.forEach(({ client }, i) => { for (let k = 0; k < 10; k++) client.doc.getArray('a').push([`${i}-${k}`]) })
  await waitFor(() => clients.every(({ client }) => client.doc.getArray('a').length === 30), 'each document converged on all nodes', 20_000)
  for (const docId of docIds) {
    const group = clients.filter(c => c.docId === docId).map(c => JSON.stringify(c.client.doc.getArray('a').toJSON()))
    t.ok(group.every(g => g === group[0]), `${docId} identical on every node`)
  }

  // Restart every node: the content comes back from the Redis Cluster.
  clients.forEach(c => c.client.destroy())
  for (const n of nodes) await n.close()
  nodes = []
  for (let i = 0; i < 3; i++) nodes.push(await startTestServer({ ...env, NODE_ID: `rc2-${i}` }))
  for (const docId of docIds) {
    const fresh = await connectSynced(nodes[docIds.indexOf(docId) % 3]!.url, docId, token)
    t.equal(fresh.doc.getArray('a').length, 30, `${docId} reloaded from the cluster`)
    fresh.destroy()
  }
})
