import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { Compactor } from '../src/documents/compactor.js'
import type { LiveDocument } from '../src/documents/live-document.js'
import { DocumentRegistry } from '../src/documents/registry.js'
import { createLogger } from '../src/log/logger.js'
import { WriteBehind } from '../src/persistence/write-behind.js'
import { FlakyStore } from './helpers/flaky-store.js'
import { tempDir } from './helpers/server.js'
import { sleep, waitFor } from './helpers/wait.js'

const log = createLogger('silent')
const IDLE_UNLOAD_MS = 20

interface Setup {
  store: FlakyStore
  writeBehind: WriteBehind
  registry: DocumentRegistry
  unloaded: string[]
}

async function setUp (t: Test): Promise<Setup> {
  const store = new FlakyStore(tempDir())
  await store.open()
  const compactor = new Compactor(store, { compactAfterEntries: 1_000 }, log)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 50 }, log, undefined, compactor)
  const unloaded: string[] = []
  const registry = new DocumentRegistry(store, writeBehind, compactor, { idleUnloadMs: IDLE_UNLOAD_MS, unloadRetryMs: 30 }, log, [
    { afterUnload: async docId => { unloaded.push(docId) } }
  ])
  t.teardown(async () => {
    store.failing = false
    store.held = null
    await registry.closeAll(Date.now() + 1_000)
    await store.close()
  })
  return { store, writeBehind, registry, unloaded }
}

/** Applies an edit to a live document and queues it for the store, as a commit does. */
function edit (setup: Setup, doc: LiveDocument, label: string): void {
  const source = new Y.Doc()
  source.getArray('items').push([label])
  const update = Y.encodeStateAsUpdate(source)
  doc.apply(update, 'test')
  setup.writeBehind.enqueue(doc.id, update)
}

t.test('a join while the final flush of an unload is running keeps the same document alive', async t => {
  const setup = await setUp(t)
  const { store, registry } = setup
  const doc = await registry.acquire('race')
  edit(setup, doc, 'before')
  let release!: () => void
  store.held = new Promise(resolve => { release = resolve })
  registry.release(doc)
  await waitFor(() => store.attempts === 1, 'the unload started its flush')
  t.equal(doc.state, 'unloading')

  const again = registry.acquire('race')
  store.held = null
  release()
  const joined = await again
  t.equal(joined, doc, 'the join got the document that was being unloaded')
  await sleep(IDLE_UNLOAD_MS * 3)
  t.equal(doc.state, 'live', 'and it stayed live')
  t.same(setup.unloaded, [], 'nothing was unloaded')
  t.equal(registry.size, 1)
  t.same((await store.load('race')).updates.length, 1, 'the edit was stored by that flush')
  registry.release(joined)
  await waitFor(() => setup.unloaded.length === 1, 'unloaded once the last reference went')
})

t.test('an unload whose flush fails is retried and keeps the document until the store takes it', async t => {
  const setup = await setUp(t)
  const { store, registry } = setup
  const doc = await registry.acquire('stuck')
  edit(setup, doc, 'precious')
  store.failing = true
  registry.release(doc)
  await waitFor(() => store.attempts >= 2, 'the unload was retried')
  t.equal(registry.get('stuck'), doc, 'still in memory while its updates are not stored')
  t.equal(doc.state, 'live')
  store.failing = false
  await waitFor(() => setup.unloaded.includes('stuck'), 'unloaded after the store recovered')
  t.equal(registry.get('stuck'), undefined)

  const reloaded = await registry.acquire('stuck')
  t.not(reloaded, doc, 'a later join loads a fresh document')
  t.same(reloaded.ydoc.getArray('items').toArray(), ['precious'], 'with the content the unload stored')
  registry.release(reloaded)
})

t.test('joins racing a load share it, and a load that fails leaves nothing behind', async t => {
  const setup = await setUp(t)
  const { store, registry } = setup
  const [a, b] = await Promise.all([registry.acquire('shared'), registry.acquire('shared')])
  t.equal(a, b, 'one document for both joins')
  t.equal(a.refs, 2)
  registry.release(a)
  registry.release(b)

  const load = store.load.bind(store)
  store.load = async () => { throw new Error('cannot read') }
  await t.rejects(registry.acquire('broken'), /cannot read/)
  t.equal(registry.get('broken'), undefined, 'the failed document is not kept')
  t.same(setup.unloaded.filter(id => id === 'broken'), ['broken'], 'its lifecycle was told it left')
  store.load = load
  const fine = await registry.acquire('broken')
  t.equal(fine.state, 'live', 'a later join loads it')
  registry.release(fine)
})

t.test('a document changed while its before-unload hooks ran stays loaded, and leaves later with the change stored', async t => {
  const store = new FlakyStore(tempDir())
  await store.open()
  const compactor = new Compactor(store, { compactAfterEntries: 1_000 }, log)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 50 }, log, undefined, compactor)
  const unloaded: string[] = []
  let hooks = 0
  const registry: DocumentRegistry = new DocumentRegistry(store, writeBehind, compactor, { idleUnloadMs: IDLE_UNLOAD_MS, unloadRetryMs: 30 }, log, [{
    // The first time, a change arrives while the hook runs (a peer's edit during a long version).
    beforeUnload: async doc => {
      if (++hooks > 1) return
      await sleep(20)
      edit({ store, writeBehind, registry, unloaded }, doc, 'during the hook')
    },
    afterUnload: async docId => { unloaded.push(docId) }
  }])
  t.teardown(async () => { await registry.closeAll(Date.now() + 1_000); await store.close() })
  const doc = await registry.acquire('changing')
  edit({ store, writeBehind, registry, unloaded }, doc, 'before')
  registry.release(doc)
  await waitFor(() => unloaded.length === 1, 'the document unloads in the end')
  t.equal(hooks, 2, 'not on the first attempt: the change made during it kept the document loaded')
  const reloaded = await registry.acquire('changing')
  t.same(reloaded.ydoc.getArray('items').toArray().sort(), ['before', 'during the hook'], 'and the change was stored before it left')
  registry.release(reloaded)
})
