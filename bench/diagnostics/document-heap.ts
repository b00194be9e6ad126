/**
 * Heap per loaded document, in one process and without sockets: 5,000 LiveDocuments, each with
 * one client's presence applied as the server does, measured after full GCs (three
 * rounds; the first includes one-off allocations). RSS figures from `idle-memory --docs 5000`
 * move by about ±0.6 KiB per document between runs; this moves by a few bytes, so it shows
 * what a change to a document's own objects saves.
 *
 *   node --expose-gc --import tsx bench/diagnostics/document-heap.ts
 */
import * as Y from 'yjs'
import { Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness'
import { LiveDocument } from '../../src/documents/live-document.js'
import type { AwarenessOwner } from '../../src/documents/presence.js'
import { readAwarenessEntries } from '../../src/protocol/awareness-entries.js'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const DOCUMENTS = 5000
const limits = { maxStateBytes: 65_536, maxStateDepth: 16, maxClientsPerConnection: 4, maxEntriesPerDocument: 1000, maxBytesPerDocument: 1 << 20 }
const client = new Awareness(new Y.Doc())
client.setLocalState({ user: { name: 'a person', color: '#30bced' } })
const presence = encodeAwarenessUpdate(client, [client.clientID])

const held: LiveDocument[] = []
for (let round = 1; round <= 3; round++) {
  for (const doc of held) doc.destroy()
  held.length = 0
  gc(); gc()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < DOCUMENTS; i++) {
    const doc = new LiveDocument(`doc-${round}-${i}`)
    const owner: AwarenessOwner = { awarenessClients: null, userId: 'user' }
    doc.presence.apply(readAwarenessEntries(presence, limits), owner, limits)
    held.push(doc)
  }
  gc(); gc()
  console.log(`round ${round}: ${Math.round((process.memoryUsage().heapUsed - before) / DOCUMENTS)} bytes of heap per document`)
}
process.exit(0)
