import t from 'tap'
import { rmSync } from 'node:fs'
import * as Y from 'yjs'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import { connectClient, connectSynced, waitSynced } from './helpers/clients.js'
import { startTestServer, tempDir } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

t.test('two stock clients converge, including concurrent edits', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'doc-1', token)
  const b = await connectSynced(ts.url, 'doc-1', token)
  t.teardown(() => { a.destroy(); b.destroy() })

  a.doc.getText('t').insert(0, 'hello')
  await waitFor(() => b.text() === 'hello', 'b sees a')

  // Concurrent: both edit before either sees the other.
  a.doc.getText('t').insert(5, ' from a')
  b.doc.getText('t').insert(0, 'b says: ')
  await waitFor(() => a.text() === b.text() && a.text().length === 'hello from a'.length + 'b says: '.length, 'convergence')
  t.equal(a.text(), b.text())
  t.match(a.text(), /b says: /)
  t.match(a.text(), / from a/)

  // Many interleaved edits from both sides.
  for (let i = 0; i < 200; i++) {
    a.doc.getArray('list').push([`a${i}`])
    b.doc.getArray('list').push([`b${i}`])
  }
  await waitFor(() => a.doc.getArray('list').length === 400 && b.doc.getArray('list').length === 400, 'list convergence')
  t.same(a.doc.getArray('list').toJSON(), b.doc.getArray('list').toJSON())
})

t.test('a late joiner receives the full state', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'late', token)
  t.teardown(() => a.destroy())
  a.doc.getText('t').insert(0, 'early content')
  a.doc.getMap('m').set('k', 42)
  await waitFor(() => ts.server.registry.get('late')?.ydoc.getText('t').toString() === 'early content', 'server applied')

  const late = await connectSynced(ts.url, 'late', token)
  t.teardown(() => late.destroy())
  t.equal(late.text(), 'early content')
  t.equal(late.doc.getMap('m').get('k'), 42)
})

t.test('rooms are isolated', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'room-a', token)
  const b = await connectSynced(ts.url, 'room-b', token)
  const a2 = await connectSynced(ts.url, 'room-a', token)
  t.teardown(() => { a.destroy(); b.destroy(); a2.destroy() })
  a.doc.getText('t').insert(0, 'only in a')
  b.doc.getText('t').insert(0, 'only in b')
  await waitFor(() => a2.text() === 'only in a', 'a2 gets room-a content')
  await sleep(100)
  t.equal(b.text(), 'only in b')
  t.equal(a2.text(), 'only in a')
})

t.test('a client that edits while disconnected reconciles on reconnect', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'offline', token)
  const b = await connectSynced(ts.url, 'offline', token)
  t.teardown(() => { a.destroy(); b.destroy() })
  a.doc.getText('t').insert(0, 'shared ')
  await waitFor(() => b.text() === 'shared ', 'initial sync')

  b.provider.disconnect()
  b.doc.getText('t').insert(b.text().length, 'offline-b ')
  a.doc.getText('t').insert(0, 'online-a ')
  await sleep(100)
  t.notOk(a.text().includes('offline-b'), 'offline edit not delivered while disconnected')

  b.provider.connect()
  await waitSynced(b)
  await waitFor(() => a.text() === b.text() && a.text().includes('offline-b') && b.text().includes('online-a'), 'reconciliation')
  t.equal(a.text(), b.text())
})

t.test('awareness appears for others and is removed on disconnect', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'presence', token)
  const b = await connectSynced(ts.url, 'presence', token)
  t.teardown(() => { a.destroy(); b.destroy() })

  a.provider.awareness.setLocalStateField('user', { name: 'Ada' })
  await waitFor(() => (b.provider.awareness.getStates().get(a.doc.clientID) as any)?.user?.name === 'Ada', 'b sees a')

  // A newcomer gets the current presence on open.
  const c = await connectSynced(ts.url, 'presence', token)
  t.teardown(() => c.destroy())
  await waitFor(() => (c.provider.awareness.getStates().get(a.doc.clientID) as any)?.user?.name === 'Ada', 'c sees a on join')

  a.provider.destroy()
  await waitFor(() => !b.provider.awareness.getStates().has(a.doc.clientID), 'removal reaches b')
  await waitFor(() => !c.provider.awareness.getStates().has(a.doc.clientID), 'removal reaches c')
  t.pass('presence removed on disconnect')
})

t.test('the server document equals the clients after edits', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'server-state', token)
  t.teardown(() => a.destroy())
  a.doc.getText('t').insert(0, 'abc')
  await waitFor(() => ts.server.registry.get('server-state')?.ydoc.getText('t').toString() === 'abc', 'server state')
  const serverDoc = ts.server.registry.get('server-state')!.ydoc
  t.same(Y.encodeStateVector(serverDoc), Y.encodeStateVector(a.doc))
})

t.test('documents that come and go leave nothing behind, and each reloads complete', async t => {
  const dataDir = tempDir()
  const store = new LevelDbStore(dataDir)
  const ts = await startTestServer({ DATA_DIR: dataDir }, store)
  t.teardown(async () => {
    await ts.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  const token = await signToken()
  const ids = ['come-0', 'come-1', 'come-2']
  for (let round = 0; round < 3; round++) {
    for (const id of ids) {
      const client = await connectSynced(ts.url, id, token)
      t.equal(client.text(), 'x'.repeat(round), `${id} reloaded with every earlier edit`)
      client.doc.getText('t').insert(0, 'x')
      await waitFor(() => ts.server.registry.get(id)?.ydoc.getText('t').length === round + 1, 'edit applied')
      client.destroy()
    }
    await waitFor(() => ts.server.registry.size === 0, 'all documents unloaded')
    t.equal(store.trackedDocuments, 0, `round ${round}: the store holds nothing for unloaded documents`)
  }
})
