import { rmSync } from 'node:fs'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { createDatabase, startPostgres, type PostgresProcess } from './helpers/postgres.js'
import { spawnServer, type ServerProcess } from './helpers/process.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { tempDir } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// Two nodes bridged by Redis, documents in PostgreSQL: Redis carries nothing that cannot be lost,
// and the database may go away and come back while people edit.

const DOCS = ['pg-a', 'pg-b', 'pg-c']
let postgres: PostgresProcess
let databases = 0

t.before(async () => { postgres = await startPostgres() })
t.teardown(async () => { await postgres.cleanup() })

interface Writer { name: string, docId: string, doc: import('yjs').Doc, provider: { synced: boolean, destroy: () => void } }

async function startCluster (t: Test): Promise<{ redis: RedisProcess, env: Record<string, string>, nodes: ServerProcess[] }> {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const url = await createDatabase(postgres, `cluster_${++databases}`)
  const env = { REDIS_URL: redis.url, DATABASE_URL: url, FLUSH_INTERVAL_MS: '100', STORE_RETRY_MAX_MS: '1000', BRIDGE_HEARTBEAT_MS: '200', DOC_IDLE_UNLOAD_MS: '60000' }
  const nodes: ServerProcess[] = []
  for (const id of ['pg-node-1', 'pg-node-2']) {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    nodes.push(await spawnServer({ ...env, DATA_DIR: dataDir, NODE_ID: id }))
  }
  t.teardown(() => { for (const node of nodes) node.kill('SIGKILL') })
  return { redis, env, nodes }
}

/** A stock client on each node for each document. */
async function connectWriters (t: Test, nodes: ServerProcess[]): Promise<Writer[]> {
  const writers: Writer[] = []
  for (const docId of DOCS) {
    for (const [i, node] of nodes.entries()) {
      const name = `${docId}-w${i}`
      const { doc, provider } = stockProvider('3.1.0', node.url, docId, { token: await signToken({ sub: name }) })
      writers.push({ name, docId, doc, provider })
    }
  }
  t.teardown(() => { for (const w of writers) { w.provider.destroy(); w.doc.destroy() } })
  await waitFor(() => writers.every(w => w.provider.synced), 'every writer synced')
  return writers
}

/** Every writer pushes one labelled edit every 50 ms until stopped; returns the labels written per document. */
function keepEditing (writers: Writer[]): { stop: () => Promise<Map<string, Set<string>>> } {
  const written = new Map<string, Set<string>>(DOCS.map(d => [d, new Set()]))
  let running = true
  const loop = (async () => {
    for (let n = 0; running; n++) {
      for (const w of writers) {
        const label = `${w.name}-${n}`
        w.doc.getArray<string>('edits').push([label])
        written.get(w.docId)!.add(label)
      }
      await sleep(50)
    }
  })()
  return { stop: async () => { running = false; await loop; return written } }
}

async function readyStatus (node: ServerProcess): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${node.port}/readyz`, { signal: AbortSignal.timeout(2_000) })).status
  } catch {
    return 0
  }
}

/** Milliseconds until every node answers /readyz with `status`. */
async function timeUntilReady (nodes: ServerProcess[], status: number, limitMs: number): Promise<number> {
  const started = Date.now()
  await waitFor(async () => (await Promise.all(nodes.map(readyStatus))).every(s => s === status), `/readyz ${status} on every node`, limitMs)
  return Date.now() - started
}

/** An edit on one node reaches the other node's client, now. */
async function crossesNodes (t: Test, writers: Writer[], label: string): Promise<void> {
  const [from, to] = [writers[0]!, writers[1]!]
  from.doc.getArray<string>('cross').push([label])
  await waitFor(() => to.doc.getArray<string>('cross').toArray().includes(label), `${label} reached the other node`, 5_000)
  t.pass(`${label}: an edit on node 1 reached node 2`)
}

async function convergedAndStored (t: Test, writers: Writer[], written: Map<string, Set<string>>, env: Record<string, string>, redis: RedisProcess): Promise<void> {
  for (const w of writers) {
    await waitFor(() => w.doc.getArray('edits').length === written.get(w.docId)!.size, `${w.name} has all ${written.get(w.docId)!.size} edits`, 20_000)
  }
  t.pass('every client converged with every edit')
  await sleep(500) // the write-behind's last flush
  for (const w of writers) { w.provider.destroy(); w.doc.destroy() }
  // Redis holds nothing that matters: wipe it before a fresh node loads from PostgreSQL alone.
  const wipe = new Redis(redis.url)
  await wipe.flushall()
  wipe.disconnect()
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const fresh = await spawnServer({ ...env, DATA_DIR: dataDir, NODE_ID: 'pg-fresh' })
  t.teardown(() => fresh.kill('SIGKILL'))
  for (const docId of DOCS) {
    const reader = stockProvider('3.1.0', fresh.url, docId, { token: await signToken({ sub: 'reader' }) })
    await waitFor(() => reader.provider.synced, `${docId} loaded by a fresh node`)
    const edits = reader.doc.getArray<string>('edits').toArray()
    const missing = [...written.get(docId)!].filter(label => !edits.includes(label))
    t.equal(missing.length, 0, `${docId}: all ${written.get(docId)!.size} edits in PostgreSQL (missing: ${missing.slice(0, 5).join(', ')})`)
    t.equal(new Set(edits).size, edits.length, `${docId}: each once`)
    reader.provider.destroy(); reader.doc.destroy()
  }
}

t.test('PostgreSQL restarted while clients edit on two nodes: editing goes on, /readyz says so, nothing lost', { timeout: 120_000 }, async t => {
  const { redis, env, nodes } = await startCluster(t)
  const writers = await connectWriters(t, nodes)
  t.equal(await timeUntilReady(nodes, 200, 5_000) >= 0, true, 'ready before')
  const editing = keepEditing(writers)
  await sleep(500)

  await postgres.stop('SIGINT')
  const down = await timeUntilReady(nodes, 503, 3_000)
  t.ok(down <= 3_000, `/readyz answered 503 on both nodes ${down} ms after the database went away`)
  await crossesNodes(t, writers, 'during-outage')
  await sleep(3_000)
  await postgres.start()
  const up = await timeUntilReady(nodes, 200, 10_000)
  t.ok(up <= 10_000, `/readyz answered 200 on both nodes ${up} ms after the database came back`)
  await sleep(500)
  const written = await editing.stop()
  await convergedAndStored(t, writers, written, env, redis)
})

t.test('Redis FLUSHALL, then kill -9 of a node, while clients edit on two nodes: no document content lost', { timeout: 120_000 }, async t => {
  const { redis, env, nodes } = await startCluster(t)
  const writers = await connectWriters(t, nodes)
  const editing = keepEditing(writers)
  await sleep(700)
  const flush = new Redis(redis.url)
  await flush.flushall()
  flush.disconnect()
  await sleep(700)
  await crossesNodes(t, writers, 'after-flushall')
  const written = await editing.stop()
  for (const w of writers) {
    await waitFor(() => w.doc.getArray('edits').length === written.get(w.docId)!.size, `${w.name} converged`, 20_000)
  }
  await sleep(400) // more than a flush interval: what node 1 holds is in PostgreSQL
  nodes[0]!.kill('SIGKILL')
  t.equal(await nodes[0]!.exited, 'SIGKILL')
  // Node 1's clients are gone with it; node 2's keep editing.
  const survivors = writers.filter((_w, i) => i % 2 === 1)
  for (const w of survivors) {
    w.doc.getArray<string>('edits').push([`${w.name}-after-kill`])
    written.get(w.docId)!.add(`${w.name}-after-kill`)
  }
  await convergedAndStored(t, survivors, written, env, redis)
})
