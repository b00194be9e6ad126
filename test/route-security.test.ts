import { Socket } from 'node:net'
import t from 'tap'
import { connectSynced } from './helpers/clients.js'
import { FlakyStore } from './helpers/flaky-store.js'
import { startTestServer, tempDir } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

const adminToken = async (): Promise<string> => await signToken({ sub: 'ops', extra: { admin: true } })

async function rawRequest (port: number, path: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = new Socket()
    let response = ''
    socket.on('data', chunk => { response += String(chunk) })
    socket.on('end', () => resolve(response))
    socket.on('close', () => resolve(response))
    socket.on('error', reject)
    socket.connect(port, '127.0.0.1', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
      setTimeout(() => socket.end(), 500)
    })
  })
}

t.test('a revoked user is refused by the participants route as by the upgrade', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken({ sub: 'eve' })
  const url = `http://127.0.0.1:${ts.port}/documents/secret/participants`
  t.equal((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'allowed before')
  const revoke = await fetch(`http://127.0.0.1:${ts.port}/admin/revocations`, { method: 'POST', headers: { authorization: `Bearer ${await adminToken()}` }, body: JSON.stringify({ docId: 'secret', userId: 'eve' }) })
  t.equal(revoke.status, 200)
  const after = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
  t.equal(after.status, 403, 'refused after the revocation')
  t.match(await after.text(), /access_revoked/)
})

t.test('the metrics token is read from the Authorization header only', async t => {
  const ts = await startTestServer({ METRICS_TOKEN: 'metrics-token-for-the-scraper' })
  t.teardown(ts.close)
  const base = `http://127.0.0.1:${ts.port}/metrics`
  t.equal((await fetch(base)).status, 401)
  t.equal((await fetch(`${base}?token=metrics-token-for-the-scraper`)).status, 401, 'not from the query string, where proxies log it')
  t.equal((await fetch(base, { headers: { authorization: 'Bearer metrics-token-for-the-scraper-but-longer' } })).status, 401)
  t.equal((await fetch(base, { headers: { authorization: 'Bearer metrics-token-for-the-scraper' } })).status, 200)
})

t.test('/readyz says only whether the node is ready; the details go to the log and the inspector', async t => {
  const store = new FlakyStore(tempDir())
  const ts = await startTestServer({}, store)
  t.teardown(async () => { store.failing = false; await ts.close() })
  const ready = await fetch(`http://127.0.0.1:${ts.port}/readyz`)
  t.equal(ready.status, 200)
  t.same(await ready.json(), { status: 'ready', ready: true })

  const client = await connectSynced(ts.url, 'doc', await signToken())
  t.teardown(() => client.destroy())
  store.failing = true
  client.doc.getText('t').insert(0, 'not stored yet')
  await waitFor(async () => (await fetch(`http://127.0.0.1:${ts.port}/readyz`)).status === 503, 'not ready while writes fail')
  const body = await (await fetch(`http://127.0.0.1:${ts.port}/readyz`)).text()
  t.same(JSON.parse(body), { status: 'not-ready', ready: false })
  t.notMatch(body, /disk on fire/, 'no store error text for anonymous callers')
  const inspect = await fetch(`http://127.0.0.1:${ts.port}/inspect.json`, { headers: { authorization: `Bearer ${await adminToken()}` } })
  t.match(JSON.stringify(await inspect.json()), /disk on fire/, 'the admin inspector has the details')
  t.ok(ts.logs.some(l => l.includes('not ready') && l.includes('disk on fire')), 'and so does the log')
})

t.test('document ids "." and ".." are refused', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  for (const id of ['.', '..']) {
    t.match(await rawRequest(ts.port, `/ws/document/${id}?token=${token}`), /^HTTP\/1\.1 400 [\s\S]*invalid_document_id/, `"${id}"`)
  }
  t.match(await rawRequest(ts.port, `/ws/document/...?token=${token}`), /^HTTP\/1\.1 101 /, '"..." is an ordinary id')
})
