import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { EntryBuilder } from '../src/persistence/entry-value.js'
import { RedisStore } from '../src/persistence/redis-store.js'
import { documentKeys } from '../src/redis/keys.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// Redis may lose a loaded document's keys (FLUSHALL, eviction under maxmemory, a failover that
// drops unreplicated writes, an operator's DEL). The edits after that depend on content no longer
// stored; the node that holds the document writes its full state from memory instead, so a
// fresh node still loads every edit.

const KEY_PREFIX = 'collab:'

async function editTimes (count: number, from: number, push: (value: string) => void): Promise<void> {
  for (let i = from; i < from + count; i++) {
    push(`edit ${i}`)
    if (i % 10 === 9) await sleep(20)
  }
}

/**
 * Fills Redis under `maxmemory` with allkeys-lru until the document's keys are evicted, then takes
 * the pressure off before anyone writes again (the nodes' writes must not be evicted in turn).
 */
async function evict (redis: Redis, docId: string, t: Test): Promise<void> {
  const keys = documentKeys(KEY_PREFIX, docId)
  // Redis's LRU clock counts whole seconds: once the document's keys have been idle for 2 s, every
  // filler key written from now on is younger, and allkeys-lru takes the document's keys first
  // among any it samples.
  await waitFor(async () => Number(await redis.object('IDLETIME', keys.log)) >= 2, 'the document\'s keys idle for 2 s', 10_000)
  const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
  await redis.config('SET', 'maxmemory', String(used + 2 * 1024 * 1024))
  const filler = 'x'.repeat(1024)
  let written = 0
  const fillDeadline = Date.now() + 15_000
  while (await redis.exists(keys.log, keys.snapshot) > 0) {
    if (Date.now() > fillDeadline || written >= 200_000) throw new Error(`the document's keys survived ${written} filler keys`)
    const batch = redis.pipeline()
    for (let i = 0; i < 200; i++) batch.set(`filler:${written++}`, filler)
    await batch.exec()
  }
  const evicted = Number(/evicted_keys:(\d+)/.exec(await redis.info('stats'))![1])
  t.ok(evicted > 0, `Redis evicted ${evicted} keys, the document's among them, after ${written} filler keys`)
  await redis.config('SET', 'maxmemory', '0')
  for (let cursor = '0'; ;) {
    const [next, found] = await redis.scan(cursor, 'MATCH', 'filler:*', 'COUNT', 1000)
    if (found.length > 0) await redis.unlink(...found)
    cursor = next
    if (cursor === '0') break
  }
}

for (const [fault, lose] of [
  ['FLUSHALL', async (redis: Redis, _docId: string, _t: Test) => { await redis.flushall() }],
  ['DEL of the document\'s keys', async (redis: Redis, docId: string, _t: Test) => {
    const keys = documentKeys(KEY_PREFIX, docId)
    await redis.del(keys.log, keys.snapshot)
  }],
  ['eviction under maxmemory (allkeys-lru)', evict]
] as const) {
  t.test(`${fault} while a stock client edits on two nodes: a fresh node loads every edit made before and after`, async t => {
    // allkeys-lru acts only once a test sets maxmemory (the eviction variant).
    const redisProcess = await startRedis({ extraArgs: ['--maxmemory-policy', 'allkeys-lru'] })
    t.teardown(redisProcess.cleanup)
    const redis = new Redis(redisProcess.url)
    t.teardown(() => { redis.disconnect() })
    const env = { REDIS_URL: redisProcess.url, LOG_LEVEL: 'warn', DOC_IDLE_UNLOAD_MS: '60000' }
    let nodes: TestServer[] = [
      await startTestServer({ ...env, NODE_ID: 'loss-0' }),
      await startTestServer({ ...env, NODE_ID: 'loss-1' })
    ]
    t.teardown(async () => { for (const node of nodes) await node.close() })
    const docId = 'key-loss'
    const people = await Promise.all(nodes.map(async (node, i) => {
      const person = stockProvider('3.1.0', node.url, docId, { token: await signToken({ sub: `writer-${i}` }) })
      await waitFor(() => person.provider.synced, `writer ${i} synced`)
      return person
    }))
    const list = (i: number) => people[i]!.doc.getArray<string>('edits')
    await editTimes(25, 0, value => list(0).push([value]))
    await editTimes(25, 25, value => list(1).push([value]))
    await waitFor(() => list(0).length === 50 && list(1).length === 50, 'both see the first 50')
    await waitFor(async () => (await redis.xlen(documentKeys(KEY_PREFIX, docId).log)) > 0, 'stored')
    await sleep(300)

    await lose(redis, docId, t)
    t.equal(await redis.exists(documentKeys(KEY_PREFIX, docId).log, documentKeys(KEY_PREFIX, docId).snapshot), 0, 'the document is gone from Redis')

    await editTimes(25, 50, value => list(0).push([value]))
    await editTimes(25, 75, value => list(1).push([value]))
    await waitFor(() => list(0).length === 100 && list(1).length === 100, 'both see all 100')
    await sleep(500) // the write-behind's next flushes
    t.ok(nodes.some(node => node.logs.some(line => line.includes('the store lost this document'))), 'a node found the keys gone and wrote the full state')

    for (const person of people) { person.provider.destroy(); person.doc.destroy() }
    for (const node of nodes) await node.close()
    nodes = [await startTestServer({ ...env, NODE_ID: 'loss-fresh' })]
    const fresh = stockProvider('3.1.0', nodes[0]!.url, docId, { token: await signToken({ sub: 'fresh' }) })
    t.teardown(() => { fresh.provider.destroy(); fresh.doc.destroy() })
    await waitFor(() => fresh.provider.synced, 'fresh client synced')
    const edits = fresh.doc.getArray<string>('edits').toArray()
    t.equal(edits.length, 100, 'every edit, before and after the loss, loads from the store')
    t.equal(new Set(edits).size, 100, 'each once')
  })
}

t.test('keys that expired while the document was loaded are written again from memory', async t => {
  const redisProcess = await startRedis()
  t.teardown(redisProcess.cleanup)
  const redis = new Redis(redisProcess.url)
  t.teardown(() => { redis.disconnect() })
  const env = { REDIS_URL: redisProcess.url, LOG_LEVEL: 'warn' }
  const node = await startTestServer({ ...env, NODE_ID: 'expiry-0' })
  t.teardown(node.close)
  const docId = 'expiring'
  const writer = stockProvider('3.1.0', node.url, docId, { token: await signToken({ sub: 'writer' }) })
  t.teardown(() => { writer.provider.destroy(); writer.doc.destroy() })
  await waitFor(() => writer.provider.synced, 'synced')
  writer.doc.getText('t').insert(0, 'before expiry. ')
  const keys = documentKeys(KEY_PREFIX, docId)
  await waitFor(async () => (await redis.exists(keys.log)) === 1, 'stored')
  await sleep(200)
  // What a TTL that ran out does.
  await redis.pexpire(keys.log, 1)
  await redis.pexpire(keys.snapshot, 1)
  await sleep(50)
  writer.doc.getText('t').insert(writer.doc.getText('t').length, 'after expiry.')
  await sleep(500)
  t.ok(node.logs.some(line => line.includes('the store lost this document')), 'the node noticed and said so')
  const stored = await redis.xrangeBuffer(keys.log, '-', '+')
  t.ok(stored.length >= 1, 'the document is stored again')
  // What is stored loads on its own: with the first node gone, a new one reads only the store.
  writer.provider.destroy()
  await node.close()
  const other = await startTestServer({ ...env, NODE_ID: 'expiry-reader' })
  t.teardown(other.close)
  const reader = stockProvider('3.1.0', other.url, 'expiring', { token: await signToken({ sub: 'reader' }) })
  t.teardown(() => { reader.provider.destroy(); reader.doc.destroy() })
  await waitFor(() => reader.provider.synced, 'reader synced')
  await waitFor(() => reader.doc.getText('t').toString() === 'before expiry. after expiry.', 'the whole text')
})

// Losses a first version of the store did not notice, one key or one load at a time.

function entry (update: Uint8Array): Uint8Array {
  const builder = new EntryBuilder(update.length)
  builder.append(update)
  return builder.finish()
}

// In Redis mode Compactor.compact reads the document with store.load. If the keys are lost between
// the append that triggers a compaction and that load, the load must not make the node forget it
// held the document, or the next append would write on top of nothing and report no loss.
t.test('a load between the loss of the keys and the next append (the compactor\'s) does not hide the loss', async t => {
  const redisProcess = await startRedis()
  t.teardown(redisProcess.cleanup)
  const redis = new Redis(redisProcess.url)
  t.teardown(() => { redis.disconnect() })
  const store = new RedisStore(redis, KEY_PREFIX, 0)
  await store.load('held')
  t.same(await store.append([{ docId: 'held', value: entry(new Uint8Array([1, 2, 3])) }]), { lost: [] }, 'stored')
  await redis.flushall()
  await store.load('held') // what Compactor.compact does after the append that triggered it
  t.same(await store.append([{ docId: 'held', value: entry(new Uint8Array([4, 5, 6])) }]), { lost: ['held'] }, 'the next append reports the document lost')
})

// Eviction takes keys one at a time, and under allkeys-lru a compacted document's snapshot (written
// only by compactions) is idler than its log (written by every append): with the snapshot alone
// gone the log's entries depend on content no longer stored, and with the log alone gone so do the
// next ones (seen end to end before the fix: a fresh node loaded 0 of 68 edits).
for (const lose of ['snapshot', 'log'] as const) {
  t.test(`only the ${lose} of a compacted document lost: the next append reports the loss`, async t => {
    const redisProcess = await startRedis()
    t.teardown(redisProcess.cleanup)
    const redis = new Redis(redisProcess.url)
    t.teardown(() => { redis.disconnect() })
    const store = new RedisStore(redis, KEY_PREFIX, 0)
    const keys = documentKeys(KEY_PREFIX, 'partial')
    await store.load('partial')
    await store.append([{ docId: 'partial', value: entry(new Uint8Array([1, 2, 3])) }])
    const stored = await store.load('partial')
    await store.compact('partial', new Uint8Array([1, 2, 3]), stored.cursor!)
    await store.append([{ docId: 'partial', value: entry(new Uint8Array([4, 5, 6])) }])
    t.equal(await redis.exists(keys.snapshot, keys.log), 2, 'a snapshot and a log')
    await redis.del(lose === 'snapshot' ? keys.snapshot : keys.log)
    t.same(await store.append([{ docId: 'partial', value: entry(new Uint8Array([7, 8, 9])) }]), { lost: ['partial'] }, 'the next append reports the document lost')
  })
}
