import { rmSync } from 'node:fs'
import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import type { VersionMeta } from '../src/persistence/document-store.js'
import { connectBatchClient } from './helpers/batch-clients.js'
import { waitSynced } from './helpers/clients.js'
import { spawnServer } from './helpers/process.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis } from './helpers/redis.js'
import { STORE_KINDS, stopStoreServers } from './helpers/store-kinds.js'
import { startTestServer, tempDir, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

interface Meta { id: string, createdAt: string, reason: string, label: string | null, bytes: number, authors: string[] }

/** One HTTP call of the version API with a bearer token; the body parsed when it is JSON. */
async function api (port: number, method: string, path: string, token: string | null, body?: unknown): Promise<{ status: number, json: any, bytes: Uint8Array }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const bytes = new Uint8Array(await res.arrayBuffer())
  let json: any = null
  if ((res.headers.get('content-type') ?? '').includes('json')) json = JSON.parse(new TextDecoder().decode(bytes))
  return { status: res.status, json, bytes }
}

async function writer (t: Test, server: { url: string }, docId: string, sub: string): Promise<{ doc: Y.Doc, provider: { synced: boolean, destroy: () => void } }> {
  const person = stockProvider('3.1.0', server.url, docId, { token: await signToken({ sub }) })
  t.teardown(() => { person.provider.destroy(); person.doc.destroy() })
  await waitFor(() => person.provider.synced, `${sub} synced`)
  return person
}

const ENV = { VERSION_IDLE_SECONDS: '1', VERSION_MAX_INTERVAL_SECONDS: '3', DOC_IDLE_UNLOAD_MS: '60000' }

t.teardown(stopStoreServers)

/** Every store a node can keep documents (and so versions) in; `env` selects a fresh one. */
const STORES: Array<{ name: string, env: (t: Test, dataDir: string) => Promise<Record<string, string>> }> = [
  ...STORE_KINDS.map(kind => ({ name: kind.name, env: async (_t: Test, dataDir: string) => ({ ...await kind.env(dataDir) }) as Record<string, string> })),
  {
    name: 'Redis store (one node)',
    env: async (t: Test, dataDir: string) => {
      const redis = await startRedis()
      t.teardown(redis.cleanup)
      return { DATA_DIR: dataDir, REDIS_URL: redis.url }
    }
  }
]

/** A node of ours on each store in turn, with `ENV` and the store's variables. */
function forEachStore (title: string, body: (t: Test, env: Record<string, string>) => Promise<void>): void {
  for (const store of STORES) {
    t.test(`${store.name}: ${title}`, async t => {
      const dataDir = tempDir()
      t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
      await body(t, { ...ENV, ...await store.env(t, dataDir) })
    })
  }
}

forEachStore('automatic versions: one after editing pauses, with its authors, none for a document that did not change', async (t, env) => {
  const node = await startTestServer(env)
  t.teardown(node.close)
  const token = await signToken({ sub: 'reader' })
  const alice = await writer(t, node, 'auto-doc', 'alice')
  const bob = await writer(t, node, 'auto-doc', 'bob')
  alice.doc.getText('text').insert(0, 'Hello ')
  bob.doc.getText('text').insert(0, 'World')
  await waitFor(async () => (await api(node.port, 'GET', '/documents/auto-doc/versions', token)).json?.versions?.length === 1, 'a version after the pause', 5_000)
  const [first] = (await api(node.port, 'GET', '/documents/auto-doc/versions', token)).json.versions as Meta[]
  t.equal(first!.reason, 'auto')
  t.same(first!.authors, ['alice', 'bob'], 'the verified users who edited')
  t.ok(first!.bytes > 0 && Date.parse(first!.createdAt) > Date.now() - 10_000)
  await sleep(2_500)
  t.equal((await api(node.port, 'GET', '/documents/auto-doc/versions', token)).json.versions.length, 1, 'no new version while nothing changed')

  // Continuous editing: at least one version every VERSION_MAX_INTERVAL_SECONDS.
  const started = Date.now()
  while (Date.now() - started < 4_000) {
    alice.doc.getText('text').insert(0, '.')
    await sleep(200)
  }
  const during = (await api(node.port, 'GET', '/documents/auto-doc/versions', token)).json.versions as Meta[]
  t.ok(during.length >= 2, `a version during 4 s of continuous editing (${during.length} in all)`)
  t.same(during[0]!.authors, ['alice'], 'only who edited since the previous version')

  const quiet = await writer(t, node, 'quiet-doc', 'carol')
  quiet.doc.getMap('m').set('k', 1)
  await waitFor(async () => (await api(node.port, 'GET', '/documents/quiet-doc/versions', token)).json?.versions?.length === 1, 'quiet-doc versioned once')
  const reader = await writer(t, node, 'quiet-doc', 'dave') // joins and reads only
  await sleep(2_500)
  t.ok(reader.provider.synced)
  t.equal((await api(node.port, 'GET', '/documents/quiet-doc/versions', token)).json.versions.length, 1, 'reading a document takes no version')
})

forEachStore('named versions, listing, paging, state and JSON; errors for bad ids, unknown documents and versions', async (t, env) => {
  const node = await startTestServer(env)
  t.teardown(node.close)
  const token = await signToken({ sub: 'editor' })
  const person = await writer(t, node, 'named-doc', 'editor')
  person.doc.getText('text').insert(0, 'First draft')
  person.doc.getMap('meta').set('title', 'Draft')
  await sleep(200)
  const created = await api(node.port, 'POST', '/documents/named-doc/versions', token, { label: 'First draft' })
  t.equal(created.status, 201)
  t.match(created.json, { reason: 'named', label: 'First draft', authors: ['editor'] })
  person.doc.getText('text').insert(0, 'Second: ')
  await sleep(200)
  const second = await api(node.port, 'POST', '/documents/named-doc/versions', token, { label: 'Second' })
  const list = await api(node.port, 'GET', '/documents/named-doc/versions', token)
  t.same(list.json.versions.map((v: Meta) => v.id), [second.json.id, created.json.id], 'newest first')
  t.equal(list.json.docId, 'named-doc')
  const paged = await api(node.port, 'GET', `/documents/named-doc/versions?limit=1&before=${second.json.id as string}`, token)
  t.same(paged.json.versions.map((v: Meta) => v.id), [created.json.id], 'before= pages to older versions')
  t.equal((await api(node.port, 'GET', '/documents/named-doc/versions?limit=1', token)).json.versions.length, 1)

  const state = await api(node.port, 'GET', `/documents/named-doc/versions/${created.json.id as string}`, token)
  t.equal(state.status, 200)
  const copy = new Y.Doc()
  Y.applyUpdate(copy, state.bytes)
  t.equal(copy.getText('text').toString(), 'First draft', 'the state is one Yjs update')
  const json = await api(node.port, 'GET', `/documents/named-doc/versions/${created.json.id as string}/json`, token)
  t.same(json.json, { text: 'First draft', meta: { title: 'Draft' } }, 'JSON in the shape of the admin API')

  const diff = await api(node.port, 'GET', `/documents/named-doc/versions/${created.json.id as string}/diff?to=${second.json.id as string}`, token)
  t.same(diff.json, { docId: 'named-doc', from: created.json.id, to: second.json.id, types: { text: { kind: 'text', changes: [{ op: 'insert', index: 0, text: 'Second: ' }] }, meta: { kind: 'map', added: {}, removed: {}, changed: {} } } }, 'diff between two versions')
  person.doc.getMap('meta').set('title', 'Final')
  await sleep(200)
  const toCurrent = await api(node.port, 'GET', `/documents/named-doc/versions/${second.json.id as string}/diff`, token)
  t.same(toCurrent.json.types.meta, { kind: 'map', added: {}, removed: {}, changed: { title: { from: 'Draft', to: 'Final' } } }, 'diff to the current document by default')
  t.equal((await api(node.port, 'GET', `/documents/named-doc/versions/${second.json.id as string}/diff?to=nope..`, token)).status, 400)
  t.equal((await api(node.port, 'GET', `/documents/named-doc/versions/${second.json.id as string}/diff?to=000000000missing`, token)).status, 404)
  t.equal((await api(node.port, 'GET', '/documents/named-doc/versions/not..valid', token)).status, 400, 'malformed id')
  t.equal((await api(node.port, 'GET', `/documents/named-doc/versions/${'x'.repeat(65)}`, token)).status, 400, 'too long')
  t.equal((await api(node.port, 'GET', '/documents/named-doc/versions/000000000missing', token)).status, 404, 'unknown version')
  const never = await api(node.port, 'GET', '/documents/never-written/versions', token)
  t.equal(never.status, 404, 'a document that was never written')
  t.equal(never.json.error, 'document_not_found')
  t.equal((await api(node.port, 'GET', `/documents/never-written/versions?before=${second.json.id as string}`, token)).status, 404, 'paging a document that was never written')
  t.same((await api(node.port, 'GET', '/documents/named-doc/versions?before=000000000000', token)).json.versions, [], 'paging past the oldest version: an empty page')
  t.equal((await api(node.port, 'POST', '/documents/named-doc/versions', token, { label: '' })).status, 400, 'empty label')
  t.equal((await api(node.port, 'POST', '/documents/named-doc/versions', token, { label: 'x'.repeat(201) })).status, 400, 'label too long')
})

t.test('authorization follows the document\'s own rules', async t => {
  const node = await startTestServer(ENV)
  t.teardown(node.close)
  const person = await writer(t, node, 'guarded', 'owner')
  person.doc.getText('text').insert(0, 'content')
  await sleep(200)
  const owner = await signToken({ sub: 'owner' })
  const version = (await api(node.port, 'POST', '/documents/guarded/versions', owner, { label: 'v' })).json as Meta
  const readOnly = await signToken({ sub: 'viewer', docs: { guarded: 'read-only' } })
  const other = await signToken({ sub: 'stranger', docs: { 'other-doc': 'read-write' } })
  const admin = await signToken({ sub: 'admin', extra: { admin: true } })
  t.equal((await api(node.port, 'GET', '/documents/guarded/versions', null)).status, 401, 'no token')
  t.equal((await api(node.port, 'GET', '/documents/guarded/versions', 'not-a-jwt')).status, 401, 'bad token')
  t.equal((await api(node.port, 'GET', '/documents/guarded/versions', readOnly)).status, 200, 'read-only may list')
  t.equal((await api(node.port, 'GET', `/documents/guarded/versions/${version.id}`, readOnly)).status, 200, 'and read')
  t.equal((await api(node.port, 'POST', `/documents/guarded/versions/${version.id}/restore`, readOnly)).status, 403, 'but not restore')
  t.equal((await api(node.port, 'POST', '/documents/guarded/versions', readOnly, { label: 'x' })).status, 403, 'nor create')
  t.equal((await api(node.port, 'GET', '/documents/guarded/versions', other)).status, 403, 'another document\'s token')
  t.equal((await api(node.port, 'DELETE', `/documents/guarded/versions/${version.id}`, owner)).status, 403, 'delete needs admin')
  const revoke = await fetch(`http://127.0.0.1:${node.port}/admin/revocations`, { method: 'POST', headers: { authorization: `Bearer ${admin}` }, body: JSON.stringify({ docId: 'guarded', userId: 'viewer' }) })
  t.equal(revoke.status, 200)
  t.equal((await api(node.port, 'GET', '/documents/guarded/versions', readOnly)).status, 403, 'a revoked user is refused')
  t.equal((await api(node.port, 'GET', `/documents/guarded/versions?token=${owner}`, null)).status, 401, 'a token in the query string is not accepted')
  t.equal((await api(node.port, 'DELETE', `/documents/guarded/versions/${version.id}`, admin)).status, 204, 'admin deletes')
  t.equal((await api(node.port, 'GET', `/documents/guarded/versions/${version.id}`, owner)).status, 404, 'gone')
})

/** Builds every kind of shared type a front end uses, in one client's document. */
function fill (doc: Y.Doc, round: string): void {
  doc.transact(() => {
    const text = doc.getText('text')
    text.delete(0, text.length)
    text.insert(0, `${round} text, partly bold`)
    text.format(0, round.length, { bold: true })
    doc.getMap('map').set('round', round)
    const nested = new Y.Map<unknown>()
    nested.set('inner', round)
    doc.getMap('map').set('nested', nested)
    const list = doc.getArray('list')
    list.delete(0, list.length)
    list.push([`${round}-a`, `${round}-b`])
    const prose = doc.getXmlFragment('prose')
    prose.delete(0, prose.length)
    const paragraph = new Y.XmlElement('paragraph')
    paragraph.insert(0, [new Y.XmlText(`${round} paragraph`)])
    prose.insert(0, [paragraph])
  })
}

function view (doc: Y.Doc): unknown {
  return { text: doc.getText('text').toDelta(), map: doc.getMap('map').toJSON(), list: doc.getArray('list').toJSON(), prose: doc.getXmlFragment('prose').toString() }
}

for (const mode of ['one node', 'two nodes over Redis'] as const) {
  t.test(`${mode}: a restore reaches every client live while others edit, and the before-restore version undoes it`, async t => {
    let nodes: TestServer[]
    if (mode === 'one node') {
      nodes = [await startTestServer(ENV)]
    } else {
      const redis = await startRedis()
      t.teardown(redis.cleanup)
      nodes = [await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'v-1' }), await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'v-2' })]
    }
    t.teardown(async () => { for (const n of nodes) await n.close() })
    const a = await writer(t, nodes[0]!, 'restored', 'alice')
    const b = await writer(t, nodes[nodes.length - 1]!, 'restored', 'bob')
    const token = await signToken({ sub: 'alice' })
    fill(a.doc, 'original')
    await waitFor(() => JSON.stringify(view(b.doc)) === JSON.stringify(view(a.doc)), 'b has the original')
    const original = view(a.doc)
    const version = (await api(nodes[0]!.port, 'POST', '/documents/restored/versions', token, { label: 'original' })).json as Meta
    fill(b.doc, 'rewritten')
    b.doc.getArray('extra').push(['not in the version'])
    await waitFor(() => JSON.stringify(view(a.doc)) === JSON.stringify(view(b.doc)), 'a has the rewrite')
    const rewritten = view(a.doc)

    // Both keep editing an unrelated part while the restore happens (on the other node in a cluster).
    let editing = true
    const edits = (async () => { for (let i = 0; editing; i++) { a.doc.getMap('side').set(`a${i}`, i); b.doc.getMap('side').set(`b${i}`, i); await sleep(20) } })()
    await sleep(100)
    const restored = await api(nodes[nodes.length - 1]!.port, 'POST', `/documents/restored/versions/${version.id}/restore`, token)
    t.equal(restored.status, 200)
    t.equal(restored.json.restoredFrom, version.id)
    await sleep(200)
    editing = false
    await edits
    for (const [name, person] of [['a', a], ['b', b]] as const) {
      await waitFor(() => JSON.stringify(view(person.doc)) === JSON.stringify(original), `${name} sees the restored version without reconnecting`)
    }
    t.same(a.doc.getArray('extra').toJSON(), [], 'a type the version lacks is emptied')
    t.equal(a.doc.getMap('side').size, b.doc.getMap('side').size, 'the concurrent edits stay, on both')
    t.ok(a.doc.getMap('side').size > 4)
    const serverJson = await fetch(`http://127.0.0.1:${nodes[0]!.port}/admin/documents/restored/json`, { headers: { authorization: `Bearer ${await signToken({ sub: 'admin', extra: { admin: true } })}` } })
    t.match(await serverJson.json(), { text: 'original text, partly bold', map: { round: 'original', nested: { inner: 'original' } }, list: ['original-a', 'original-b'] }, 'the server holds it too')

    const undo = await api(nodes[0]!.port, 'POST', `/documents/restored/versions/${restored.json.beforeRestore as string}/restore`, token)
    t.equal(undo.status, 200)
    await waitFor(() => JSON.stringify(view(b.doc)) === JSON.stringify(rewritten), 'restoring the before-restore version brings the rewrite back')
    const reasons = ((await api(nodes[0]!.port, 'GET', '/documents/restored/versions', token)).json.versions as Meta[]).map(v => v.reason)
    t.ok(reasons.filter(r => r === 'before-restore').length === 2 && reasons.includes('named'), `reasons listed: ${reasons.join(', ')}`)
  })
}

t.test('two nodes: a restore on a node that does not hold the document includes the edits other nodes have not stored yet', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  // Node 1 stores nothing during the test: its edits exist only in its memory and its clients.
  const nodes = [
    await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'held-1', FLUSH_INTERVAL_MS: '60000' }),
    await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'held-2' })
  ]
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const alice = await writer(t, nodes[0]!, 'held', 'alice')
  const token = await signToken({ sub: 'alice' })
  alice.doc.getText('text').insert(0, 'the version')
  await sleep(100)
  const version = (await api(nodes[0]!.port, 'POST', '/documents/held/versions', token, { label: 'v' })).json as Meta
  alice.doc.getText('text').insert(11, ', then more')
  await sleep(100)
  t.equal(nodes[1]!.server.registry.get('held'), undefined, 'node 2 does not hold the document')
  const restored = await api(nodes[1]!.port, 'POST', `/documents/held/versions/${version.id}/restore`, token)
  t.equal(restored.status, 200)
  const before = new Y.Doc()
  Y.applyUpdate(before, (await api(nodes[1]!.port, 'GET', `/documents/held/versions/${restored.json.beforeRestore as string}`, token)).bytes)
  t.equal(before.getText('text').toString(), 'the version, then more', 'the before-restore version holds what node 1 had not stored')
  await waitFor(() => alice.doc.getText('text').toString() === 'the version', 'alice sees exactly the version', 5_000)
    .catch(err => { throw new Error(`${(err as Error).message}: ${alice.doc.getText('text').toString()}`) })
  await sleep(300)
  t.equal(alice.doc.getText('text').toString(), 'the version', 'and it stays so')
})

forEachStore('a version listed before kill -9 is readable after the restart', async (t, env) => {
  const first = await spawnServer(env)
  t.teardown(() => first.kill('SIGKILL'))
  const person = await writer(t, first, 'crash-doc', 'editor')
  person.doc.getText('text').insert(0, 'kept through a crash')
  await sleep(200)
  const token = await signToken({ sub: 'editor' })
  const version = (await api(first.port, 'POST', '/documents/crash-doc/versions', token, { label: 'before the crash' })).json as Meta
  t.equal((await api(first.port, 'GET', '/documents/crash-doc/versions', token)).json.versions[0].id, version.id, 'listed')
  first.kill('SIGKILL')
  await first.exited
  const second = await spawnServer(env)
  t.teardown(() => second.kill('SIGKILL'))
  const state = await api(second.port, 'GET', `/documents/crash-doc/versions/${version.id}`, token)
  t.equal(state.status, 200)
  const copy = new Y.Doc()
  Y.applyUpdate(copy, state.bytes)
  t.equal(copy.getText('text').toString(), 'kept through a crash')

  // Nobody has the document open on this node: a restore loads it, changes it and stores it.
  const later = await writer(t, second, 'crash-doc', 'editor')
  later.doc.getText('text').insert(0, 'after the restart: ')
  await sleep(300)
  later.provider.destroy()
  await sleep(500)
  t.equal((await api(second.port, 'POST', `/documents/crash-doc/versions/${version.id}/restore`, token)).status, 200, 'restore of a document nobody has open')
  const reader = await writer(t, second, 'crash-doc', 'reader')
  t.equal(reader.doc.getText('text').toString(), 'kept through a crash', 'stored as restored')
})

t.test('two nodes: each automatic version is taken once per document, with the authors of both nodes', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const nodes = [await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'auto-1' }), await startTestServer({ ...ENV, REDIS_URL: redis.url, NODE_ID: 'auto-2' })]
  t.teardown(async () => { for (const n of nodes) await n.close() })
  const token = await signToken({ sub: 'auditor' })
  const alice = await writer(t, nodes[0]!, 'shared-doc', 'alice')
  const bob = await writer(t, nodes[1]!, 'shared-doc', 'bob')
  for (let round = 0; round < 3; round++) {
    alice.doc.getArray('log').push([`alice ${round}`])
    bob.doc.getArray('log').push([`bob ${round}`])
    await waitFor(async () => (await api(nodes[1]!.port, 'GET', '/documents/shared-doc/versions', token)).json?.versions?.length === round + 1, `version ${round + 1}`, 5_000)
    await sleep(1_500) // longer than the idle time: a duplicate would have appeared by now
    const versions = (await api(nodes[0]!.port, 'GET', '/documents/shared-doc/versions', token)).json.versions as Meta[]
    t.equal(versions.length, round + 1, `round ${round}: one version for both nodes' edits`)
    t.same(versions[0]!.authors, ['alice', 'bob'], `round ${round}: authors from both nodes`)
  }
})

t.test('an offline merge into a document others changed takes a before-offline-merge version, whose id the ack carries', async t => {
  const node = await startTestServer(ENV)
  t.teardown(node.close)
  const token = await signToken({ sub: 'traveller' })
  const traveller = connectBatchClient(node.url, 'merged-doc', token)
  t.teardown(() => traveller.destroy())
  const colleague = await writer(t, node, 'merged-doc', 'colleague')
  await waitSynced(traveller)
  traveller.doc.getText('t').insert(0, 'Shared start. ')
  await waitFor(() => colleague.doc.getText('t').toString() === 'Shared start. ', 'colleague sees it')
  await sleep(1_500) // the automatic version of that is taken; what follows is the merge's own

  traveller.provider.disconnect()
  colleague.doc.getText('t').insert(colleague.doc.getText('t').length, 'Colleague wrote this meanwhile. ')
  await sleep(100)
  traveller.doc.getText('t').insert(0, 'Written on the train. ')
  const ack = new Promise<{ versionId: string }>(resolve => { traveller.batches.onAck(a => resolve(a)) })
  traveller.provider.connect()
  const { versionId } = await ack
  t.ok(versionId !== '', `the ack names the version taken before the merge (${versionId})`)
  const versions = (await api(node.port, 'GET', '/documents/merged-doc/versions', token)).json.versions as Meta[]
  const merge = versions.find(v => v.id === versionId)
  t.equal(merge?.reason, 'before-offline-merge')
  t.same(merge?.authors, ['colleague'], 'the authors of what the merge met, not the traveller')
  const before = await api(node.port, 'GET', `/documents/merged-doc/versions/${versionId}/json`, token)
  t.same(before.json, { t: 'Shared start. Colleague wrote this meanwhile. ' }, 'the document as it was right before the merge')
  await waitFor(() => colleague.doc.getText('t').toString().includes('train'), 'the merge reached the colleague')

  // Offline again, but nobody else wrote meanwhile: nothing was overwritten, no version needed.
  await sleep(1_500)
  traveller.provider.disconnect()
  traveller.doc.getText('t').insert(0, 'Alone. ')
  const second = new Promise<{ versionId: string }>(resolve => { traveller.batches.onAck(a => resolve(a)) })
  traveller.provider.connect()
  t.equal((await second).versionId, '', 'no version when the document gained nothing from others')
  const after = (await api(node.port, 'GET', '/documents/merged-doc/versions', token)).json.versions as Meta[]
  t.equal(after.filter(v => v.reason === 'before-offline-merge').length, 1, 'still one before-offline-merge version')
})

t.test('retention: the byte cap drops the oldest automatic versions, never a named one', async t => {
  const node = await startTestServer({ ...ENV, VERSION_MAX_BYTES_PER_DOCUMENT: '2500' })
  t.teardown(node.close)
  const token = await signToken({ sub: 'editor' })
  const person = await writer(t, node, 'capped', 'editor')
  const text = person.doc.getText('t')
  text.insert(0, 'x'.repeat(600))
  await sleep(200)
  const named = (await api(node.port, 'POST', '/documents/capped/versions', token, { label: 'keep me' })).json as Meta
  const autos: string[] = []
  for (let i = 0; i < 4; i++) {
    text.insert(text.length, String(i).repeat(50))
    await waitFor(async () => ((await api(node.port, 'GET', '/documents/capped/versions', token)).json.versions as Meta[]).some(v => v.reason === 'auto' && !autos.includes(v.id)), `automatic version ${i + 1}`, 5_000)
    const newest = ((await api(node.port, 'GET', '/documents/capped/versions', token)).json.versions as Meta[]).find(v => v.reason === 'auto' && !autos.includes(v.id))!
    autos.push(newest.id)
  }
  await sleep(300)
  const kept = (await api(node.port, 'GET', '/documents/capped/versions', token)).json.versions as Meta[]
  const bytes = kept.reduce((sum, v) => sum + v.bytes, 0)
  t.ok(bytes <= 2500, `versions hold ${bytes} bytes, at most the cap`)
  t.ok(kept.some(v => v.id === named.id), 'the named version stays')
  t.ok(kept.some(v => v.id === autos[3]), 'the newest automatic version stays')
  t.notOk(kept.some(v => v.id === autos[0]), 'the oldest automatic version went first')
  t.ok(kept.length < 5, `${kept.length} of 5 versions kept`)
})

t.test('limits: named versions may fill half the byte cap, diffs are bounded, a restore may not outgrow MAX_DOCUMENT_BYTES', async t => {
  const node = await startTestServer({ ...ENV, VERSION_MAX_BYTES_PER_DOCUMENT: '4000', VERSION_DIFF_MAX_BYTES: '2048', MAX_DOCUMENT_BYTES: '3000' })
  t.teardown(node.close)
  const token = await signToken({ sub: 'editor' })
  const person = await writer(t, node, 'limited', 'editor')
  person.doc.getText('t').insert(0, 'y'.repeat(900))
  await sleep(200)
  const first = await api(node.port, 'POST', '/documents/limited/versions', token, { label: 'one' })
  t.equal(first.status, 201)
  t.equal((await api(node.port, 'POST', '/documents/limited/versions', token, { label: 'two' })).status, 201)
  const third = await api(node.port, 'POST', '/documents/limited/versions', token, { label: 'three' })
  t.equal(third.status, 409, 'a third named version would hold more than half the cap')
  t.equal(third.json.error, 'version_history_full')
  t.equal((await api(node.port, 'GET', '/documents/limited/versions', token)).json.versions.length, 2, 'nothing was added')

  person.doc.getText('t').insert(0, 'z'.repeat(1200))
  await sleep(200)
  const diff = await api(node.port, 'GET', `/documents/limited/versions/${first.json.id as string}/diff`, token)
  t.equal(diff.status, 413, 'a diff of two states over VERSION_DIFF_MAX_BYTES is refused')
  t.match(diff.json.message, /VERSION_DIFF_MAX_BYTES/)

  // The restore re-inserts the version's 900 characters next to the 2,100 there: past 3,000 bytes.
  const restore = await api(node.port, 'POST', `/documents/limited/versions/${first.json.id as string}/restore`, token)
  t.equal(restore.status, 413, `a restore that would outgrow MAX_DOCUMENT_BYTES is refused (${JSON.stringify(restore.json)})`)
  t.equal(restore.json.error, 'document_too_large')
  t.equal((await api(node.port, 'GET', '/documents/limited/versions', token)).json.versions.filter((v: Meta) => v.reason === 'before-restore').length, 0, 'and takes no before-restore version')
})

t.test('an automatic version of a document larger than a chunk is encoded in pieces and holds all of it', async t => {
  // 64 KiB of backpressure: 16 KiB chunks; past 1 MiB the pieces are merged on the worker thread.
  const node = await startTestServer({ ...ENV, MAX_BACKPRESSURE_BYTES: String(64 * 1024) })
  t.teardown(node.close)
  const token = await signToken({ sub: 'reader' })
  const alice = await writer(t, node, 'large-auto', 'alice')
  const text = alice.doc.getText('text')
  for (let i = 0; i < 30; i++) text.insert(Math.floor(text.length / 2), `${i}:` + 'x'.repeat(40_000))
  alice.doc.getMap('meta').set('title', 'large')
  text.delete(5, 1_000)
  await waitFor(async () => (await api(node.port, 'GET', '/documents/large-auto/versions', token)).json?.versions?.length >= 1, 'an automatic version', 10_000)
  const [version] = (await api(node.port, 'GET', '/documents/large-auto/versions', token)).json.versions as Meta[]
  t.equal(version!.reason, 'auto')
  const state = await api(node.port, 'GET', `/documents/large-auto/versions/${version!.id}`, token)
  const copy = new Y.Doc()
  Y.applyUpdate(copy, state.bytes)
  t.equal(copy.getText('text').toString(), text.toString(), 'the whole text, the deletion included')
  t.equal(copy.getMap('meta').get('title'), 'large', 'and the other types')
})

/** The real LevelDB store, whose before-restore versions, once written, answer when `held` resolves. */
class HeldVersionStore extends LevelDbStore {
  held: Promise<void> | null = null
  waiting = false
  override async saveVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void> {
    await super.saveVersion(docId, meta, state)
    if (meta.reason === 'before-restore' && this.held !== null) {
      this.waiting = true
      await this.held
    }
  }
}

t.test('a document deleted while its before-restore version is written: the restore answers 410 instead of applying itself to the dropped document', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const store = new HeldVersionStore(dataDir)
  const node = await startTestServer({ DATA_DIR: dataDir, DOC_IDLE_UNLOAD_MS: '60000' }, store)
  t.teardown(node.close)
  const token = await signToken({ sub: 'writer' })
  const admin = await signToken({ sub: 'admin', extra: { admin: true } })
  const person = await writer(t, node, 'deleted-mid-restore', 'writer')
  person.doc.getText('body').insert(0, 'first')
  await waitFor(async () => (await api(node.port, 'POST', '/documents/deleted-mid-restore/versions', token, { label: 'first' })).status === 201, 'a named version of the first text')
  const [version] = (await api(node.port, 'GET', '/documents/deleted-mid-restore/versions', token)).json.versions as Meta[]
  person.doc.getText('body').insert(5, ' and second')

  let release = (): void => {}
  store.held = new Promise(resolve => { release = resolve })
  const restore = api(node.port, 'POST', `/documents/deleted-mid-restore/versions/${version!.id}/restore`, token)
  await waitFor(() => store.waiting, 'the restore is under way')
  t.equal((await api(node.port, 'DELETE', '/admin/documents/deleted-mid-restore', admin)).status, 200, 'deleted meanwhile')
  release()
  const answer = await restore
  t.equal(answer.status, 410, 'the restore reports the document deleted')
  t.equal(answer.json?.error, 'document_deleted')
})
