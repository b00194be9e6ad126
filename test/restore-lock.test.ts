import { Redis } from 'ioredis'
import t from 'tap'
import { RedisVersionClaims } from '../src/cluster/redis-version-claims.js'
import { createLogger } from '../src/log/logger.js'
import { documentKeys } from '../src/redis/keys.js'
import { singleNodeClaims } from '../src/versions/version-claims.js'
import { VersionHistory } from '../src/versions/version-history.js'
import type { VersionStore } from '../src/persistence/document-store.js'
import { startRedis } from './helpers/redis.js'
import { sleep, waitFor } from './helpers/wait.js'

// The restore lock on its own, over a real redis-server: what an end-to-end restore reaches only
// when it outlives the lock or a failover empties Redis (test/versions.test.ts covers restores).

const PREFIX = 'lock-test:'
const DAY = 24 * 3600_000

function history (claims: RedisVersionClaims | ReturnType<typeof singleNodeClaims>, restoreLockMs: number): VersionHistory {
  // Locks never touch the store.
  const store = {} as unknown as VersionStore
  return new VersionHistory(store, {
    idleMs: 60_000,
    maxIntervalMs: 600_000,
    retention: { keepAllMs: DAY, hourlyUntilMs: 7 * DAY, retentionMs: 30 * DAY, maxBytesPerDocument: 1 << 30 },
    restoreLockMs
  }, async () => null, createLogger('silent'), undefined, claims)
}

t.test('Redis: a lock is released only by its holder, even after it expired and another node took it', async t => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.cleanup() })
  const client = new Redis(redis.url)
  t.teardown(() => { client.disconnect() })
  const a = new RedisVersionClaims(client, PREFIX, 'node-a', 3600)
  const b = new RedisVersionClaims(client, PREFIX, 'node-b', 3600)
  const tokenA = await a.lockRestore('doc', 200)
  t.ok(tokenA, 'node A takes the lock')
  t.equal(await b.lockRestore('doc', 200), null, 'node B cannot while A holds it')
  t.notOk(await b.renewRestore('doc', 'node-b:not-the-token', 200), 'nor renew it with another token')
  await b.unlockRestore('doc', 'node-b:not-the-token')
  t.equal(await b.lockRestore('doc', 200), null, 'nor release it')
  await sleep(300)
  const tokenB = await b.lockRestore('doc', 60_000)
  t.ok(tokenB, 'once A\'s lock expired, B takes it')
  t.notOk(await a.renewRestore('doc', tokenA!, 60_000), 'A\'s renewal finds it is no longer A\'s')
  await a.unlockRestore('doc', tokenA!)
  t.match(await client.get(documentKeys(PREFIX, 'doc').restoreLock), /^node-b:/, 'A\'s late release leaves B\'s lock in place')
  await b.unlockRestore('doc', tokenB!)
  t.equal(await client.exists(documentKeys(PREFIX, 'doc').restoreLock), 0, 'B releases its own')
})

t.test('Redis: a held lock is renewed for as long as the restore runs, and given up once it is lost', async t => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.cleanup() })
  const client = new Redis(redis.url)
  t.teardown(() => { client.disconnect() })
  const nodeA = history(new RedisVersionClaims(client, PREFIX, 'node-a', 3600), 400)
  const nodeB = history(new RedisVersionClaims(client, PREFIX, 'node-b', 3600), 400)
  const lock = await nodeA.lockRestore('doc')
  t.ok(lock, 'node A locks the document')
  await sleep(1_200) // three lifetimes of the lock
  t.ok(lock!.held, 'still held three lifetimes later')
  t.equal(await nodeB.lockRestore('doc'), null, 'and node B is still kept out')
  // A failover or a flush empties Redis: the lock is gone, and another node may take it.
  await client.del(documentKeys(PREFIX, 'doc').restoreLock)
  const lockB = await nodeB.lockRestore('doc')
  t.ok(lockB, 'node B takes the lock the flush freed')
  await waitFor(() => !lock!.held, 'node A to learn it lost the lock', 2_000)
  t.notOk(lock!.held, 'node A learns at its next renewal that it lost the lock, and will not apply its restore')
  await lock!.release()
  t.ok(lockB!.held, 'A\'s release does not free B\'s lock')
  t.match(await client.get(documentKeys(PREFIX, 'doc').restoreLock), /^node-b:/, 'which stays in Redis')
  await lockB!.release()
  t.notOk(lockB!.held, 'a released lock is not held')
  t.ok(await nodeA.lockRestore('doc').then(async l => { await l?.release(); return l !== null }), 'and the document can be locked again')
})

t.test('Redis: a lock whose renewals fail for its whole lifetime is no longer held', async t => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.cleanup() })
  const client = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 100 })
  client.on('error', () => {})
  t.teardown(() => { client.disconnect() })
  await new Promise(resolve => client.once('ready', resolve))
  const node = history(new RedisVersionClaims(client, PREFIX, 'node-a', 3600), 400)
  const lock = await node.lockRestore('doc')
  t.ok(lock?.held, 'locked')
  await redis.stop()
  await waitFor(() => !lock!.held, 'the lock to lapse', 2_000)
  t.notOk(lock!.held, 'unconfirmed for longer than the lock lives: another node may hold it by now')
  await lock!.release() // logs, does not throw
})

t.test('one node: the lock never expires while held, and is the holder\'s to release', async t => {
  const node = history(singleNodeClaims(), 100)
  const lock = await node.lockRestore('doc')
  t.ok(lock, 'locked')
  t.equal(await node.lockRestore('doc'), null, 'a second restore is kept out')
  await sleep(350)
  t.ok(lock!.held, 'still held after several lifetimes')
  t.equal(await node.lockRestore('doc'), null, 'still keeping others out')
  await lock!.release()
  await lock!.release() // twice is harmless
  const again = await node.lockRestore('doc')
  t.ok(again, 'free again once released')
  await again!.release()
})
