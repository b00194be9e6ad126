import t from 'tap'
import * as Y from 'yjs'
import { Compactor } from '../src/documents/compactor.js'
import { LiveDocument } from '../src/documents/live-document.js'
import { createLogger } from '../src/log/logger.js'
import type { DocumentStore } from '../src/persistence/document-store.js'
import { waitFor } from './helpers/wait.js'

// A log found long at load is compacted a little later, from memory, up to the cursor it was
// loaded through: not while the clients that caused the load sync, and without reading the
// document again (a shared store, where this node is not the only writer, included).

function sharedStore (): { store: DocumentStore, loads: number, compactions: Array<{ docId: string, snapshot: Uint8Array, cursor: string }> } {
  const record = { loads: 0, compactions: [] as Array<{ docId: string, snapshot: Uint8Array, cursor: string }> }
  const store = {
    name: 'fake',
    load: async () => { record.loads++; return { updates: [], cursor: null, bytes: 0 } },
    compact: async (docId: string, snapshot: Uint8Array, cursor: string) => { record.compactions.push({ docId, snapshot, cursor }) },
    // Other nodes append too: no cursor is known without reading.
    lastCursor: () => null
  } as unknown as DocumentStore
  return Object.assign(record, { store })
}

function loadedDocument (id: string, updates: number): LiveDocument {
  const doc = new LiveDocument(id)
  const writer = new Y.Doc()
  const stored: Uint8Array[] = []
  writer.on('update', (update: Uint8Array) => { stored.push(update) })
  for (let i = 0; i < updates; i++) writer.getArray<number>('a').push([i])
  doc.applyStored(stored)
  doc.state = 'live'
  return doc
}

t.test('a long log is compacted after the delay, from memory, up to the cursor of the load', async t => {
  const fake = sharedStore()
  const compactor = new Compactor(fake.store, { compactAfterEntries: 10, compactAfterLoadMs: 50 }, createLogger('silent'))
  const doc = loadedDocument('long', 20)
  t.teardown(() => { doc.destroy() })
  compactor.track(doc, 20, '1700000000000-3')
  // The joining clients' first edits are appended meanwhile: they do not bring it forward.
  compactor.appended(['long'])
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fake.compactions.length, 0, 'not while the load\'s clients sync')
  t.equal(fake.loads, 0, 'nor read again for an append meanwhile')
  await waitFor(() => fake.compactions.length === 1, 'compacted once the delay passed')
  const [compaction] = fake.compactions
  t.equal(compaction!.cursor, '1700000000000-3', 'up to the entry the load read last')
  const restored = new Y.Doc()
  Y.applyUpdate(restored, compaction!.snapshot)
  t.same(restored.getArray('a').toJSON(), doc.ydoc.getArray('a').toJSON(), 'the snapshot is the document in memory')
  t.equal(fake.loads, 0, 'the document was not read again')
})

t.test('a short log, or a document gone before the delay, is left alone', async t => {
  const fake = sharedStore()
  const compactor = new Compactor(fake.store, { compactAfterEntries: 10, compactAfterLoadMs: 20 }, createLogger('silent'))
  const short = loadedDocument('short', 5)
  const gone = loadedDocument('gone', 20)
  t.teardown(() => { short.destroy(); gone.destroy() })
  compactor.track(short, 5, '1-0')
  compactor.track(gone, 20, '2-0')
  compactor.forget('gone')
  gone.state = 'unloaded'
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(fake.compactions, [], 'nothing compacted')
})
