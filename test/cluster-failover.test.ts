import { spawnSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { startRedisCluster, type RedisProcess } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// A Redis Cluster of 3 masters with a replica each; two server nodes; clients on both writing
// into documents on every shard. kill -9 of a master (twice, different masters): its replica
// takes over, and every document's bridge works again, nothing lost. Then the first killed master
// restarts (as a replica) and takes its slots back with a manual CLUSTER FAILOVER.

function cli (port: number, ...args: string[]): string {
  return spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).stdout
}

/** The port of the master that serves `slot` now. */
function masterOf (ports: number[], slot: number): number | null {
  for (const port of ports) {
    const lines = cli(port, 'cluster', 'nodes').split('\n')
    if (lines.length < 2) continue // not answering (killed): ask another
    for (const line of lines) {
      // id ip:port@bus flags master ping pong epoch state slot-ranges...
      const fields = line.split(' ')
      if (!fields[2]?.includes('master') || fields[2].includes('fail')) continue
      const nodePort = Number(fields[1]?.split(':')[1]?.split('@')[0])
      for (const range of fields.slice(8)) {
        const [from, to] = range.split('-').map(Number)
        if (from !== undefined && slot >= from && slot <= (to ?? from)) return nodePort
      }
    }
    return null
  }
  return null
}

/** A client per document on each node, taking turns appending to the document's log. */
async function writersOnBothNodes (t: Test, nodes: TestServer[], docIds: string[], everyMs: number): Promise<{ clients: Map<string, TestClient[]>, writing: NodeJS.Timeout, token: string }> {
  const token = await signToken({ sub: 'writer' })
  const clients = new Map<string, TestClient[]>()
  for (const docId of docIds) clients.set(docId, [await connectSynced(nodes[0]!.url, docId, token), await connectSynced(nodes[1]!.url, docId, token)])
  t.teardown(() => { for (const pair of clients.values()) for (const c of pair) c.destroy() })
  let n = 0
  const writing = setInterval(() => {
    for (const [docId, pair] of clients) pair[n % 2]!.doc.getArray<string>('log').push([`${docId}:${n}`])
    n++
  }, everyMs)
  t.teardown(() => clearInterval(writing))
  return { clients, writing, token }
}

/**
 * An edit made on each node for every document, and the time until each has reached the other
 * node's client; rejects with the documents and directions that did not cross in `timeoutMs`.
 */
async function editsCross (clients: Map<string, TestClient[]>, mark: string, timeoutMs: number): Promise<number> {
  const started = Date.now()
  for (const [docId, [a, b]] of clients) {
    a!.doc.getArray<string>('log').push([`${docId}:${mark}:0`])
    b!.doc.getArray<string>('log').push([`${docId}:${mark}:1`])
  }
  const notCrossed = (): string[] => [...clients].flatMap(([docId, [a, b]]) => [
    ...a!.doc.getArray<string>('log').toArray().includes(`${docId}:${mark}:1`) ? [] : [`${docId} node 1 -> node 0`],
    ...b!.doc.getArray<string>('log').toArray().includes(`${docId}:${mark}:0`) ? [] : [`${docId} node 0 -> node 1`]
  ])
  await waitFor(() => notCrossed().length === 0, `${mark}: edits cross both ways on every document`, timeoutMs)
    .catch(err => { throw new Error(`${(err as Error).message}; not crossed: ${notCrossed().join(', ')}`) })
  return Date.now() - started
}

/** Every client leaves, the nodes stop, and a fresh node loads each document whole from Redis. */
async function freshNodeLoadsEverything (t: Test, nodes: TestServer[], clients: Map<string, TestClient[]>, env: Record<string, string>, token: string): Promise<void> {
  const expected = new Map([...clients].map(([docId, [a]]) => [docId, a!.doc.getArray('log').toJSON()]))
  await sleep(500)
  for (const pair of clients.values()) for (const c of pair) c.destroy()
  clients.clear()
  for (const node of nodes) await node.close()
  nodes.length = 0
  const fresh = await startTestServer({ ...env, NODE_ID: 'fresh' })
  nodes.push(fresh)
  for (const [docId, log] of expected) {
    const reader = await connectSynced(fresh.url, docId, token)
    t.same(reader.doc.getArray('log').toJSON(), log, `${docId}: a fresh node loads every edit`)
    reader.destroy()
  }
}

/** Polls the nodes' readiness from now on: what each reported not ready for, once each. */
function watchReadiness (nodes: TestServer[]): { problems: Set<string>, stop: () => void } {
  const problems = new Set<string>()
  const timer = setInterval(() => {
    for (const node of nodes) {
      void node.server.readiness().then(r => { for (const p of r.problems) problems.add(p.replace(/:.*/, '')) }, () => {})
    }
  }, 100)
  return { problems, stop: () => { clearInterval(timer) } }
}

t.test('Redis Cluster failovers: every document keeps crossing between nodes, nothing lost', { timeout: 170_000 }, async t => {
  const cluster = await startRedisCluster(3, 1)
  t.teardown(cluster.cleanup)
  const ports = cluster.nodes.map(n => n.port)
  const env = { REDIS_CLUSTER_NODES: cluster.nodeList, LOG_LEVEL: process.env.FO_LOG ?? 'warn', BRIDGE_HEARTBEAT_MS: '200' }
  const nodes: TestServer[] = [
    await startTestServer({ ...env, NODE_ID: 'fo-0' }),
    await startTestServer({ ...env, NODE_ID: 'fo-1' })
  ]
  t.teardown(async () => { for (const node of nodes) await node.close() })
  if (process.env.FO_LOG !== undefined) t.teardown(() => { for (const node of nodes) console.error(node.logs.join('')) })

  // Two documents per master.
  const byMaster = new Map<number, string[]>()
  for (let i = 0; byMaster.size < 3 || [...byMaster.values()].some(d => d.length < 2); i++) {
    const docId = `fo-doc-${i}`
    const slot = Number(cli(ports[0]!, 'cluster', 'keyslot', docId).trim())
    const master = masterOf(ports, slot)
    if (master === null) continue
    const docs = byMaster.get(master) ?? []
    if (docs.length < 2) docs.push(docId)
    byMaster.set(master, docs)
    if (i > 500) throw new Error('could not spread documents over the shards')
  }
  const docIds = [...byMaster.values()].flat()
  const { clients, writing, token } = await writersOnBothNodes(t, nodes, docIds, 100)
  const converged = (): boolean => [...clients.values()].every(([a, b]) => a!.doc.getArray('log').length === b!.doc.getArray('log').length)

  const killed = new Set<number>()
  for (const round of [1, 2]) {
    await sleep(1_500)
    const readiness = watchReadiness(nodes)
    // A master not killed before, whose replica is alive.
    const master = [...byMaster.keys()].find(port => !killed.has(port))!
    killed.add(master)
    const victim = cluster.nodes.find(node => node.port === master) as RedisProcess
    await victim.stop('SIGKILL')
    const alive = ports.filter(p => !killed.has(p))
    // Until the others mark it failed, the cluster still looks fine: wait for a new owner.
    const slotsOfVictim = (byMaster.get(master) ?? []).map(docId => Number(cli(alive[0]!, 'cluster', 'keyslot', docId).trim()))
    await waitFor(() => slotsOfVictim.every(slot => { const owner = masterOf(alive, slot); return owner !== null && owner !== master }) &&
      alive.every(p => /cluster_state:ok/.test(cli(p, 'cluster', 'info'))), `round ${round}: a replica took over`, 30_000)
    t.pass(`round ${round}: master ${master} killed, replica promoted`)
    // After the failover, an edit on each node reaches the other within 5 s, for every document.
    await sleep(1_000)
    const crossedMs = await editsCross(clients, `after-${round}`, 5_000)
    t.pass(`round ${round}: every document crosses both ways after the failover (${crossedMs} ms)`)
    readiness.stop()
    t.ok(readiness.problems.size > 0, `round ${round}: readiness reported the outage (${[...readiness.problems].join('; ')})`)
  }

  // The first killed master comes back: it rejoins as a replica of the one that replaced it. Then
  // an operator's manual `CLUSTER FAILOVER` on it hands its slots back (replication is complete,
  // the old master stops accepting writes, the roles swap): the documents' sharded subscriptions
  // move shard again, with no outage for the watchdog to see.
  const [restarted] = [...killed]
  const comeback = cluster.nodes.find(node => node.port === restarted) as RedisProcess
  await comeback.start()
  await waitFor(() => /role:slave/.test(cli(restarted!, 'info', 'replication')) && /master_link_status:up/.test(cli(restarted!, 'info', 'replication')), 'the restarted master rejoined as an in-sync replica', 30_000)
  t.pass('the first killed master restarted and rejoined as a replica')
  const slotsBack = (byMaster.get(restarted!) ?? []).map(docId => Number(cli(restarted!, 'cluster', 'keyslot', docId).trim()))
  t.match(cli(restarted!, 'cluster', 'failover'), /OK/, 'manual CLUSTER FAILOVER accepted')
  await waitFor(() => slotsBack.every(slot => masterOf([restarted!], slot) === restarted) && /role:master/.test(cli(restarted!, 'info', 'replication')), 'the manual failover handed the slots back', 30_000)
  t.pass('manual failover: the restarted node owns its documents\' slots again')
  await sleep(1_000)
  const crossedMs = await editsCross(clients, 'after-manual-failover', 5_000)
  t.pass(`manual failover: every document crosses both ways (${crossedMs} ms)`)

  clearInterval(writing)
  await waitFor(converged, 'every pair converged', 15_000)
  for (const [docId, [a, b]] of clients) {
    t.same(a!.doc.getArray('log').toJSON(), b!.doc.getArray('log').toJSON(), `${docId}: both nodes' clients hold the same document`)
  }
  for (const node of nodes) {
    await waitFor(async () => (await node.server.readiness()).ready, 'ready again after the failovers', 15_000)
  }
  await freshNodeLoadsEverything(t, nodes, clients, env, token)
})

t.test('Redis Cluster slot migration (redis-cli --cluster reshard) while clients edit: documents keep crossing, nothing lost', { timeout: 170_000 }, async t => {
  const cluster = await startRedisCluster(3)
  t.teardown(cluster.cleanup)
  const ports = cluster.nodes.map(n => n.port)
  const env = { REDIS_CLUSTER_NODES: cluster.nodeList, LOG_LEVEL: process.env.FO_LOG ?? 'warn', BRIDGE_HEARTBEAT_MS: '200' }
  const nodes: TestServer[] = [
    await startTestServer({ ...env, NODE_ID: 'mig-0' }),
    await startTestServer({ ...env, NODE_ID: 'mig-1' })
  ]
  t.teardown(async () => { for (const node of nodes) await node.close() })

  // The first 200 slots of one master move to another: documents in them move with them.
  const lines = cli(ports[0]!, 'cluster', 'nodes').split('\n').filter(l => l.includes('master'))
  const source = lines.map(l => l.split(' ')).find(f => f.slice(8).length > 0 && Number(f[8]!.split('-')[0]) > 0)!
  const target = lines.map(l => l.split(' ')).find(f => f[0] !== source[0])!
  const firstSlot = Number(source[8]!.split('-')[0])
  const docIds: string[] = []
  for (let i = 0; docIds.length < 3 && i < 20_000; i++) {
    const slot = Number(cli(ports[0]!, 'cluster', 'keyslot', `mig-${i}`).trim())
    if (slot >= firstSlot && slot < firstSlot + 200) docIds.push(`mig-${i}`)
  }
  t.equal(docIds.length, 3, 'three documents in the slots that move')
  const { clients, writing, token } = await writersOnBothNodes(t, nodes, docIds, 50)
  await sleep(1_000)

  const sourcePort = Number(source[1]!.split(':')[1]!.split('@')[0])
  const moved = spawnSync('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${sourcePort}`, '--cluster-from', source[0]!, '--cluster-to', target[0]!, '--cluster-slots', '200', '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 })
  t.equal(moved.status, 0, 'the slots moved')
  const targetPort = Number(target[1]!.split(':')[1]!.split('@')[0])
  for (const docId of docIds) {
    t.equal(masterOf(ports, Number(cli(ports[0]!, 'cluster', 'keyslot', docId).trim())), targetPort, `${docId} now lives on the other master`)
  }
  await sleep(1_000)
  const crossedMs = await editsCross(clients, 'moved', 5_000)
  t.pass(`edits cross both ways after the move (${crossedMs} ms)`)
  clearInterval(writing)
  await waitFor(() => [...clients.values()].every(([a, b]) => JSON.stringify(a!.doc.getArray('log').toJSON()) === JSON.stringify(b!.doc.getArray('log').toJSON())), 'converged', 15_000)
  await freshNodeLoadsEverything(t, nodes, clients, env, token)
})
