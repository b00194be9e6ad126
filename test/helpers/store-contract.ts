import type { Test } from 'tap'
import * as Y from 'yjs'
import type { DocumentStore } from '../../src/persistence/document-store.js'
import { encodeEntryValue } from '../../src/persistence/entry-value.js'

// What every DocumentStore must do, for the tests of each store.

export function edit (label: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getArray('items').push([label])
  return Y.encodeStateAsUpdate(doc)
}

export function itemsOf (updates: Uint8Array[]): string[] {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  return (doc.getArray('items').toJSON() as string[]).sort()
}

/**
 * Several writers append while compactions run from several "nodes" at once, each from its own
 * possibly stale load; nothing appended may ever disappear.
 */
export async function appendWhileCompacting (t: Test, writers: DocumentStore[]): Promise<void> {
  const expected: string[] = []
  let stop = false
  const appenders = writers.map(async (store, w) => {
    for (let i = 0; i < 60; i++) {
      const label = `w${w}-${i}`
      expected.push(label)
      await store.append([{ docId: 'doc', value: encodeEntryValue([edit(label)]) }])
    }
  })
  const compactors = writers.map(async store => {
    while (!stop) {
      const loaded = await store.load('doc')
      if (loaded.cursor !== null && loaded.updates.length > 1) {
        const merged = Y.mergeUpdates(loaded.updates)
        await store.compact('doc', merged, loaded.cursor)
      }
      await new Promise(resolve => setImmediate(resolve))
    }
  })
  await Promise.all(appenders)
  stop = true
  await Promise.all(compactors)
  const final = await writers[0]!.load('doc')
  t.same(itemsOf(final.updates), expected.sort(), 'every appended update survives concurrent compaction')
  t.ok(final.updates.length < expected.length, `compaction reduced ${expected.length} entries to ${final.updates.length}`)
}

