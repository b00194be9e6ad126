import t from 'tap'
import * as Y from 'yjs'
import { connectSynced } from './helpers/clients.js'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

async function admin (port: number, path: string, init: RequestInit = {}, token?: string): Promise<Response> {
  const bearer = token ?? await signToken({ sub: 'ops', extra: { admin: true } })
  return await fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${bearer}`, ...(init.headers ?? {}) } })
}

t.test('admin API: get, apply and delete round-trip; JSON view; refused without the admin claim', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const client = await connectSynced(ts.url, 'managed', token)
  t.teardown(() => client.destroy())
  client.doc.getText('t').insert(0, 'written by a person')
  client.doc.getMap('meta').set('title', 'Plan')
  client.doc.getArray('items').push([1, 2])
  await waitFor(() => ts.server.registry.get('managed')?.ydoc.getText('t').length === 19, 'server has it')

  // Refusals first.
  t.equal((await fetch(`http://127.0.0.1:${ts.port}/admin/documents/managed`)).status, 401, 'no token')
  t.equal((await admin(ts.port, '/admin/documents/managed', {}, await signToken())).status, 403, 'token without admin claim')
  t.equal((await admin(ts.port, '/admin/documents/bad%20id')).status, 400, 'bad id')

  // Get as a Yjs update.
  const res = await admin(ts.port, '/admin/documents/managed')
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'application/octet-stream')
  const copy = new Y.Doc()
  Y.applyUpdate(copy, new Uint8Array(await res.arrayBuffer()))
  t.equal(copy.getText('t').toString(), 'written by a person')

  // Get as JSON.
  const json = await (await admin(ts.port, '/admin/documents/managed/json')).json()
  t.same(json, { t: 'written by a person', meta: { title: 'Plan' }, items: [1, 2] })

  // Apply an update server-side (an assistant writing into the document): clients see it.
  const assistant = new Y.Doc()
  Y.applyUpdate(assistant, Y.encodeStateAsUpdate(copy))
  const sv = Y.encodeStateVector(assistant)
  assistant.getText('t').insert(0, '[AI] ')
  const applied = await admin(ts.port, '/admin/documents/managed/updates', { method: 'POST', body: Y.encodeStateAsUpdate(assistant, sv), headers: { 'content-type': 'application/octet-stream' } })
  t.equal(applied.status, 200)
  t.match(await applied.json(), { changed: true })
  await waitFor(() => client.text() === '[AI] written by a person', 'client sees the server-side update')
  const garbage = await admin(ts.port, '/admin/documents/managed/updates', { method: 'POST', body: new Uint8Array([9, 9, 9]) })
  t.equal(garbage.status, 400, 'a body that is not a Yjs update is refused')

  // Applying to a document nobody has open loads it, applies, stores it.
  const fresh = new Y.Doc()
  fresh.getText('t').insert(0, 'created by the admin API')
  t.equal((await admin(ts.port, '/admin/documents/created/updates', { method: 'POST', body: Y.encodeStateAsUpdate(fresh) })).status, 200)
  const reader = await connectSynced(ts.url, 'created', token)
  t.teardown(() => reader.destroy())
  t.equal(reader.text(), 'created by the admin API')

  // Participants.
  const participants = await (await admin(ts.port, '/admin/documents/managed/participants')).json() as { participants: Array<{ userId: string }> }
  t.same(participants.participants.map(p => p.userId), ['user-1'])

  // Delete: clients are closed with 4404, reconnecting is refused with 410, and the content is gone.
  const closed = new Promise<number>(resolve => client.provider.ws?.addEventListener('close', (e: any) => resolve(e.code)))
  t.equal((await admin(ts.port, '/admin/documents/managed', { method: 'DELETE' })).status, 200)
  t.equal(await closed, 4404)
  t.equal((await upgradeStatus(`${ts.url}/managed?token=${token}`)).status, 410, 'recently deleted: 410')
  client.destroy()
  const inspect = await (await admin(ts.port, '/inspect.json')).json() as { self: { documents: Array<{ docId: string }> } }
  t.notOk(inspect.self.documents.some(d => d.docId === 'managed'), 'no longer loaded')
})

t.test('admin API in cluster mode: an update applied on one node reaches clients on all; delete reaches every node', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const a = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'a' })
  const b = await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'b' })
  t.teardown(async () => { await a.close(); await b.close() })
  const token = await signToken()
  const onB = await connectSynced(b.url, 'shared-admin', token)
  t.teardown(() => onB.destroy())
  const update = new Y.Doc()
  update.getText('t').insert(0, 'from the admin API on node a')
  t.equal((await admin(a.port, '/admin/documents/shared-admin/updates', { method: 'POST', body: Y.encodeStateAsUpdate(update) })).status, 200)
  await waitFor(() => onB.text() === 'from the admin API on node a', 'node b client sees it')

  await waitFor(async () => ((await (await admin(a.port, '/inspect.json')).json()) as { nodes: unknown[] }).nodes.length === 2, 'inspector sees both nodes')

  const closed = new Promise<number>(resolve => onB.provider.ws?.addEventListener('close', (e: any) => resolve(e.code)))
  t.equal((await admin(a.port, '/admin/documents/shared-admin', { method: 'DELETE' })).status, 200)
  t.equal(await closed, 4404, 'client on the other node closed')
  t.equal((await upgradeStatus(`${b.url}/shared-admin?token=${token}`)).status, 410)
})
