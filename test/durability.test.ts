import t from 'tap'
import { rmSync } from 'node:fs'
import { connectSynced } from './helpers/clients.js'
import { STORE_KINDS, stopStoreServers } from './helpers/store-kinds.js'
import { spawnServer } from './helpers/process.js'
import { tempDir } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

const FLUSH_INTERVAL_MS = 100

t.teardown(stopStoreServers)

for (const kind of STORE_KINDS) {
  t.test(`${kind.name}: content survives SIGTERM and restart`, async t => {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const env = { ...await kind.env(dataDir), FLUSH_INTERVAL_MS: '60000' } // only the shutdown flush can save it
    const first = await spawnServer(env)
    t.teardown(() => first.kill('SIGKILL'))
    const token = await signToken()
    const a = await connectSynced(first.url, 'durable', token)
    for (let i = 0; i < 50; i++) a.doc.getText('t').insert(a.text().length, `line ${i}\n`)
    a.doc.getMap('meta').set('title', 'kept')
    const expected = a.text()
    // Give the frames time to reach the server; nothing has been written yet (60 s interval).
    await sleep(300)
    const closed = new Promise<number>(resolve => a.provider.ws?.addEventListener('close', (e: any) => resolve(e.code)))
    first.kill('SIGTERM')
    t.equal(await first.exited, 0, 'exit code 0 after SIGTERM')
    t.equal(await closed, 1001, 'clients closed with 1001 going away')
    a.destroy()

    const second = await spawnServer(env)
    t.teardown(() => second.kill('SIGKILL'))
    const b = await connectSynced(second.url, 'durable', token)
    t.teardown(() => b.destroy())
    t.equal(b.text(), expected)
    t.equal(b.doc.getMap('meta').get('title'), 'kept')
    second.kill('SIGTERM')
    await second.exited
  })

  t.test(`${kind.name}: content survives kill -9 once FLUSH_INTERVAL_MS has passed after the last edit`, async t => {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const env = { ...await kind.env(dataDir), FLUSH_INTERVAL_MS: String(FLUSH_INTERVAL_MS) }
    const first = await spawnServer(env)
    t.teardown(() => first.kill('SIGKILL'))
    const token = await signToken()
    const a = await connectSynced(first.url, 'crashy', token)
    const b = await connectSynced(first.url, 'crashy', token)
    for (let i = 0; i < 100; i++) {
      a.doc.getArray('a').push([i])
      b.doc.getArray('b').push([i])
    }
    await waitFor(() => a.doc.getArray('b').length === 100 && b.doc.getArray('a').length === 100, 'clients converged')
    // The server applied everything (both clients saw each other's edits through it); now wait one
    // flush interval plus margin for the write, then crash it.
    await sleep(FLUSH_INTERVAL_MS * 3)
    first.kill('SIGKILL')
    t.equal(await first.exited, 'SIGKILL')
    a.destroy(); b.destroy()

    const second = await spawnServer(env)
    t.teardown(() => second.kill('SIGKILL'))
    const c = await connectSynced(second.url, 'crashy', token)
    t.teardown(() => c.destroy())
    t.equal(c.doc.getArray('a').length, 100, 'all of a')
    t.equal(c.doc.getArray('b').length, 100, 'all of b')
    second.kill('SIGTERM')
    t.equal(await second.exited, 0)
  })

  t.test(`${kind.name}: compaction replaces the stored log by a snapshot without losing an edit, even at kill -9`, async t => {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const env = { ...await kind.env(dataDir), FLUSH_INTERVAL_MS: '20', COMPACT_AFTER_ENTRIES: '5' }
    const first = await spawnServer(env)
    t.teardown(() => first.kill('SIGKILL'))
    const token = await signToken()
    const a = await connectSynced(first.url, 'compacted', token)
    const b = await connectSynced(first.url, 'compacted', token)
    // Edits spread over many flushes: one log entry each, so compaction runs several times.
    for (let i = 0; i < 40; i++) {
      a.doc.getArray('a').push([i])
      if (i % 4 === 0) a.doc.getArray('a').delete(0, 1)
      await sleep(25)
    }
    await waitFor(() => b.doc.getArray('a').length === a.doc.getArray('a').length, 'b has every edit')
    const expected = a.doc.getArray('a').toJSON()
    await sleep(200)
    first.kill('SIGKILL')
    await first.exited
    a.destroy(); b.destroy()

    const store = kind.open(env)
    await store.open()
    const stored = await store.load('compacted')
    await store.close()
    t.ok(stored.updates.length < 10, `the log was compacted (${stored.updates.length} entries for ~40 flushes)`)

    const second = await spawnServer(env)
    t.teardown(() => second.kill('SIGKILL'))
    const c = await connectSynced(second.url, 'compacted', token)
    t.teardown(() => c.destroy())
    t.same(c.doc.getArray('a').toJSON(), expected, 'every edit and deletion survived')
    second.kill('SIGTERM')
    await second.exited
  })
}

t.test('a bad configuration value stops the process with one line naming it', async t => {
  await t.rejects(spawnServer({ PORT: 'eighty' }), /configuration error: Invalid PORT/)
  await t.rejects(spawnServer({ JWT_SECRET: 'short' }), /Invalid JWT_SECRET/)
  await t.rejects(spawnServer({ FLUSH_INTERVAL_MS: '-5' }), /Invalid FLUSH_INTERVAL_MS/)
})

t.test('with no auth configured, npm start prints a working development token', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const server = await spawnServer({ DATA_DIR: dataDir, JWT_SECRET: undefined })
  t.teardown(() => server.kill('SIGKILL'))
  await waitFor(() => server.output.join('').includes('Development token'), 'token printed')
  const token = /Development token[^\n]*\n\s+(\S+)/.exec(server.output.join(''))?.[1]
  t.ok(token, 'token found in output')
  const client = await connectSynced(server.url, 'my-doc', token!)
  client.destroy()
  t.notOk(server.output.filter(l => l.startsWith('{')).some(l => l.includes(token!)), 'token not in JSON logs')
  server.kill('SIGTERM')
  await server.exited
})
