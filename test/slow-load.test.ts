import t from 'tap'
import * as Y from 'yjs'
import { LevelDbStore } from '../src/persistence/leveldb-store.js'
import { encodeEntryValue } from '../src/persistence/entry-value.js'
import type { StoredDocument } from '../src/persistence/document-store.js'
import { connectClient, waitSynced } from './helpers/clients.js'
import { startTestServer, tempDir } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep } from './helpers/wait.js'

/** The real LevelDB store, with loads held back to widen the window in which joins race. */
class SlowLoadStore extends LevelDbStore {
  loads = 0
  override async load (docId: string): Promise<StoredDocument> {
    this.loads++
    await sleep(600)
    return await super.load(docId)
  }
}

t.test('joins arriving during a slow load all receive the full document', async t => {
  const dataDir = tempDir()
  const seed = new LevelDbStore(dataDir)
  await seed.open()
  const source = new Y.Doc()
  source.getText('t').insert(0, 'x'.repeat(10_000))
  source.getMap('m').set('answer', 42)
  await seed.append([{ docId: 'big', value: encodeEntryValue([Y.encodeStateAsUpdate(source)]) }])
  await seed.close()

  const store = new SlowLoadStore(dataDir)
  const ts = await startTestServer({ DATA_DIR: dataDir }, store)
  t.teardown(ts.close)
  const token = await signToken()
  const clients = Array.from({ length: 12 }, () => connectClient(ts.url, 'big', token))
  t.teardown(() => clients.forEach(c => c.destroy()))
  // A few stragglers join while the load is still running.
  await sleep(200)
  clients.push(connectClient(ts.url, 'big', token), connectClient(ts.url, 'big', token))
  await Promise.all(clients.map(c => waitSynced(c)))
  for (const c of clients) {
    t.equal(c.text().length, 10_000)
    t.equal(c.doc.getMap('m').get('answer'), 42)
  }
  t.equal(store.loads, 1, 'one load shared by every join')
})
