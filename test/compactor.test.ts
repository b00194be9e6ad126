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
  compactor.appended(new Map([['long', 100]]))
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

t.test('writes count once however many entries they hold, but a log that outgrows its document is compacted', async t => {
  const fake = sharedStore()
  // The embedded store's case: it knows its last cursor, so memory alone is the snapshot.
  fake.store.lastCursor = () => '1-0'
  const compactor = new Compactor(fake.store, { compactAfterEntries: 200 }, createLogger('silent'))
  const doc = loadedDocument('growing', 1)
  t.teardown(() => { doc.destroy() })
  compactor.track(doc, 1)
  const MiB = 1024 * 1024
  // A bulk upload of 96 MiB into an empty document: below the 128 MiB floor, no compaction on its way.
  doc.sizeEstimate = 96 * MiB
  for (let i = 0; i < 6; i++) compactor.appended(new Map([['growing', 16 * MiB]]))
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fake.compactions.length, 0, '6 writes of 16 MiB: not yet')
  // The document stays about 96 MiB while large updates keep replacing its content.
  for (let i = 0; i < 2; i++) compactor.appended(new Map([['growing', 16 * MiB]]))
  await waitFor(() => fake.compactions.length === 1, 'compacted once 128 MiB were appended since the last compaction')
  t.equal(doc.bytesSinceCompaction, 0, 'the count starts again')
  t.equal(doc.entriesSinceCompaction, 0)
  // A document larger than the floor is compacted once as much as its own size was appended.
  doc.sizeEstimate = 200 * MiB + 150 * MiB
  compactor.appended(new Map([['growing', 150 * MiB]]))
  await new Promise(resolve => setImmediate(resolve))
  t.equal(fake.compactions.length, 1, '150 MiB appended to a 200 MiB document: not yet')
  doc.sizeEstimate += 51 * MiB
  compactor.appended(new Map([['growing', 51 * MiB]]))
  await waitFor(() => fake.compactions.length === 2, 'compacted once the appended bytes passed the document\'s size before them')
})
