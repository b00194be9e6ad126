import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { createLogger } from '../src/log/logger.js'
import { WriteBehind } from '../src/persistence/write-behind.js'
import { FlakyStore } from './helpers/flaky-store.js'
import { tempDir } from './helpers/server.js'
import { sleep } from './helpers/wait.js'

async function openStore (t: Test): Promise<FlakyStore> {
  const store = new FlakyStore(tempDir())
  await store.open()
  t.teardown(async () => { await store.close() })
  return store
}

function edit (label: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getArray('items').push([label])
  return Y.encodeStateAsUpdate(doc)
}

async function storedItems (store: FlakyStore, docId: string): Promise<string[]> {
  const doc = new Y.Doc()
  for (const update of (await store.load(docId)).updates) Y.applyUpdate(doc, update)
  return (doc.getArray('items').toArray() as string[]).sort()
}

const log = createLogger('silent')

t.test('a failed write keeps every update, reports the failure and lands everything once the store recovers', async t => {
  const store = await openStore(t)
  const appended: string[][] = []
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 1_000 }, log, undefined, { appended: written => appended.push([...written.keys()]) })
  writeBehind.enqueue('a', edit('a1'))
  writeBehind.enqueue('b', edit('b1'))
  writeBehind.enqueue('a', edit('a2'))
  const bytes = writeBehind.pendingBytes

  store.failing = true
  await t.rejects(writeBehind.flush(), /disk on fire/)
  t.equal(writeBehind.healthy, false, 'unhealthy after a failure')
  t.equal(writeBehind.failure, 'disk on fire', 'the failure is reported')
  t.equal(writeBehind.pendingDocuments, 2, 'both documents still pending')
  // Put back as whole entries, which count their framing too.
  t.ok(writeBehind.pendingBytes >= bytes, 'no byte dropped')
  t.same(appended, [], 'nothing reported as appended')

  // More arrives while the store is down; it goes behind what was put back.
  writeBehind.enqueue('a', edit('a3'))
  store.failing = false
  await writeBehind.flush()
  t.equal(writeBehind.healthy, true, 'healthy again')
  t.equal(writeBehind.failure, null)
  t.equal(writeBehind.pendingDocuments, 0)
  t.same(await storedItems(store, 'a'), ['a1', 'a2', 'a3'])
  t.same(await storedItems(store, 'b'), ['b1'])
  t.same(appended.flat().sort(), ['a', 'b'], 'the listener hears of each document once per write, however many entries it had')
})

t.test('large updates are entries of their own, in buffers of their exact size; the listener hears of the document once per write', async t => {
  const store = await openStore(t)
  const written: Array<{ docId: string, value: Uint8Array }> = []
  const append = store.append.bind(store)
  store.append = async entries => {
    written.push(...entries)
    return await append(entries)
  }
  const appended: string[][] = []
  const writeBehind = new WriteBehind(store, { intervalMs: 60_000, retryMaxMs: 1_000 }, log, undefined, { appended: written => appended.push([...written.keys()]) })
  const writer = new Y.Doc()
  const updates: Uint8Array[] = []
  writer.on('update', (update: Uint8Array) => { updates.push(update) })
  writer.getArray('items').push(['small 1'])
  for (let i = 0; i < 5; i++) writer.getArray('items').push(['x'.repeat(64 * 1024) + String(i)])
  writer.getArray('items').push(['small 2'])
  for (const update of updates) writeBehind.enqueue('big', update)
  await writeBehind.flush()

  t.equal(written.length, 7, 'the small update before, each large one, the small one after: one entry each')
  for (const [i, { value }] of written.entries()) {
    if (i === 0 || i === written.length - 1) continue
    t.ok(value.buffer.byteLength <= updates[i]!.length + 11, `large entry ${i} allocated for its update only (${value.buffer.byteLength} bytes for ${updates[i]!.length})`)
  }
  t.same(appended, [['big']], 'one write, one report')
  const stored = new Y.Doc()
  for (const update of (await store.load('big')).updates) Y.applyUpdate(stored, update)
  t.same(stored.getArray('items').toJSON(), writer.getArray('items').toJSON(), 'every update stored, in order')
})

t.test('retries back off while the store keeps failing', async t => {
  const store = await openStore(t)
  const writeBehind = new WriteBehind(store, { intervalMs: 10, retryMaxMs: 60_000 }, log)
  t.teardown(() => writeBehind.stop())
  store.failing = true
  writeBehind.enqueue('doc', edit('x'))
  writeBehind.start()
  // Ticks every 10 ms: without backoff that would be ~40 attempts; with it the delays double
  // (20, 40, 80, 160 ms ...) so only a handful fit.
  await sleep(400)
  t.ok(store.attempts >= 2, `retried (${store.attempts} attempts)`)
  t.ok(store.attempts <= 8, `backed off (${store.attempts} attempts in 400 ms of 10 ms ticks)`)
  store.failing = false
  // The next retry is at most retryMaxMs away; flush() writes now whatever the schedule says.
  await writeBehind.flush()
  t.same(await storedItems(store, 'doc'), ['x'])
})

t.test('a flush waits for the write in flight and then writes what arrived during it', async t => {
  const store = await openStore(t)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 1_000 }, log)
  let release!: () => void
  store.held = new Promise(resolve => { release = resolve })
  writeBehind.enqueue('doc', edit('first'))
  const first = writeBehind.flush()
  writeBehind.enqueue('doc', edit('second'))
  const second = writeBehind.flush(['doc'])
  await sleep(20)
  t.equal(store.attempts, 1, 'the second write waits for the first')
  store.held = null
  release()
  await Promise.all([first, second])
  t.equal(store.attempts, 2)
  t.same(await storedItems(store, 'doc'), ['first', 'second'])
})

t.test('discard drops a deleted document\'s pending updates only', async t => {
  const store = await openStore(t)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 1_000 }, log)
  writeBehind.enqueue('gone', edit('g'))
  writeBehind.enqueue('kept', edit('k'))
  writeBehind.discard('gone')
  t.equal(writeBehind.hasPending('gone'), false)
  await writeBehind.flush()
  t.same(await storedItems(store, 'gone'), [])
  t.same(await storedItems(store, 'kept'), ['k'])
})
