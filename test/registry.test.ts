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

/** A registry whose before-unload hook runs `during` (once) while it holds the unload up. */
async function withHook (t: Test, during: (setup: Setup, doc: LiveDocument) => Promise<void>): Promise<Setup & { hooks: () => number }> {
  const store = new FlakyStore(tempDir())
  await store.open()
  const compactor = new Compactor(store, { compactAfterEntries: 1_000 }, log)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 50 }, log, undefined, compactor)
  const unloaded: string[] = []
  let hooks = 0
  const setup: Setup = { store, writeBehind, registry: null as unknown as DocumentRegistry, unloaded }
  setup.registry = new DocumentRegistry(store, writeBehind, compactor, { idleUnloadMs: IDLE_UNLOAD_MS, unloadRetryMs: 30 }, log, [{
    beforeUnload: async doc => {
      if (++hooks > 1) return
      await sleep(20)
      await during(setup, doc)
    },
    afterUnload: async docId => { unloaded.push(docId) }
  }])
  t.teardown(async () => { await setup.registry.closeAll(Date.now() + 1_000); await store.close() })
  return { ...setup, hooks: () => hooks }
}

t.test('a document used on this node while its before-unload hooks ran stays loaded, and leaves later with the change stored', async t => {
  const setup = await withHook(t, async (setup, doc) => {
    // A client comes, edits and goes while the hook (a large document's version) runs.
    const same = await setup.registry.acquire(doc.id)
    edit(setup, same, 'during the hook')
    setup.registry.release(same)
  })
  const doc = await setup.registry.acquire('changing')
  edit(setup, doc, 'before')
  setup.registry.release(doc)
  await waitFor(() => setup.unloaded.length === 1, 'the document unloads in the end')
  t.equal(setup.hooks(), 2, 'not on the first attempt: the use during it kept the document loaded')
  const reloaded = await setup.registry.acquire('changing')
  t.same(reloaded.ydoc.getArray('items').toArray().sort(), ['before', 'during the hook'], 'and the change was stored before it left')
  setup.registry.release(reloaded)
})

t.test('a peer\'s edit during the before-unload hooks is stored, and the document still leaves', async t => {
  // A peer's edit: applied and queued for the store without the document being acquired here.
  const setup = await withHook(t, async (setup, doc) => { edit(setup, doc, 'from a peer') })
  const doc = await setup.registry.acquire('edited-elsewhere')
  edit(setup, doc, 'before')
  setup.registry.release(doc)
  await waitFor(() => setup.unloaded.length === 1, 'the document unloads')
  t.equal(setup.hooks(), 1, 'at the first attempt: edits made on other nodes do not keep it here')
  const reloaded = await setup.registry.acquire('edited-elsewhere')
  t.same(reloaded.ydoc.getArray('items').toArray().sort(), ['before', 'from a peer'], 'with the peer\'s edit stored')
  setup.registry.release(reloaded)
})

t.test('a document deleted while its before-unload hooks ran is not brought back, nor is its successor evicted', async t => {
  let successor: LiveDocument | null = null
  const setup = await withHook(t, async (setup, doc) => {
    await setup.registry.drop(doc.id)
    successor = await setup.registry.acquire(doc.id)
  })
  const doc = await setup.registry.acquire('deleted')
  setup.registry.release(doc)
  await waitFor(() => successor !== null, 'the document was deleted and opened again')
  await sleep(IDLE_UNLOAD_MS * 5)
  t.equal(doc.state, 'unloaded', 'the deleted document stays unloaded')
  t.equal(setup.registry.get('deleted'), successor, 'the one opened since is still the registry\'s')
  t.equal(successor!.state, 'live')
  setup.registry.release(successor!)
})

t.test('a document deleted while it loads never comes alive: its joins fail and nothing keeps it', async t => {
  class HeldLoads extends FlakyStore {
    loadHeld: Promise<void> | null = null
    override async load (docId: string): ReturnType<FlakyStore['load']> {
      if (this.loadHeld !== null) await this.loadHeld
      return await super.load(docId)
    }
  }
  const store = new HeldLoads(tempDir())
  await store.open()
  const compactor = new Compactor(store, { compactAfterEntries: 1_000 }, log)
  const writeBehind = new WriteBehind(store, { intervalMs: 1_000, retryMaxMs: 50 }, log, undefined, compactor)
  const unloaded: string[] = []
  const registry = new DocumentRegistry(store, writeBehind, compactor, { idleUnloadMs: IDLE_UNLOAD_MS, unloadRetryMs: 30 }, log, [{ afterUnload: async docId => { unloaded.push(docId) } }])
  t.teardown(async () => { await registry.closeAll(Date.now() + 1_000); await store.close() })
  let release = (): void => {}
  store.loadHeld = new Promise(resolve => { release = resolve })
  const joining = registry.acquire('deleted-while-loading')
  joining.catch(() => {})
  await sleep(20)
  await registry.drop('deleted-while-loading')
  release()
  await t.rejects(joining, { name: 'Error', message: /was deleted/ }, 'the join fails')
  t.equal(registry.get('deleted-while-loading'), undefined, 'the registry does not hold it')
  t.notOk((compactor as unknown as { docs: Map<string, unknown> }).docs.has('deleted-while-loading'), 'nor does the compactor')
  t.same(unloaded, ['deleted-while-loading'], 'its observers were told once, by the delete')
  store.loadHeld = null
  const again = await registry.acquire('deleted-while-loading')
  t.equal(again.state, 'live', 'opened again later, it loads')
  registry.release(again)
})
