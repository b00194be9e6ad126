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


/** What every store must do with versions: list newest first, page, read, delete, forget with the document. */
export async function versionContract (t: Test, store: DocumentStore, docId = 'versioned'): Promise<void> {
  const { newVersionId } = await import('../../src/versions/version-id.js')
  const base = Date.parse('2026-12-01T10:00:00.000Z')
  const metas = [0, 1, 2, 3].map(i => {
    const id = newVersionId(base + i * 60_000)
    return { id, createdAt: new Date(base + i * 60_000).toISOString(), reason: i === 2 ? 'named' as const : 'auto' as const, label: i === 2 ? 'Before the launch' : null, bytes: 0, authors: [`user-${i}`, 'shared'] }
  })
  const states = metas.map((_m, i) => edit(`v${i}`))
  t.same(await store.listVersions(docId, { limit: 10 }), [], 'no versions yet')
  // Saved out of order: the id, not the order of writing, decides the listing.
  for (const i of [1, 0, 3, 2]) await store.saveVersion(docId, { ...metas[i]!, bytes: states[i]!.length }, states[i]!)
  await store.saveVersion(`${docId}-other`, { ...metas[0]!, bytes: 1 }, edit('other'))
  const listed = await store.listVersions(docId, { limit: 10 })
  t.same(listed.map(v => v.id), [3, 2, 1, 0].map(i => metas[i]!.id), 'newest first')
  t.same(listed[1], { ...metas[2], bytes: states[2]!.length }, 'metadata read back as written')
  t.same((await store.listVersions(docId, { limit: 2 })).map(v => v.id), [metas[3]!.id, metas[2]!.id], 'limit')
  t.same((await store.listVersions(docId, { limit: 10, before: metas[2]!.id })).map(v => v.id), [metas[1]!.id, metas[0]!.id], 'before: older than the given version')
  t.same(itemsOf([(await store.loadVersion(docId, metas[1]!.id))!]), ['v1'], 'a version\'s state')
  t.equal(await store.loadVersion(docId, 'no-such-version'), null)
  await store.deleteVersions(docId, [metas[0]!.id, metas[3]!.id])
  t.same((await store.listVersions(docId, { limit: 10 })).map(v => v.id), [metas[2]!.id, metas[1]!.id], 'deleted versions are gone')
  t.equal(await store.loadVersion(docId, metas[0]!.id), null, 'with their state')
  await store.append([{ docId, value: encodeEntryValue([edit('content')]) }])
  await store.delete(docId)
  t.same(await store.listVersions(docId, { limit: 10 }), [], 'deleting the document deletes its versions')
  t.equal(await store.loadVersion(docId, metas[1]!.id), null)
  t.equal((await store.listVersions(`${docId}-other`, { limit: 10 })).length, 1, 'another document\'s versions stay')
  await store.delete(`${docId}-gone`, 60)
  await t.rejects(store.saveVersion(`${docId}-gone`, { ...metas[0]!, bytes: 1 }, edit('late')), { message: `document ${docId}-gone was deleted` }, 'a version of a document deleted meanwhile is not written')
  t.same(await store.listVersions(`${docId}-gone`, { limit: 10 }), [])
}
