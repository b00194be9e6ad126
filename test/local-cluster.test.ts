import { spawnSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { startLocalCluster, type LocalCluster } from '../scripts/cluster-topology.js'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { TEST_SECRET, signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

async function start (t: Test, postgres = false): Promise<LocalCluster> {
  const cluster = await startLocalCluster({ env: { JWT_SECRET: TEST_SECRET, FLUSH_INTERVAL_MS: '100', BRIDGE_HEARTBEAT_MS: '200' }, postgres })
  t.teardown(cluster.stop)
  return cluster
}

async function clientsThroughLb (cluster: LocalCluster, docId: string, count: number): Promise<TestClient[]> {
  const clients: TestClient[] = []
  for (let i = 0; i < count; i++) clients.push(await connectSynced(`ws://127.0.0.1:${cluster.port}/ws/document`, docId, await signToken({ sub: `u${i}` })))
  return clients
}

/** Every client pushes one entry every 25 ms while `during` runs; returns how many each pushed. */
async function editWhile (clients: TestClient[], during: () => Promise<void>): Promise<number> {
  let rounds = 0
  let running = true
  const loop = (async () => {
    while (running) {
      clients.forEach((c, i) => c.doc.getArray('log').push([`${i}:${rounds}`]))
      rounds++
      await sleep(25)
    }
  })()
  await during()
  await sleep(300)
  running = false
  await loop
  return rounds
}

async function expectComplete (t: Test, clients: TestClient[], total: number): Promise<void> {
  await waitFor(() => clients.every(c => c.doc.getArray('log').length === total), `all ${total} edits on every client`, 30_000)
  const reference = JSON.stringify(clients[0]!.doc.getArray('log').toJSON())
  t.ok(clients.every(c => JSON.stringify(c.doc.getArray('log').toJSON()) === reference), 'identical on every client')
}

t.test('through HAProxy: clients converge; SIGTERM and then kill -9 of a node move its clients with nothing lost', async t => {
  const cluster = await start(t)
  const clients = await clientsThroughLb(cluster, 'lb-doc', 6)
  t.teardown(() => clients.forEach(c => c.destroy()))
  clients.forEach((c, i) => c.doc.getText('t').insert(0, `${i}`))
  await waitFor(() => clients.every(c => c.text().length === 6), 'text convergence through the load balancer')

  let rounds = await editWhile(clients, async () => {
    await sleep(300)
    await cluster.stopNode(0, 'SIGTERM')
    await sleep(600)
  })
  await expectComplete(t, clients, rounds * clients.length)
  const afterTerm = rounds * clients.length

  rounds = await editWhile(clients, async () => {
    await sleep(300)
    await cluster.stopNode(1, 'SIGKILL')
    await sleep(1200)
  })
  await expectComplete(t, clients, afterTerm + rounds * clients.length)
})

for (const postgres of [false, true]) {
t.test(`a rolling restart of all three nodes under load loses nothing (documents in ${postgres ? 'PostgreSQL: npm run cluster with CLUSTER_POSTGRES=true' : 'Redis'})`, async t => {
  const cluster = await start(t, postgres)
  const clients = await clientsThroughLb(cluster, 'rolling', 6)
  t.teardown(() => clients.forEach(c => c.destroy()))
  const rounds = await editWhile(clients, async () => {
    for (let i = 0; i < cluster.nodes.length; i++) {
      await cluster.stopNode(i, 'SIGTERM')
      await cluster.startNode(i)
      await sleep(300)
    }
  })
  await expectComplete(t, clients, rounds * clients.length)

  // And it is all stored: a new client after every node restarted once more sees everything.
  clients.forEach(c => c.destroy())
  await sleep(300)
  // With PostgreSQL, Redis holds nothing the documents need: wiping it must change nothing.
  if (postgres) t.equal(spawnSync('redis-cli', ['-p', String(cluster.redisPort), 'FLUSHALL'], { encoding: 'utf8' }).stdout.trim(), 'OK', 'Redis wiped')
  for (let i = 0; i < cluster.nodes.length; i++) {
    await cluster.stopNode(i, 'SIGTERM')
    await cluster.startNode(i)
  }
  const reader = await connectSynced(`ws://127.0.0.1:${cluster.port}/ws/document`, 'rolling', await signToken())
  t.teardown(() => reader.destroy())
  t.equal(reader.doc.getArray('log').length, rounds * 6, `every edit reloads from ${postgres ? 'PostgreSQL' : 'Redis'}`)
})
}
