import t, { type Test } from 'tap'
import { PROVIDER_VERSIONS, shared, stockProvider, type ProviderVersion } from './helpers/providers.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

// Every stock y-websocket provider version the README lists, against the same server: sync, late
// join, presence, offline edits, read-only access and, where the provider can, token renewal.

function person (t: Test, version: ProviderVersion, ts: TestServer, docId: string, token: string): ReturnType<typeof stockProvider> {
  const person = stockProvider(version, ts.url, docId, { token })
  t.teardown(() => { person.provider.destroy(); person.doc.destroy() })
  return person
}

for (const version of PROVIDER_VERSIONS) {
  t.test(`y-websocket ${version}: sync, late join, presence, offline edits, read-only`, async t => {
    const ts = await startTestServer({ LOG_LEVEL: 'warn' })
    t.teardown(ts.close)
    const docId = `v-${version}`
    const a = person(t, version, ts, docId, await signToken({ sub: 'a' }))
    const b = person(t, version, ts, docId, await signToken({ sub: 'b' }))
    await waitFor(() => a.provider.synced && b.provider.synced, 'both synced')
    shared(a.doc, 't', 'text').insert(0, 'hello ')
    shared(b.doc, 'items', 'array').push(['from b'])
    await waitFor(() => shared(b.doc, 't', 'text').toString() === 'hello ' && shared(a.doc, 'items', 'array').length === 1, 'edits cross')

    const late = person(t, version, ts, docId, await signToken({ sub: 'late' }))
    await waitFor(() => late.provider.synced && shared(late.doc, 't', 'text').toString() === 'hello ', 'a late joiner gets the document')

    a.provider.awareness.setLocalStateField('user', 'a')
    await waitFor(() => (b.provider.awareness.getStates().get(a.doc.clientID) as { user?: string } | undefined)?.user === 'a', 'presence crosses')

    // Offline: edits made while disconnected reach the others after reconnecting.
    b.provider.disconnect()
    shared(b.doc, 't', 'text').insert(shared(b.doc, 't', 'text').length, 'offline')
    b.provider.connect()
    await waitFor(() => shared(a.doc, 't', 'text').toString() === 'hello offline', 'offline edits arrive after the reconnect')

    const viewer = person(t, version, ts, docId, await signToken({ sub: 'viewer', docs: { [docId]: 'read-only' } }))
    await waitFor(() => shared(viewer.doc, 't', 'text').toString() === 'hello offline', 'a read-only client receives the document')
    const warnings: string[] = []
    const warn = console.warn
    console.warn = (...args: unknown[]) => { warnings.push(args.map(String).join(' ')) }
    t.teardown(() => { console.warn = warn })
    shared(viewer.doc, 't', 'text').insert(0, 'vandalism ')
    await waitFor(() => warnings.some(w => w.includes('Permission denied') && w.includes('read-only access')), 'the read-only client is told why (permission denied)')
    console.warn = warn
    await waitFor(() => shared(a.doc, 't', 'text').toString() === 'hello offline', 'nothing of the read-only client\'s edit arrives')
    t.equal(ts.server.registry.get(docId)?.ydoc.getText('t').toString(), 'hello offline', 'the server document is unchanged')
    t.ok(viewer.provider.wsconnected, 'the read-only client stays connected')

    // A document larger than one chunk (3 MiB in 3,000 items): sent in chunks, and a joiner
    // reports synced only once it holds all of it.
    const line = 'x'.repeat(1024)
    a.doc.transact(() => {
      for (let i = 0; i < 3000; i++) shared(a.doc, 'big', 'text').insert(0, line)
    })
    const bigLength = 3000 * 1024
    await waitFor(() => shared(b.doc, 'big', 'text').length === bigLength, 'a connected client receives the large update', 30_000)
    const joiner = person(t, version, ts, docId, await signToken({ sub: 'joiner' }))
    let lengthWhenSynced = -1
    joiner.provider.on('sync', (synced: boolean) => { if (synced && lengthWhenSynced === -1) lengthWhenSynced = shared(joiner.doc, 'big', 'text').length })
    await waitFor(() => lengthWhenSynced !== -1, 'the joiner synced', 30_000)
    t.equal(lengthWhenSynced, bigLength, 'synced means the whole document')
  })
}

for (const version of PROVIDER_VERSIONS.filter(v => v !== '1.5.4')) {
  t.test(`y-websocket ${version}: a token renewed through params is used at the next connection`, async t => {
    const ts = await startTestServer({ LOG_LEVEL: 'warn', JWT_CLOCK_TOLERANCE_SECONDS: '0' })
    t.teardown(ts.close)
    const docId = `renew-${version}`
    // Eight seconds of life: accepted (more than five left), closed with 4401 when it runs out.
    const client = person(t, version, ts, docId, await signToken({ sub: 'renewing', expiresIn: 8 }))
    await waitFor(() => client.provider.synced, 'synced with the short token')
    const closes: number[] = []
    client.provider.on('connection-close', (event: { code: number } | null) => { if (event !== null) closes.push(event.code) })
    const renewed = await signToken({ sub: 'renewing', expiresIn: 3600 })
    client.provider.params = { token: renewed }
    // 3.x treats close codes 4400-4499 as final and emits 'closed': the app renews and reconnects.
    client.provider.on('closed', () => {
      client.provider.params = { token: renewed }
      client.provider.connect()
    })
    await waitFor(() => closes.includes(4401), 'the first connection closed when its token expired', 15_000)
    await waitFor(() => client.provider.synced && client.provider.wsconnected, 'reconnected with the renewed token')
    const other = person(t, version, ts, docId, await signToken({ sub: 'other' }))
    await waitFor(() => other.provider.synced, 'other synced')
    shared(client.doc, 't', 'text').insert(0, 'still editing')
    await waitFor(() => shared(other.doc, 't', 'text').toString() === 'still editing', 'edits flow on the renewed connection')
  })
}
