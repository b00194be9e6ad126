import * as encoding from 'lib0/encoding'
import t from 'tap'
import * as Y from 'yjs'
import { diffCacheBudget } from '../src/documents/live-document.js'
import { decodeClientMessage, encodeSyncStep1 } from '../src/protocol/messages.js'
import { connectSynced } from './helpers/clients.js'
import { rawClient } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

function stateVector (entries: Array<[number, number]>): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const [client, clock] of entries) {
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, clock)
  }
  return encoding.toUint8Array(e)
}

t.test('state vectors from one read-only client cannot multiply a document\'s memory through the diff cache', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const writer = await connectSynced(ts.url, 'large', await signToken({ sub: 'writer' }))
  t.teardown(() => writer.destroy())
  const text = writer.doc.getText('t')
  for (let i = 0; i < 30; i++) text.insert(text.length, String.fromCharCode(97 + i % 26).repeat(100_000))
  await waitFor(() => ts.server.registry.get('large')?.ydoc.getText('t').length === 3_000_000, 'server has 3 MB')
  const author = writer.doc.clientID
  const usedBefore = diffCacheBudget.used

  const reader = rawClient(`${ts.url}/large?token=${await signToken({ sub: 'reader', docs: { large: 'read-only' } })}`)
  await reader.opened
  // Sixteen distinct vectors: unknown clients and clocks past the document's own (which all ask
  // for the same thing), and small clocks of the real author (each a different, large diff).
  const vectors = [
    ...Array.from({ length: 8 }, (_, i) => stateVector([[author, 1], [900_000 + i, 5]])),
    ...Array.from({ length: 8 }, (_, i) => stateVector([[author, 1 + i * 1000]]))
  ]
  const answers = (): Uint8Array[] => reader.messages.filter(m => m[0] === 0 && m[1] === 1)
  for (const [i, v] of vectors.entries()) {
    reader.ws.send(encodeSyncStep1(v))
    await waitFor(() => answers().length === i + 1, `vector ${i} answered`)
  }
  t.ok(diffCacheBudget.used - usedBefore <= 4 * 1024 * 1024, `cached diffs stay within 4 MiB per document (${diffCacheBudget.used - usedBefore} bytes)`)

  // The answers are still right: a replica of the document's first 1001 characters of its author,
  // completed with the last answer, holds the whole document.
  const replica = new Y.Doc()
  const full = Y.encodeStateAsUpdate(ts.server.registry.get('large')!.ydoc)
  Y.applyUpdate(replica, full)
  const message = decodeClientMessage(answers().at(-1)!)
  t.equal(message.kind, 'sync-step2')
  if (message.kind === 'sync-step2') Y.applyUpdate(replica, message.update)
  t.equal(replica.getText('t').length, 3_000_000)
  t.ok(reader.ws.readyState === reader.ws.OPEN, 'the reader was served, not closed')
  reader.ws.close()
  writer.destroy()
  await waitFor(() => ts.server.registry.get('large') === undefined, 'document unloaded')
  t.ok(diffCacheBudget.used <= usedBefore, 'unloading gives the cached bytes back')
})
