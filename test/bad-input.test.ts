import { connect } from 'node:net'
import t from 'tap'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { connectSynced } from './helpers/clients.js'
import { rawClient } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

const MAX_MESSAGE_BYTES = 4096

/** Sends a WebSocket handshake with the given Connection header and returns what the server answered. */
async function rawHandshake (port: number, path: string, connection: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: ${connection}\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'))
    socket.on('data', chunk => {
      answer += chunk.toString('latin1')
      if (answer.includes('\r\n\r\n') && answer.includes('}')) socket.destroy()
    })
    socket.on('close', () => resolve(answer))
    socket.on('error', reject)
  })
}

function syncUpdateFrame (update: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  encoding.writeVarUint(encoder, 2)
  encoding.writeVarUint8Array(encoder, update)
  return encoding.toUint8Array(encoder)
}

function validUpdate (): Uint8Array {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, 'some text that makes a reasonably long update')
  return Y.encodeStateAsUpdate(doc)
}

const cases: Array<{ name: string; send: Uint8Array | string; code: number }> = [
  { name: 'garbage bytes', send: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), code: 1007 },
  { name: 'truncated frame (length prefix beyond the end)', send: new Uint8Array([0, 2, 50, 1, 2, 3]), code: 1007 },
  { name: 'unknown message type', send: new Uint8Array([9, 0]), code: 1007 },
  { name: 'unknown sync type', send: new Uint8Array([0, 7, 0]), code: 1007 },
  // Found by the fuzzer: a malformed state vector used to surface as an internal error (1011).
  { name: 'sync step 1 with a truncated state vector', send: new Uint8Array([0, 0, 2, 5, 200]), code: 1007 },
  { name: 'trailing bytes', send: new Uint8Array([3, 3, 3]), code: 1007 },
  { name: 'empty frame', send: new Uint8Array([]), code: 1007 },
  { name: 'corrupt Yjs update inside a valid frame', send: syncUpdateFrame(validUpdate().slice(0, 12)), code: 1007 },
  { name: 'random bytes as a Yjs update', send: syncUpdateFrame(new Uint8Array([5, 200, 13, 99, 1, 250, 250, 250, 7, 8, 9])), code: 1007 },
  { name: 'awareness with invalid JSON', send: new Uint8Array([1, 7, 1, 5, 1, 3, 0x7b, 0x7b, 0x7b]), code: 1007 },
  { name: 'text frame', send: 'hello', code: 1003 },
  // uWebSockets.js drops the TCP connection without a close frame; clients see 1006.
  { name: 'oversize frame', send: new Uint8Array(MAX_MESSAGE_BYTES + 100), code: 1006 }
]

t.test('bad frames close only the offending connection, with a documented code', async t => {
  const ts = await startTestServer({ MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES), MAX_DOCUMENT_BYTES: String(MAX_MESSAGE_BYTES - 1024) })
  t.teardown(ts.close)
  const token = await signToken()
  const a = await connectSynced(ts.url, 'victim', token)
  const b = await connectSynced(ts.url, 'victim', token)
  t.teardown(() => { a.destroy(); b.destroy() })

  const sendAndClose = async (frame: Uint8Array | string): Promise<number> => {
    const bad = rawClient(`${ts.url}/victim?token=${token}`)
    await bad.opened
    bad.ws.send(frame)
    return (await bad.closed).code
  }

  let round = 0
  for (const c of cases) {
    // One retry of a 1006 only: about once in 4,000 upgrades uWS closes a freshly upgraded socket
    // on its own (uNetworking/uWebSockets#1928, see the note at res.upgrade in
    // src/server/upgrade.ts) before this frame is read. The close code is still asserted exactly.
    let code = await sendAndClose(c.send)
    if (code === 1006 && c.code !== 1006) code = await sendAndClose(c.send)
    t.equal(code, c.code, `${c.name} -> ${c.code}`)

    // The honest clients of the same document carry on.
    round++
    a.doc.getText('t').insert(0, `a${round};`)
    b.doc.getText('t').insert(0, `b${round};`)
    await waitFor(() => a.text() === b.text() && a.text().includes(`a${round};`) && a.text().includes(`b${round};`), `convergence after ${c.name}`)
  }
  t.ok(ts.logs.some(line => line.includes('Received too big message')), 'oversize drop is logged with its cause')
  t.equal(a.provider.wsconnected, true, 'honest client a never disconnected')
  t.equal(b.provider.wsconnected, true, 'honest client b never disconnected')
  const serverText = ts.server.registry.get('victim')?.ydoc.getText('t').toString()
  t.equal(serverText, a.text(), 'server state equals the honest clients')
  t.notOk(serverText?.includes('reasonably long'), 'nothing of the corrupt update was applied')
})

t.test('a handshake without "Connection: Upgrade" gets 400, and the server carries on', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  // "close" and "abcde": uWS flags any 5-character Connection value as HTTP "Connection: close";
  // such a request must never reach res.upgrade (see src/server/upgrade.ts).
  for (const connection of ['close', 'abcde', 'keep-alive', '']) {
    const response = await rawHandshake(ts.port, `/ws/document/handshake?token=${token}`, connection)
    t.match(response, /^HTTP\/1\.1 400 /, `Connection: ${JSON.stringify(connection)} -> 400`)
    t.match(response, /"error":"bad_handshake"/)
  }
  const good = await connectSynced(ts.url, 'handshake', token)
  t.teardown(() => good.destroy())
  t.pass('a regular client still connects')
})

t.test('a corrupt update is never forwarded to other clients', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const observer = rawClient(`${ts.url}/quiet?token=${token}`)
  await observer.opened
  await waitFor(() => observer.messages.length >= 1, 'greeting')
  const seen = observer.messages.length
  const bad = rawClient(`${ts.url}/quiet?token=${token}`)
  await bad.opened
  bad.ws.send(syncUpdateFrame(validUpdate().slice(0, 12)))
  await bad.closed
  // A valid edit from a third client proves the observer is still being served.
  const good = await connectSynced(ts.url, 'quiet', token)
  t.teardown(() => { good.destroy(); observer.ws.close() })
  good.doc.getText('t').insert(0, 'x')
  await waitFor(() => observer.messages.slice(seen).some(m => m[0] === 0 && m[1] === 2), 'good update reaches observer')
  const updates = observer.messages.slice(seen).filter(m => m[0] === 0 && m[1] === 2)
  t.equal(updates.length, 1, 'only the good update was forwarded')
})

t.test('an update that fails halfway (structs integrate, delete set is truncated) still leaves every replica equal', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const honest = await connectSynced(ts.url, 'halfway', token)
  t.teardown(() => honest.destroy())
  const source = new Y.Doc()
  source.getText('t').insert(0, 'structs that integrate')
  const update = Y.encodeStateAsUpdate(source)
  t.equal(update[update.length - 1], 0, 'a v1 update ends with its delete set: zero clients')
  const broken = update.slice()
  broken[broken.length - 1] = 5 // claims five clients in the delete set, then ends
  const bad = rawClient(`${ts.url}/halfway?token=${token}`)
  await bad.opened
  bad.ws.send(syncUpdateFrame(broken))
  t.equal((await bad.closed).code, 1007, 'the sender is closed as malformed')
  const serverDoc = ts.server.registry.get('halfway')!.ydoc
  await waitFor(() => honest.text() === serverDoc.getText('t').toString(), 'the honest client holds exactly what the server applied')
  t.same(Y.encodeStateVector(honest.doc), Y.encodeStateVector(serverDoc), 'same state vectors')
})
