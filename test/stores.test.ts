import t, { type Test } from 'tap'
import { rmSync } from 'node:fs'
import { Redis } from 'ioredis'
import * as Y from 'yjs'
import type { AppendEntry, DocumentStore } from '../src/persistence/document-store.js'
import { ClassicLevel } from 'classic-level'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import { encodeEntryValue } from '../src/persistence/entry-value.js'
import { RedisStore } from '../src/persistence/redis-store.js'
import { WriteBehind } from '../src/persistence/write-behind.js'
import { createLogger } from '../src/log/logger.js'
import { startRedis } from './helpers/redis.js'
import { tempDir } from './helpers/server.js'
import { appendWhileCompacting, edit, itemsOf, versionContract } from './helpers/store-contract.js'

/** A LevelDB store in a fresh directory, closed and removed when the test ends. */
async function openTempLevelDb (t: Test): Promise<{ store: LevelDbStore, dir: string }> {
  const dir = tempDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = new LevelDbStore(dir)
  await store.open()
  t.teardown(() => store.close())
  return { store, dir }
}

t.test('LevelDB store: append, load, compact, delete', async t => {
  const { store, dir } = await openTempLevelDb(t)
  t.same(await store.load('empty'), { updates: [], cursor: null, bytes: 0 })
  await store.append([{ docId: 'a', value: encodeEntryValue([edit('1')]) }, { docId: 'ab', value: encodeEntryValue([edit('x')]) }])
  await store.append([{ docId: 'a', value: encodeEntryValue([edit('2')]) }])
  t.same(itemsOf((await store.load('a')).updates), ['1', '2'])
  t.same(itemsOf((await store.load('ab')).updates), ['x'], 'ids sharing a prefix do not overlap')
  await store.append([{ docId: 'many', value: encodeEntryValue([edit('p'), edit('q'), edit('r')]) }])
  const many = await store.load('many')
  t.same(itemsOf(many.updates), ['p', 'q', 'r'], 'an entry holding several updates reads back as all of them')
  const legacy = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await store.close()
  await legacy.open()
  await legacy.put('u\x00old\x00' + '0'.repeat(13), edit('bare'))
  await legacy.close()
  await store.open()
  t.same(itemsOf((await store.load('old')).updates), ['bare'], 'a bare update written by an earlier version still loads')
  t.equal(many.cursor, store.lastCursor('many'), 'in one entry')
  await appendWhileCompacting(t, [store])

  // The only writer knows its last written entry: compaction from memory needs no read-back.
  t.equal(store.lastCursor('never-touched'), null)
  const appended = store.append([{ docId: 'mem', value: encodeEntryValue([edit('m1')]) }])
  t.equal(store.lastCursor('mem'), null, 'an append still in flight is not a cursor')
  await appended
  await store.append([{ docId: 'mem', value: encodeEntryValue([edit('m2')]) }])
  t.equal(store.lastCursor('mem'), (await store.load('mem')).cursor, 'the cursor of the last written entry')
  await store.compact('mem', Y.mergeUpdates([edit('m1'), edit('m2')]), store.lastCursor('mem')!)
  await store.append([{ docId: 'mem', value: encodeEntryValue([edit('m3')]) }])
  const compacted = await store.load('mem')
  t.equal(compacted.updates.length, 2, 'snapshot plus the entry appended after it')
  t.same(itemsOf(compacted.updates).sort(), ['m1', 'm2', 'm3'])

  await store.delete('a')
  t.same((await store.load('a')).updates, [])
  await store.ping()
})

t.test('LevelDB store: a forgotten document keeps its log, and appends after it never overwrite an entry', async t => {
  const { store } = await openTempLevelDb(t)
  const append = async (label: string): Promise<void> => { await store.append([{ docId: 'a', value: encodeEntryValue([edit(label)]) }]) }
  await append('1')
  await append('2')
  t.equal(store.trackedDocuments, 1)
  store.forget('a')
  t.equal(store.trackedDocuments, 0, 'nothing held for a forgotten document')
  await append('3') // no load first: the sequence is looked up in the log
  store.forget('a')
  const loaded = await store.load('a')
  t.same(itemsOf(loaded.updates), ['1', '2', '3'])
  t.equal(store.lastCursor('a'), loaded.cursor, 'a load restores the cursor for compaction from memory')
  await append('4')
  store.forget('a')
  t.same(itemsOf((await store.load('a')).updates), ['1', '2', '3', '4'], 'every entry kept')
})

t.test('LevelDB store: large entries written on their own and a batch filled over several turns land whole, in order', async t => {
  const { store } = await openTempLevelDb(t)
  const text = (label: string, bytes: number): Uint8Array => {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, label.padEnd(4) + 'x'.repeat(bytes))
    return Y.encodeStateAsUpdate(doc)
  }
  // Per document: large entries (a put each) among small ones (a batch of more than one turn).
  const labels = (doc: string): string[] => Array.from({ length: 24 }, (_, i) => `${doc}${i}`)
  const sizeOf = (label: string): number => label.endsWith('3') ? 3 * 1024 * 1024 : 200 * 1024
  const entries = [...labels('a'), ...labels('b')].map(label => ({ docId: label[0]!, value: encodeEntryValue([text(label, sizeOf(label))]) }))
  await store.load('a')
  await store.load('b')
  const appended = store.append(entries)
  // Appended while the batch is filled: its sequence number follows the batch's, taken before.
  await store.append([{ docId: 'a', value: encodeEntryValue([text('a24', 10)]) }])
  await appended
  const starts = async (docId: string): Promise<string[]> => (await store.load(docId)).updates.map(update => {
    const doc = new Y.Doc()
    Y.applyUpdate(doc, update)
    return doc.getText('t').toString().slice(0, 4).trim()
  })
  t.same(await starts('a'), [...labels('a'), 'a24'], 'every entry, in the order appended')
  t.same(await starts('b'), labels('b'))
})

t.test('LevelDB store: a deletion never comes between a version\'s state and its metadata', async t => {
  const { store } = await openTempLevelDb(t)
  const doc = new Y.Doc()
  doc.getText('t').insert(0, 'v'.repeat(2 * 1024 * 1024))
  const state = Y.encodeStateAsUpdate(doc)
  for (let round = 0; round < 4; round++) {
    const docId = `doc-${round}`
    await store.append([{ docId, value: encodeEntryValue([edit('x')]) }])
    const meta = { id: `v${round}`, createdAt: new Date().toISOString(), reason: 'named' as const, label: 'l', bytes: state.length, authors: [] }
    // The deletion starts while the version's state is being written (or, in later rounds, a
    // little after it began).
    const saving = store.saveVersion(docId, meta, state)
    for (let i = 0; i < round; i++) await new Promise(resolve => setImmediate(resolve))
    await Promise.all([saving, store.delete(docId)])
    for (const listed of await store.listVersions(docId, { limit: 10 })) {
      t.ok(await store.loadVersion(docId, listed.id), `round ${round}: a listed version can be read`)
    }
    t.same(await store.listVersions(docId, { limit: 10 }), [], `round ${round}: deleted with the document, having been written before`)
  }
})

t.test('Redis store: many nodes append and compact at once without losing anything', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const clients = [new Redis(redis.url), new Redis(redis.url), new Redis(redis.url)]
  t.teardown(() => clients.forEach(c => c.disconnect()))
  const stores = clients.map(c => new RedisStore(c, 'test:', 0))
  await appendWhileCompacting(t, stores)
  await stores[1]!.append([{ docId: 'many', value: encodeEntryValue([edit('p'), edit('q')]) }])
  t.same(itemsOf((await stores[2]!.load('many')).updates), ['p', 'q'], 'an entry holding several updates reads back as all of them')
  t.equal(await clients[0]!.xlen('test:{many}:log'), 1, 'in one stream entry')
  t.equal(stores[0]!.lastCursor('doc'), null, 'a shared store never lets compaction skip reading the log')
  await stores[0]!.delete('doc')
  t.same((await stores[1]!.load('doc')).updates, [])
})

t.test('LevelDB store: versions', async t => {
  const { store } = await openTempLevelDb(t)
  await versionContract(t, store)
})

t.test('Redis store: versions', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  await versionContract(t, new RedisStore(client, 'test:', 0))
})

t.test('Redis store: DOC_TTL_SECONDS expires untouched documents; 0 keeps them', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const expiring = new RedisStore(client, 'ttl:', 1)
  const forever = new RedisStore(client, 'keep:', 0)
  await expiring.append([{ docId: 'd', value: encodeEntryValue([edit('gone')]) }])
  await forever.append([{ docId: 'd', value: encodeEntryValue([edit('kept')]) }])
  t.ok((await client.ttl('ttl:{d}:log')) > 0, 'expiry set on write')
  t.equal(await client.ttl('keep:{d}:log'), -1, 'no expiry with 0')
  await new Promise(resolve => setTimeout(resolve, 2100))
  t.same((await expiring.load('d')).updates, [], 'expired')
  t.same(itemsOf((await forever.load('d')).updates), ['kept'])
})

t.test('write-behind splits a large backlog into bounded entries, losing nothing', async t => {
  const { store } = await openTempLevelDb(t)
  const writeBehind = new WriteBehind(store, { intervalMs: 60_000, retryMaxMs: 1_000 }, createLogger('silent'))
  const source = new Y.Doc()
  const entriesOf = (docId: string): number => parseInt(store.lastCursor(docId)!.slice(-13), 16) + 1
  // Small updates share entries of up to ~256 KiB.
  for (let i = 0; i < 3000; i++) {
    const sv = Y.encodeStateVector(source)
    source.getArray('items').push([`${i}:${'x'.repeat(1_000)}`])
    writeBehind.enqueue('small', Y.encodeStateAsUpdate(source, sv))
  }
  await writeBehind.flush()
  t.ok(entriesOf('small') >= 10 && entriesOf('small') <= 15, `3 MB of 1 KB updates stored as ${entriesOf('small')} entries of at most ~256 KiB each`)
  t.equal(itemsOf((await store.load('small')).updates).length, 3000, 'every small update is in the store')

  // Large ones are an entry each, whatever the backlog.
  const large = new Y.Doc()
  for (let i = 0; i < 30; i++) {
    const sv = Y.encodeStateVector(large)
    large.getArray('items').push([`${i}:${'x'.repeat(100_000)}`])
    writeBehind.enqueue('bulk', Y.encodeStateAsUpdate(large, sv))
  }
  await writeBehind.flush()
  t.equal(entriesOf('bulk'), 30, '3 MB of 100 KB updates stored as an entry each')
  t.equal(itemsOf((await store.load('bulk')).updates).length, 30, 'every large update is in the store')

  // One the server made and gave up (a restore) is kept as it is, and reads back the same.
  const made = new Y.Doc()
  made.getArray('items').push(['made:' + 'y'.repeat(100_000)])
  const update = Y.encodeStateAsUpdate(made)
  // One edit's bytes, used twice: each edit() has a random client id, whose length varies.
  const after = edit('after')
  writeBehind.enqueue('made', update, true)
  writeBehind.enqueue('made', after)
  await writeBehind.flush()
  const loaded = await store.load('made')
  t.equal(loaded.updates.length, 2, 'an entry of its own, then the next')
  t.same(Buffer.from(loaded.updates[0]!), Buffer.from(update), 'read back as it was given')
  t.equal(loaded.bytes, update.length + encodeEntryValue([after]).length, 'and stored without a frame around it')
  t.same(itemsOf(loaded.updates).map(item => item.slice(0, 5)), ['after', 'made:'])
})

t.test('write-behind keeps every update through failed writes and writes them once the store is back', async t => {
  const { store } = await openTempLevelDb(t)
  let failures = 3
  const flaky: DocumentStore = Object.create(store, {
    append: { value: async (entries: AppendEntry[]) => { if (failures-- > 0) throw new Error('disk full'); return await store.append(entries) } }
  })
  const writeBehind = new WriteBehind(flaky, { intervalMs: 60_000, retryMaxMs: 1_000 }, createLogger('silent'))
  // 'bulk' spans several entries (the entry size is 256 KiB), so their order is put back as well.
  const big = (label: string): Uint8Array => edit(`${label}:${'x'.repeat(150_000)}`)
  writeBehind.enqueue('a', edit('a1'))
  writeBehind.enqueue('bulk', big('b1'))
  writeBehind.enqueue('bulk', big('b2'))
  await t.rejects(writeBehind.flush(), /disk full/)
  t.notOk(writeBehind.healthy)
  writeBehind.enqueue('a', edit('a2'))
  writeBehind.enqueue('c', edit('c1'))
  await t.rejects(writeBehind.flush(), /disk full/)
  writeBehind.enqueue('a', edit('a3'))
  await t.rejects(writeBehind.flush(), /disk full/, 'an odd number of failures: a reversal would show')
  t.equal(writeBehind.pendingDocuments, 3)
  await writeBehind.flush()
  t.ok(writeBehind.healthy, 'healthy again after a write went through')
  t.equal(writeBehind.pendingDocuments, 0)
  t.same(itemsOf((await store.load('a')).updates), ['a1', 'a2', 'a3'])
  t.same(itemsOf((await store.load('c')).updates), ['c1'])
  t.same((await store.load('bulk')).updates.map(u => itemsOf([u])[0]!.split(':')[0]), ['b1', 'b2'], 'in their original order')
})

t.test('write-behind: while the store fails, a document\'s pending updates stay bounded by its size, and none is lost', async t => {
  const { store } = await openTempLevelDb(t)
  let down = true
  const outage: DocumentStore = Object.create(store, {
    append: { value: async (entries: AppendEntry[]) => { if (down) throw new Error('database unreachable'); return await store.append(entries) } }
  })
  const source = new Y.Doc()
  const writeBehind = new WriteBehind(outage, { intervalMs: 60_000, retryMaxMs: 1_000, fullState: () => Y.encodeStateAsUpdate(source) }, createLogger('silent'))
  const text = source.getText('t')
  const type = (chars: string): void => {
    const sv = Y.encodeStateVector(source)
    text.insert(text.length, chars)
    writeBehind.enqueue('typed', Y.encodeStateAsUpdate(source, sv))
  }
  type('first')
  await t.rejects(writeBehind.flush(), /database unreachable/)
  // Someone keeps typing and deleting through a long outage: far more update bytes than content.
  let peak = 0
  let typed = 0
  for (let i = 0; i < 12_000; i++) {
    typed += 1_000
    type(`${i}:${'x'.repeat(1_000)}`)
    if (i % 2 === 0) text.delete(text.length - 1_005, 900)
    peak = Math.max(peak, writeBehind.pendingBytes)
  }
  const full = Y.encodeStateAsUpdate(source).length
  t.ok(peak < 8 * 1024 * 1024 + 2 * full + 64 * 1024, `pending peaked at ${(peak / 1048576).toFixed(1)} MiB for ${(typed / 1048576).toFixed(1)} MiB typed (deletions make the updates far larger) and a ${(full / 1048576).toFixed(1)} MiB document`)
  down = false
  await writeBehind.flush()
  const restored = new Y.Doc()
  for (const update of (await store.load('typed')).updates) Y.applyUpdate(restored, update)
  t.equal(restored.getText('t').toString(), text.toString(), 'the stored document is the whole document')
})
