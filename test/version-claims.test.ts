import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import t from 'tap'
import * as Y from 'yjs'
import { RedisVersionClaims } from '../src/cluster/redis-version-claims.js'
import type { LiveDocument } from '../src/documents/live-document.js'
import { createLogger } from '../src/log/logger.js'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import { VersionHistory } from '../src/versions/version-history.js'
import { startRedis } from './helpers/redis.js'
import { sleep, waitFor } from './helpers/wait.js'

// Automatic versions decided by two nodes over a real redis-server: what the end-to-end cluster
// test (test/versions.test.ts) reaches only when a large document's version takes a while.

const PREFIX = 'claims-test:'
const DAY = 24 * 3600_000

t.test('a claim keeps other nodes out, never its own node', async t => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.cleanup() })
  const client = new Redis(redis.url)
  t.teardown(() => { client.disconnect() })
  const a = new RedisVersionClaims(client, PREFIX, 'node-a', 3600)
  const b = new RedisVersionClaims(client, PREFIX, 'node-b', 3600)
  t.same(await a.claim('doc', 300, 1000), { taken: true }, 'node A claims the version of the changes until 1000')
  t.same(await b.claim('doc', 300, 1001), { taken: false, covers: 1000 }, 'node B is kept out, and told until when A\'s version covers')
  t.same(await a.claim('doc', 300, 1002), { taken: true }, 'node A is not kept out by its own claim')
  await a.mark('doc', 300, 1003)
  t.same(await b.claim('doc', 300, 1004), { taken: false, covers: 1003 }, 'nor by its mark, which keeps B out')
  await b.mark('doc', 300, 1005)
  t.same(await b.claim('doc', 300, 1006), { taken: false, covers: 1003 }, 'B\'s mark leaves A\'s claim standing')
  await sleep(400)
  t.same(await b.claim('doc', 300, 1007), { taken: true }, 'once it lapsed, B may claim')
})

for (const unloads of [false, true]) {
t.test(`two nodes: an edit made while a version was encoded gets the next version${unloads ? ', also when the node that took it unloads the document' : ''}`, async t => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.cleanup() })
  const client = new Redis(redis.url)
  t.teardown(() => { client.disconnect() })
  const dir = mkdtempSync(join(tmpdir(), 'version-claims-'))
  const store = new LevelDbStore(dir, false)
  await store.open()
  t.teardown(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })
  // Both nodes hold the same document (every edit reaches both).
  const doc = new Y.Doc()
  t.teardown(() => doc.destroy())
  let encoded = (): void => {}
  let slowOnce = true
  const node = (id: string): VersionHistory => new VersionHistory(store, {
    idleMs: 100,
    maxIntervalMs: 600_000,
    retention: { keepAllMs: DAY, hourlyUntilMs: 7 * DAY, retentionMs: 30 * DAY, maxBytesPerDocument: 1 << 30 }
  }, async () => {
    const state = Y.encodeStateAsUpdate(doc)
    if (!slowOnce) return state
    // The first version is of a large document: it takes a while to encode.
    slowOnce = false
    return await new Promise<Uint8Array>(resolve => { encoded = () => { resolve(state) } })
  }, createLogger('silent'), undefined, new RedisVersionClaims(client, PREFIX, id, 3600))
  const a = node('node-a')
  const b = node('node-b')
  t.teardown(() => { a.stop(); b.stop() })
  doc.getText('t').insert(0, 'alice ')
  a.noteChange('doc', 'alice')
  b.notePeerChange('doc')
  a.start()
  await waitFor(() => !slowOnce, 'node A to start encoding its version')
  b.start()
  // Bob, on node B, edits while A encodes: his edit is not in A's version.
  doc.getText('t').insert(0, 'bob ')
  b.noteChange('doc', 'bob')
  // When A unloads, bob's edit reaches it too late to count there: B must version it.
  if (!unloads) a.notePeerChange('doc')
  await sleep(300) // B's sweeps meet A's claim
  encoded()
  if (unloads) {
    // A's last client left: A took the version before the document left, and keeps no entry.
    await a.beforeUnload({ id: 'doc' } as LiveDocument)
    await a.afterUnload('doc')
    a.stop()
  }
  await waitFor(async () => (await store.listVersions('doc', { limit: 10 })).length === 2, 'a second version, with bob\'s edit', 5_000)
  await sleep(500)
  const versions = await store.listVersions('doc', { limit: 10 })
  t.equal(versions.length, 2, 'two versions, not more')
  t.same(versions.map(v => v.authors), [['bob'], ['alice']], 'alice\'s, then bob\'s')
  const newest = new Y.Doc()
  Y.applyUpdate(newest, (await store.loadVersion('doc', versions[0]!.id))!)
  t.equal(newest.getText('t').toString(), 'bob alice ', 'the second holds bob\'s edit')
})
}
