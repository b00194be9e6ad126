import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { connectSynced } from './helpers/clients.js'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer, tempDir } from './helpers/server.js'
import { signToken, TEST_SECRET } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

t.test('WSS: TLS_CERT_FILE/TLS_KEY_FILE serve wss:// and a y-websocket client syncs over it', async t => {
  const dir = tempDir('collab-tls-')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' })
  const ts = await startTestServer({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key })
  t.teardown(ts.close)
  const ca = readFileSync(cert)
  // The stock provider constructs its socket as `new WebSocket(url)`: trust the test CA that way.
  class TrustingWebSocket extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols, { ca })
    }
  }
  const token = await signToken()
  const docs = [new Y.Doc(), new Y.Doc()]
  const providers = docs.map(doc => new WebsocketProvider(`wss://127.0.0.1:${ts.port}/ws/document`, 'secure', doc, {
    params: { token }, WebSocketPolyfill: TrustingWebSocket as unknown as typeof globalThis.WebSocket, disableBc: true
  }))
  t.teardown(() => { providers.forEach(p => p.destroy()); docs.forEach(d => d.destroy()) })
  await waitFor(() => providers.every(p => p.synced), 'synced over wss')
  docs[0]!.getText('t').insert(0, 'over TLS')
  await waitFor(() => docs[1]!.getText('t').toString() === 'over TLS', 'edit crosses over wss')
  t.pass('converged over wss://')
})

t.test('tokens never appear in the logs, whatever happens', async t => {
  let authToken = ''
  const authServer = createServer((req, res) => {
    if (req.headers.authorization === `Bearer ${authToken}`) {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id: 'remote-user' }))
    } else {
      res.statusCode = 401
      res.end()
    }
  })
  await new Promise<void>(resolve => authServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { authServer.closeAllConnections(); authServer.close() })

  const jwtServer = await startTestServer({ LOG_LEVEL: 'trace' })
  t.teardown(jwtServer.close)
  const good = await signToken({ sub: 'logged-user' })
  const expired = await signToken({ expiresIn: -10 })
  const forged = await signToken({ secret: 'an-entirely-different-secret-of-32-bytes' })
  const client = await connectSynced(jwtServer.url, 'logs', good)
  client.doc.getText('t').insert(0, 'hello')
  await upgradeStatus(`${jwtServer.url}/logs?token=${expired}`)
  await upgradeStatus(`${jwtServer.url}/logs?token=${forged}`)
  await upgradeStatus(`${jwtServer.url}/logs`, { authorization: `Bearer ${good}` })
  await upgradeStatus(`${jwtServer.url}/bad%20id?token=${good}`)
  await fetch(`http://127.0.0.1:${jwtServer.port}/documents/logs/participants?token=${good}`)
  client.destroy()
  await waitFor(() => jwtServer.server.connectionCount === 0, 'closed')

  authToken = 'opaque-session-token-abcdef123456'
  const remoteServer = await startTestServer({ LOG_LEVEL: 'trace', JWT_SECRET: undefined, AUTH_SERVICE_URL: `http://127.0.0.1:${(authServer.address() as AddressInfo).port}/validate` })
  t.teardown(remoteServer.close)
  await upgradeStatus(`${remoteServer.url}/logs?token=${authToken}`)
  await upgradeStatus(`${remoteServer.url}/logs?token=wrong-opaque-token-987654`)

  const logs = [...jwtServer.logs, ...remoteServer.logs].join('')
  t.ok(logs.length > 1000, 'plenty was logged at trace level')
  for (const secret of [good, expired, forged, authToken, 'wrong-opaque-token-987654', TEST_SECRET]) {
    t.notOk(logs.includes(secret), `not in the logs: ${secret.slice(0, 12)}...`)
    // Nor the signature part alone.
    const tail = secret.split('.').pop()!
    if (tail.length > 16) t.notOk(logs.includes(tail), 'nor its signature')
  }
})
