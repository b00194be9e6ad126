import t from 'tap'
import { createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connectSynced } from './helpers/clients.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

const SECRET = 'webhook-secret-for-tests'

t.test('webhook: debounced, HMAC-signed delivery, retried after a failure', async t => {
  const received: Array<{ headers: IncomingHttpHeaders, body: string }> = []
  let failuresLeft = 1
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', chunk => { body += String(chunk) })
    req.on('end', () => {
      if (failuresLeft > 0) {
        failuresLeft--
        res.statusCode = 503
        res.end()
        return
      }
      received.push({ headers: req.headers, body })
      res.end('ok')
    })
  })
  await new Promise<void>(resolve => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { receiver.closeAllConnections(); receiver.close() })
  const port = (receiver.address() as AddressInfo).port
  const ts = await startTestServer({ WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, WEBHOOK_SECRET: SECRET, WEBHOOK_DEBOUNCE_MS: '200' })
  t.teardown(ts.close)

  const client = await connectSynced(ts.url, 'hooked', await signToken())
  t.teardown(() => client.destroy())
  for (let i = 0; i < 20; i++) client.doc.getArray('x').push([i])

  await waitFor(() => received.length === 1, 'delivery after one failed attempt', 10_000)
  const [delivery] = received
  const body = JSON.parse(delivery!.body) as { event: string, docId: string }
  t.match(body, { event: 'document.changed', docId: 'hooked' })
  const timestamp = delivery!.headers['x-collab-timestamp'] as string
  const expected = createHmac('sha256', SECRET).update(`${timestamp}.${delivery!.body}`).digest('hex')
  t.equal(delivery!.headers['x-collab-signature'], `sha256=${expected}`, 'valid signature')
  t.equal(failuresLeft, 0, 'the first attempt failed and was retried')
  await new Promise(resolve => setTimeout(resolve, 500))
  t.equal(received.length, 1, 'twenty edits in the window made one delivery')
})

t.test('webhook: a version taken is reported as document.version.created, signed the same way', async t => {
  const received: Array<{ headers: IncomingHttpHeaders, body: string }> = []
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', chunk => { body += String(chunk) })
    req.on('end', () => { received.push({ headers: req.headers, body }); res.end('ok') })
  })
  await new Promise<void>(resolve => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { receiver.closeAllConnections(); receiver.close() })
  const port = (receiver.address() as AddressInfo).port
  const ts = await startTestServer({ WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, WEBHOOK_SECRET: SECRET, WEBHOOK_DEBOUNCE_MS: '100', VERSION_IDLE_SECONDS: '1' })
  t.teardown(ts.close)
  const client = await connectSynced(ts.url, 'versioned-hook', await signToken({ sub: 'writer' }))
  t.teardown(() => client.destroy())
  client.doc.getArray('x').push([1])
  await waitFor(() => received.some(r => r.headers['x-collab-event'] === 'document.version.created'), 'version event', 10_000)
  const delivery = received.find(r => r.headers['x-collab-event'] === 'document.version.created')!
  const body = JSON.parse(delivery.body) as { event: string, docId: string, version: { id: string, reason: string, authors: string[] } }
  t.match(body, { event: 'document.version.created', docId: 'versioned-hook', version: { reason: 'auto', authors: ['writer'] } })
  const expected = createHmac('sha256', SECRET).update(`${delivery.headers['x-collab-timestamp'] as string}.${delivery.body}`).digest('hex')
  t.equal(delivery.headers['x-collab-signature'], `sha256=${expected}`, 'valid signature')
  t.equal(received.filter(r => r.headers['x-collab-event'] === 'document.version.created').length, 1, 'one version, one event')
})
