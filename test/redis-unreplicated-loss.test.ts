import { spawnSync } from 'node:child_process'
import { Redis } from 'ioredis'
import t from 'tap'
import * as Y from 'yjs'
import { decodeEnvelope } from '../src/cluster/envelope.js'
import { decodeEntryValue } from '../src/persistence/entry-value.js'
import type { PubSub } from '../src/redis/connections.js'
import { documentKeys } from '../src/redis/keys.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis, startRedisCluster, startSentinelSetup, type RedisProcess } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { startTcpProxy } from './helpers/tcp-proxy.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// Redis replicates asynchronously: a master acknowledges a write before its replica has it, and a
// failover to that replica loses whatever had not crossed. Here replication to the replica is
// stopped while the master goes on acknowledging the nodes' appends, then the master is killed and
// the replica promoted. The test measures that acknowledged writes really are missing on the
// promoted replica, then that the nodes write them again from memory (each held document's full
// state, after a reconnect or, on Redis Cluster, after the slot map shows a new master) while
// their clients keep editing, so that after everyone left a fresh node loads every edit.

const KEY_PREFIX = 'collab:'

interface Topology {
  env: Record<string, string>
  /** Documents whose keys live on the master that dies: one stored before the cut, one after. */
  docIds: [string, string]
  masterPort: number
  replicaPort: number
  /** Stops replication to the replica; the master goes on acknowledging writes. */
  cut: () => Promise<void>
  /** Kills the master; the replica can be read afterwards and is not promoted yet. */
  kill: () => Promise<void>
  /** Resolves once the replica is the master and the nodes' Redis address leads to it. */
  promote: () => Promise<void>
  cleanup: () => Promise<void>
}

function cli (port: number, ...args: string[]): string {
  return spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).stdout
}

function field (info: string, name: string): number {
  return Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN)
}

/** Sentinel (REDIS_SENTINELS); the replica's link to the master goes through a proxy that is cut. */
async function sentinelTopology (): Promise<Topology> {
  const setup = await startSentinelSetup({ replicationThroughProxy: true })
  return {
    env: { REDIS_SENTINELS: setup.sentinels, REDIS_SENTINEL_NAME: 'mymaster' },
    docIds: ['unreplicated-old', 'unreplicated-new'],
    masterPort: setup.master.port,
    replicaPort: setup.replica.port,
    cut: async () => { setup.replicationLink!.partition() },
    kill: async () => { await setup.master.stop('SIGKILL') },
    promote: async () => { await waitFor(() => setup.masterPort() === setup.replica.port, 'sentinel promoted the replica', 20_000) },
    cleanup: setup.cleanup
  }
}

/** One address (REDIS_URL) that a managed Redis moves to the promoted replica, as its endpoint does. */
async function endpointTopology (): Promise<Topology> {
  const master = await startRedis()
  const link = await startTcpProxy(master.port)
  const replica = await startRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(link.port)] })
  const endpoint = await startTcpProxy(master.port)
  await waitFor(() => /master_link_status:up/.test(cli(replica.port, 'info', 'replication')), 'replica in sync', 10_000)
  return {
    env: { REDIS_URL: `redis://127.0.0.1:${endpoint.port}` },
    docIds: ['unreplicated-old', 'unreplicated-new'],
    masterPort: master.port,
    replicaPort: replica.port,
    cut: async () => { link.partition() },
    kill: async () => { await master.stop('SIGKILL') },
    promote: async () => {
      cli(replica.port, 'replicaof', 'no', 'one')
      endpoint.retarget(replica.port)
    },
    cleanup: async () => {
      await endpoint.close()
      await link.close()
      await master.cleanup()
      await replica.cleanup()
    }
  }
}

/**
 * Redis Cluster, 3 masters with a replica each (REDIS_CLUSTER_NODES). Replication goes straight
 * from master to replica: the replica is stopped (SIGSTOP) and the master is given megabytes to
 * replicate until its output buffer to the replica holds data the kernel could not take, so that
 * every write after that waits in the master's memory and dies with it.
 */
async function clusterTopology (): Promise<Topology> {
  const cluster = await startRedisCluster(3, 1)
  const ports = cluster.nodes.map(node => node.port)
  const nodes = cli(ports[0]!, 'cluster', 'nodes').split('\n').map(line => line.split(' ')).filter(fields => fields.length > 3)
  const portOf = (fields: string[]): number => Number(fields[1]!.split(':')[1]!.split('@')[0])
  const ownerOf = (docId: string): string[] => {
    const slot = Number(cli(ports[0]!, 'cluster', 'keyslot', docId).trim())
    return nodes.find(fields => fields[2]!.includes('master') && fields.slice(8).some(range => {
      const [from, to] = range.split('-').map(Number)
      return slot >= from! && slot <= (to ?? from!)
    }))!
  }
  const master = ownerOf('unreplicated-old')
  const replicaFields = nodes.find(fields => fields[3] === master[0])!
  let newDoc = ''
  for (let i = 0; newDoc === '' && i < 1000; i++) if (ownerOf(`unreplicated-new-${i}`)[0] === master[0]) newDoc = `unreplicated-new-${i}`
  const masterProcess = cluster.nodes.find(node => node.port === portOf(master)) as RedisProcess
  const replicaProcess = cluster.nodes.find(node => node.port === portOf(replicaFields)) as RedisProcess
  return {
    env: { REDIS_CLUSTER_NODES: cluster.nodeList },
    docIds: ['unreplicated-old', newDoc],
    masterPort: masterProcess.port,
    replicaPort: replicaProcess.port,
    cut: async () => {
      process.kill(replicaProcess.pid!, 'SIGSTOP')
      const direct = new Redis(masterProcess.port, '127.0.0.1')
      try {
        const filler = Buffer.alloc(1024 * 1024, 'x')
        const unsent = async (): Promise<number> => Number(/omem=(\d+)/.exec(String(await direct.call('CLIENT', 'LIST', 'TYPE', 'replica')))?.[1] ?? 0)
        // Keys in the document's slot, so on this master; omem: bytes queued in the master's
        // memory for the replica.
        for (let i = 0; await unsent() < 1024 * 1024; i++) {
          if (i >= 64) throw new Error('the master\'s output buffer to the stopped replica stays empty')
          await direct.set(`filler:{unreplicated-old}:${i}`, filler)
        }
      } finally {
        direct.disconnect()
      }
    },
    kill: async () => {
      await masterProcess.stop('SIGKILL')
      process.kill(replicaProcess.pid!, 'SIGCONT')
      // It reads what the kernel held for it, then finds the master gone.
      await waitFor(() => /master_link_status:down/.test(cli(replicaProcess.port, 'info', 'replication')), 'the replica lost its master', 10_000)
    },
    promote: async () => {
      await waitFor(() => /role:master/.test(cli(replicaProcess.port, 'info', 'replication')) && /cluster_state:ok/.test(cli(replicaProcess.port, 'cluster', 'info')), 'the cluster promoted the replica', 30_000)
    },
    cleanup: async () => {
      if (replicaProcess.pid !== undefined) try { process.kill(replicaProcess.pid, 'SIGCONT') } catch {}
      await cluster.cleanup()
    }
  }
}

/** What a node loading the document from this Redis gets: the number of log entries and the edits. */
async function stored (port: number, docId: string): Promise<{ entries: number, edits: string[] }> {
  const redis = new Redis(port, '127.0.0.1')
  try {
    // A Redis Cluster replica answers reads only on a READONLY connection.
    if (/role:slave/.test(await redis.info('replication')) && /cluster_enabled:1/.test(await redis.info('cluster'))) await redis.readonly()
    const keys = documentKeys(KEY_PREFIX, docId)
    const snapshot = await redis.hgetallBuffer(keys.snapshot)
    const log = await redis.xrangeBuffer(keys.log, '-', '+')
    const doc = new Y.Doc()
    if (snapshot.data !== undefined && snapshot.data.length > 0) Y.applyUpdate(doc, snapshot.data)
    for (const [, fields] of log) {
      const at = fields.findIndex((f, i) => i % 2 === 0 && f.toString() === 'u')
      if (at >= 0) for (const update of decodeEntryValue(fields[at + 1]!)) Y.applyUpdate(doc, update)
    }
    return { entries: log.length, edits: doc.getArray<string>('edits').toArray() }
  } finally {
    redis.disconnect()
  }
}

/**
 * Records a node's pub/sub traffic (test only, through the server's wrapPubSub hook): every
 * publish with Redis's count of receivers or its failure, every message received, every
 * (re)subscription and its outcome, so that a failed run shows which message did not arrive.
 */
function recordPubSub (events: Array<{ at: number, text: string }>): (pubsub: PubSub) => PubSub {
  const describe = (message: Buffer): string => {
    const e = decodeEnvelope(message)
    return e === null ? `${message.length} B` : `${e.t} from ${e.n} doc ${e.d}${'s' in e ? ` s${String(e.s)}` : ''} ${message.length} B`
  }
  const short = (channel: string): string => channel.replace(/^collab:/, '').replace(/:bridge$/, '')
  const note = (text: string): void => { events.push({ at: Date.now(), text }) }
  const outcome = async (what: string, run: Promise<void>): Promise<void> => {
    try {
      await run
      note(`${what} done`)
    } catch (err) {
      note(`${what} FAILED ${(err as Error).message}`)
      throw err
    }
  }
  return pubsub => ({
    subscribe: async channel => { await outcome(`subscribe ${short(channel)}`, pubsub.subscribe(channel)) },
    unsubscribe: async channel => { await outcome(`unsubscribe ${short(channel)}`, pubsub.unsubscribe(channel)) },
    resubscribe: async channel => { await outcome(`resubscribe ${short(channel)}`, pubsub.resubscribe(channel)) },
    publish: (channel, message, onReceivers) => {
      const what = `publish ${short(channel)} ${describe(message)}`
      const sent = pubsub.publish(channel, message, count => {
        note(`${what}: ${count} receivers`)
        onReceivers?.(count)
      })
      if (!sent) note(`${what}: NOT SENT`)
      return sent
    },
    onMessage: handler => {
      pubsub.onMessage((channel, message) => {
        note(`received on ${short(channel)}: ${describe(message)}`)
        handler(channel, message)
      })
    },
    onReconnect: handler => {
      pubsub.onReconnect(reason => {
        note(`reconnect: ${reason}`)
        handler(reason)
      })
    },
    get connected () { return pubsub.connected }
  })
}

/** The bridge's and the Redis client's log lines after `since`, one per line, with the ms since then. */
function bridgeTrace (logs: string[], since: number): string {
  const lines: string[] = []
  for (const line of logs.join('').split('\n')) {
    if (!/bridge|redis/.test(line)) continue
    try {
      const { time, msg, level: _level, service: _service, ...rest } = JSON.parse(line) as Record<string, unknown>
      const at = Date.parse(String(time))
      if (at >= since) lines.push(`+${at - since} ms ${String(msg)} ${JSON.stringify(rest)}`)
    } catch {}
  }
  return lines.slice(-200).join('\n')
}

for (const [name, topology] of [['Sentinel', sentinelTopology], ['one endpoint (managed Redis)', endpointTopology], ['Redis Cluster', clusterTopology]] as const) {
  t.test(`${name}: writes the master acknowledged but never replicated are lost by the failover and written again by the nodes`, { timeout: 90_000 }, async t => {
    const redis = await topology()
    const [oldDoc, newDoc] = redis.docIds
    let nodes: TestServer[] = []
    const people: Array<{ docId: string, node: number, doc: Y.Doc, provider: { synced: boolean, destroy: () => void } }> = []
    t.teardown(async () => {
      for (const person of people) { person.provider.destroy(); person.doc.destroy() }
      for (const node of nodes) await node.close()
      await redis.cleanup()
    })
    // A failed run must not wait 15 s per node for a Redis that is gone.
    const env = { ...redis.env, LOG_LEVEL: process.env.UNREP_LOG ?? 'debug', DOC_IDLE_UNLOAD_MS: '60000', BRIDGE_HEARTBEAT_MS: '200', STORE_RETRY_MAX_MS: '300', SHUTDOWN_TIMEOUT_MS: '3000' }
    const traffic: Array<Array<{ at: number, text: string }>> = [[], []]
    nodes = [
      await startTestServer({ ...env, NODE_ID: 'unrep-0' }, { wrapPubSub: recordPubSub(traffic[0]!) }),
      await startTestServer({ ...env, NODE_ID: 'unrep-1' }, { wrapPubSub: recordPubSub(traffic[1]!) })
    ]
    const join = async (docId: string): Promise<void> => {
      for (const node of [0, 1]) {
        const person = stockProvider('3.1.0', nodes[node]!.url, docId, { token: await signToken({ sub: `writer-${node}` }) })
        people.push({ docId, node, ...person })
        await waitFor(() => person.provider.synced, `${docId}: writer ${node} synced`)
      }
    }
    const list = (person: { doc: Y.Doc }) => person.doc.getArray<string>('edits')
    const made = new Map<string, string[]>(redis.docIds.map(docId => [docId, []]))
    let sequence = 0
    /** `count` edits by every writer of every joined document, in turns. */
    const edit = async (count: number, label: string): Promise<void> => {
      for (let i = 0; i < count; i++) {
        for (const person of people) {
          const value = `${label} ${person.docId} node ${person.node} #${sequence++}`
          list(person).push([value])
          made.get(person.docId)!.push(value)
        }
        await sleep(10)
      }
    }
    const everyoneHasAll = (): boolean => people.every(person => list(person).length === made.get(person.docId)!.length)

    // Before the cut: one document, replicated.
    await join(oldDoc)
    await edit(20, 'replicated')
    await waitFor(everyoneHasAll, 'the first edits everywhere')
    await waitFor(async () => (await stored(redis.masterPort, oldDoc)).edits.length === made.get(oldDoc)!.length, 'the first edits on the master')
    await waitFor(() => field(cli(redis.replicaPort, 'info', 'replication'), 'slave_repl_offset') >= field(cli(redis.masterPort, 'info', 'replication'), 'master_repl_offset'), 'the replica caught up')
    t.equal((await stored(redis.replicaPort, oldDoc)).edits.length, made.get(oldDoc)!.length, 'before the cut the replica has every edit')

    // The cut: the master acknowledges appends that never reach the replica, to the document
    // stored before and to one created after it.
    await redis.cut()
    await join(newDoc)
    await edit(20, 'acknowledged')
    await waitFor(everyoneHasAll, 'the edits after the cut everywhere')
    const onMaster = new Map<string, { entries: number, edits: string[] }>()
    await waitFor(async () => {
      for (const docId of redis.docIds) onMaster.set(docId, await stored(redis.masterPort, docId))
      return redis.docIds.every(docId => onMaster.get(docId)!.edits.length === made.get(docId)!.length)
    }, 'the master acknowledged every edit')
    const masterOffset = field(cli(redis.masterPort, 'info', 'replication'), 'master_repl_offset')

    // The master dies. What the replica has now is all it will have when it is promoted.
    const killedAt = Date.now()
    await redis.kill()
    const replicaOffset = field(cli(redis.replicaPort, 'info', 'replication'), 'slave_repl_offset')
    let lostEntries = 0
    let lostEdits = 0
    for (const docId of redis.docIds) {
      const onReplica = await stored(redis.replicaPort, docId)
      const master = onMaster.get(docId)!
      lostEntries += master.entries - onReplica.entries
      lostEdits += master.edits.length - onReplica.edits.length
      t.ok(onReplica.edits.length < master.edits.length, `${docId}: the replica lacks ${master.edits.length - onReplica.edits.length} of the master's ${master.edits.length} acknowledged edits (${onReplica.entries} of ${master.entries} log entries)`)
    }
    t.match(cli(redis.replicaPort, 'info', 'replication'), /role:slave/, 'measured before the promotion')
    t.ok(masterOffset > replicaOffset, `the replica is ${masterOffset - replicaOffset} bytes of replication stream behind`)
    t.comment(`lost by the failover: ${lostEntries} acknowledged log entries, ${lostEdits} edits`)

    // The failover; the clients go on editing through it and for half a second after it.
    let promotedAt = 0
    const promoting = redis.promote().then(() => { promotedAt = Date.now() })
    while (promotedAt === 0 || Date.now() < promotedAt + 500) {
      await edit(1, 'during failover')
      if (Date.now() > killedAt + 40_000) break
    }
    await promoting
    const lastEditAt = Date.now()
    await waitFor(everyoneHasAll, 'every client has every edit', 20_000)
      .catch(err => {
        // What each node's bridge and Redis client did since the kill: the cause of a failure that
        // shows up once in several runs must be in the first report of it.
        for (const [i, node] of nodes.entries()) {
          t.comment(`node ${i} since the kill:\n${bridgeTrace(node.logs, killedAt)}`)
          // Heartbeats and echoes of the node's own updates are most of the traffic and say little.
          const ownEcho = new RegExp(`^received on .*: [uah] from unrep-${i} `)
          const told = traffic[i]!.filter(e => e.at >= killedAt && !ownEcho.test(e.text))
          t.comment(`node ${i} pub/sub since the kill (${told.length} events, the last 400):\n${told.slice(-400).map(e => `+${e.at - killedAt} ms ${e.text}`).join('\n')}`)
        }
        t.comment(`edits missing: ${people.map(p => `${p.docId} on node ${p.node}: ${made.get(p.docId)!.length - list(p).length}`).join(', ')}`)
        throw err
      })
    const converged = Date.now()
    t.comment(`promoted ${promotedAt - killedAt} ms after the kill; every client had every edit ${converged - lastEditAt} ms after the last edit (${converged - promotedAt} ms after the promotion)`)
    for (const docId of redis.docIds) {
      const expected = [...made.get(docId)!].sort()
      for (const person of people.filter(p => p.docId === docId)) t.same([...list(person).toArray()].sort(), expected, `${docId}: the client on node ${person.node} has every edit once`)
    }
    // Edits still cross both ways.
    for (const [from, to] of [[0, 1], [1, 0]] as const) {
      const writer = people.find(p => p.docId === oldDoc && p.node === from)!
      const reader = people.find(p => p.docId === oldDoc && p.node === to)!
      const value = `after failover from node ${from}`
      const started = Date.now()
      list(writer).push([value])
      made.get(oldDoc)!.push(value)
      await waitFor(() => list(reader).toArray().includes(value), `an edit on node ${from} reaches node ${to}`, 5000)
      t.comment(`an edit on node ${from} reached node ${to} in ${Date.now() - started} ms`)
    }
    await waitFor(async () => (await Promise.all(nodes.map(async node => (await node.server.readiness()).ready))).every(Boolean), 'both nodes ready on the promoted replica', 20_000)

    // The nodes wrote what the promoted replica had lost, with no client reconnecting: the store
    // alone has every edit.
    for (const docId of redis.docIds) {
      const all = made.get(docId)!.length
      let count = 0
      const deadline = Date.now() + 5000
      while ((count = (await stored(redis.replicaPort, docId)).edits.length) !== all && Date.now() < deadline) await sleep(50)
      t.equal(count, all, `${docId}: the promoted replica stores every edit, before any client left`)
    }
    t.comment(`the promoted replica stored every edit at most ${Date.now() - promotedAt} ms after the promotion`)

    for (const person of people.splice(0)) { person.provider.destroy(); person.doc.destroy() }
    for (const node of nodes) await node.close()
    nodes = [await startTestServer({ ...env, NODE_ID: 'unrep-fresh' })]
    for (const docId of redis.docIds) {
      const fresh = stockProvider('3.1.0', nodes[0]!.url, docId, { token: await signToken({ sub: 'fresh' }) })
      people.push({ docId, node: 2, ...fresh })
      await waitFor(() => fresh.provider.synced, `${docId}: fresh client synced`)
      const edits = fresh.doc.getArray<string>('edits').toArray()
      t.equal(edits.length, made.get(docId)!.length, `${docId}: a fresh node loads all ${made.get(docId)!.length} edits`)
      t.equal(new Set(edits).size, edits.length, `${docId}: each once`)
    }
  })
}
