import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { LiveDocument } from '../src/documents/live-document.js'
import { createLogger } from '../src/log/logger.js'
import { encodeEntryValue } from '../src/persistence/entry-value.js'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import { VersionHistory } from '../src/versions/version-history.js'
import { newVersionId } from '../src/versions/version-id.js'

// VersionHistory on its own over a real embedded store: what end-to-end tests reach only by
// timing (test/versions.test.ts covers the same behaviour through running nodes).

const DAY = 24 * 3600_000

async function setup (t: Test): Promise<{ store: LevelDbStore, history: VersionHistory, doc: LiveDocument }> {
  const dir = mkdtempSync(join(tmpdir(), 'version-history-'))
  const store = new LevelDbStore(dir, false)
  await store.open()
  t.teardown(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })
  const history = new VersionHistory(store, {
    idleMs: 60_000,
    maxIntervalMs: 600_000,
    retention: { keepAllMs: DAY, hourlyUntilMs: 7 * DAY, retentionMs: 30 * DAY, maxBytesPerDocument: 1 << 30 }
  }, async () => null, createLogger('silent'))
  const doc = new LiveDocument('doc')
  doc.state = 'live'
  doc.ydoc.getText('t').insert(0, 'before the merge')
  await store.append([{ docId: 'doc', value: encodeEntryValue([Y.encodeStateAsUpdate(doc.ydoc)]) }])
  t.teardown(() => doc.destroy())
  return { store, history, doc }
}

t.test('a batch that arrives while the merge version of its sync step 2 is still being written gets that version', async t => {
  const { store, history, doc } = await setup(t)
  const afterSyncStep2 = history.planOfflineMerge(doc, undefined)
  doc.ydoc.getText('t').insert(0, 'offline ')
  const first = afterSyncStep2(true) // not awaited: the write is under way
  const afterBatch = history.planOfflineMerge(doc, undefined)
  const second = afterBatch(true)
  const [a, b] = await Promise.all([first, second])
  t.not(a, '', 'a version was taken')
  t.equal(b, a, 'the batch\'s acknowledgement names the same version')
  const versions = await store.listVersions('doc', { limit: 10 })
  t.same(versions.map(v => v.reason), ['before-offline-merge'], 'one version, not two')
})

t.test('versions past the retention period go when the document is unloaded, without a new version', async t => {
  const { store, history } = await setup(t)
  const state = Y.encodeStateAsUpdate(new Y.Doc())
  const old = Date.now() - 40 * DAY
  const meta = { id: newVersionId(old), createdAt: new Date(old).toISOString(), reason: 'auto' as const, label: null, bytes: state.length, authors: [] }
  await store.saveVersion('doc', meta, state)
  const recent = { ...meta, id: newVersionId(Date.now() - 1000), createdAt: new Date(Date.now() - 1000).toISOString() }
  await store.saveVersion('doc', recent, state)
  await history.afterUnload('doc')
  let ids: string[] = []
  for (let i = 0; i < 100; i++) {
    ids = (await store.listVersions('doc', { limit: 10 })).map(v => v.id)
    if (ids.length === 1) break
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  t.same(ids, [recent.id], 'the 40-day-old version was dropped, the recent one kept')
})

t.test('a document is unloaded only after its automatic version still being encoded was written; edits made meanwhile get the next', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'version-history-'))
  const store = new LevelDbStore(dir, false)
  await store.open()
  t.teardown(async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) })
  const doc = new LiveDocument('doc')
  doc.state = 'live'
  t.teardown(() => doc.destroy())
  let encoded = (_state: Uint8Array): void => {}
  let asked = 0
  const history = new VersionHistory(store, {
    idleMs: 50,
    maxIntervalMs: 600_000,
    retention: { keepAllMs: DAY, hourlyUntilMs: 7 * DAY, retentionMs: 30 * DAY, maxBytesPerDocument: 1 << 30 }
  }, async () => {
    // The first: a large document's state, still being encoded a piece per turn.
    if (++asked > 1) return Y.encodeStateAsUpdate(doc.ydoc)
    const state = Y.encodeStateAsUpdate(doc.ydoc)
    return await new Promise<Uint8Array>(resolve => { encoded = () => { resolve(state) } })
  }, createLogger('silent'))
  t.teardown(() => history.stop())
  doc.ydoc.getText('t').insert(0, 'alice ')
  history.noteChange('doc', 'alice')
  history.start()
  for (let i = 0; i < 100 && asked === 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(asked, 1, 'the sweep started the version')
  // Bob edits while alice's version is encoded: his edit is not in it.
  doc.ydoc.getText('t').insert(0, 'bob ')
  history.noteChange('doc', 'bob')
  history.stop()
  let unloaded = false
  const unloading = history.beforeUnload(doc).then(() => { unloaded = true })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.notOk(unloaded, 'the unload waits for the version')
  encoded(new Uint8Array())
  await unloading
  const versions = await store.listVersions('doc', { limit: 10 })
  t.same(versions.map(v => [v.reason, v.authors]), [['auto', ['bob']], ['auto', ['alice']]], 'alice\'s version, then bob\'s before the document left')
  const newest = new Y.Doc()
  Y.applyUpdate(newest, (await store.loadVersion('doc', versions[0]!.id))!)
  t.equal(newest.getText('t').toString(), 'bob alice ', 'the last version holds bob\'s edit')
})
