import t from 'tap'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { encodeOfflineBatch } from '../src/protocol/extensions.js'
import { encodeAwareness, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate } from '../src/protocol/messages.js'
import { awarenessFrame } from './helpers/awareness.js'
import { connectSynced, type TestClient } from './helpers/clients.js'
import { rawClient, type RawClient } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

/** mulberry32: a tiny seeded PRNG, so any failing run can be replayed with FUZZ_SEED. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const DURATION_MS = Number(process.env.FUZZ_DURATION_MS ?? 8000)

t.test(`fuzz: random, mutated and valid frames never crash or hang the server, honest clients keep converging (FUZZ_SEED=${SEED})`, async t => {
  t.comment(`reproduce with FUZZ_SEED=${SEED}`)
  const random = prng(SEED)
  const int = (n: number): number => Math.floor(random() * n)
  const ts = await startTestServer({ RATE_LIMIT_MESSAGES_PER_SECOND: '100000', RATE_LIMIT_MESSAGES_BURST: '100000', MAX_MESSAGE_BYTES: '65536', MAX_DOCUMENT_BYTES: '64512', LOG_LEVEL: 'warn' })
  t.teardown(ts.close)
  // The fuzzer is another user than the two honest people, whose presence it tries to forge.
  // A user whose frame was over MAX_MESSAGE_BYTES is held off that document for a while (HTTP
  // 413): the fuzzers take turns among many users so that the fuzzing goes on meanwhile.
  const fuzzTokens = await Promise.all(Array.from({ length: 200 }, async (_, i) => await signToken({ sub: `mallory-${i}` })))
  const honest: TestClient[] = [
    await connectSynced(ts.url, 'fuzzed', await signToken({ sub: 'alice' })),
    await connectSynced(ts.url, 'fuzzed', await signToken({ sub: 'bob' }))
  ]
  t.teardown(() => honest.forEach(c => c.destroy()))
  honest.forEach((c, i) => c.provider.awareness.setLocalStateField('user', `honest-${i}`))
  const victims = honest.map(c => c.doc.clientID)

  // A corpus of valid frames built from a document the fuzzer edits itself.
  const fuzzDoc = new Y.Doc()
  const validUpdate = (): Uint8Array => {
    const sv = Y.encodeStateVector(fuzzDoc)
    const text = fuzzDoc.getText('t')
    if (text.length > 0 && random() < 0.3) text.delete(int(text.length), 1)
    else text.insert(int(text.length + 1), String.fromCharCode(97 + int(26)))
    return Y.encodeStateAsUpdate(fuzzDoc, sv)
  }
  const awareness = (): Uint8Array => {
    const e = encoding.createEncoder()
    encoding.writeVarUint(e, 1)
    encoding.writeVarUint(e, 1000 + int(5))
    encoding.writeVarUint(e, int(100))
    encoding.writeVarString(e, random() < 0.8 ? JSON.stringify({ n: int(1000) }) : '{broken')
    return encodeAwareness(encoding.toUint8Array(e))
  }
  // Hostile presence: deep nesting, oversized states, floods of entries, other people's client ids.
  const hostileAwareness = (): Uint8Array => {
    switch (int(4)) {
      case 0: { const n = 20 + int(5000); return awarenessFrame([[2000 + int(5), 1 + int(100), '['.repeat(n) + ']'.repeat(n)]]) }
      case 1: return awarenessFrame([[2000 + int(5), 1 + int(100), JSON.stringify({ blob: 'x'.repeat(70_000 + int(1000)) })]])
      case 2: return awarenessFrame(Array.from({ length: 50 + int(200) }, (_, i) => [3000 + i, 1 + int(9), '{}'] as [number, number, string]))
      default: return awarenessFrame([[victims[int(2)]!, 1_000_000 + int(1000), random() < 0.5 ? 'null' : JSON.stringify({ user: 'forged' })]])
    }
  }
  const validFrame = (): Uint8Array => {
    if (random() < 0.1) return hostileAwareness()
    switch (int(6)) {
      case 0: return encodeSyncStep1(Y.encodeStateVector(fuzzDoc))
      case 1: return encodeSyncStep2(validUpdate())
      case 2: return awareness()
      case 3: return new Uint8Array([3])
      case 4: return encodeOfflineBatch({ batchId: `b${int(50)}`, updates: [validUpdate(), validUpdate()] })
      default: return encodeSyncUpdate(validUpdate())
    }
  }
  const mutate = (frame: Uint8Array): Uint8Array => {
    const copy = Uint8Array.from(frame)
    switch (int(6)) {
      case 0: return copy.slice(0, int(copy.length)) // truncated
      case 1: { // flipped bytes, possibly inside the Yjs structs
        for (let i = 0, n = 1 + int(4); i < n && copy.length > 0; i++) copy[int(copy.length)] = int(256)
        return copy
      }
      case 2: { // a huge length prefix after the message type
        const out = new Uint8Array(copy.length + 5)
        out[0] = copy[0] ?? 0
        out.set([0xff, 0xff, 0xff, 0xff, 0x0f], 1)
        out.set(copy.subarray(1), 6)
        return out
      }
      case 3: copy[0] = int(256); return copy // wrong message type
      case 4: return new Uint8Array([...copy, ...copy.slice(0, int(copy.length))]) // trailing junk
      default: { // corrupt the update payload but keep the framing intact
        const update = validUpdate()
        for (let i = 0; i < 1 + int(3); i++) update[int(update.length)] = int(256)
        return encodeSyncUpdate(update)
      }
    }
  }
  const randomBytes = (): Uint8Array => Uint8Array.from({ length: int(120) }, () => int(256))
  const nextFrame = (): Uint8Array | string => {
    const r = random()
    if (r < 0.25) return randomBytes()
    if (r < 0.65) return mutate(validFrame())
    if (r < 0.97) return validFrame()
    return r < 0.985 ? 'text frame' : new Uint8Array(70_000) // oversize
  }

  const codes = new Map<number, number>()
  let frames = 0
  let connections = 0
  const deadline = Date.now() + DURATION_MS
  const fuzzer = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const conn: RawClient = rawClient(`${ts.url}/fuzzed?token=${fuzzTokens[connections % fuzzTokens.length]!}${random() < 0.5 ? '&ext=offline-batch' : ''}`)
      connections++
      try {
        await conn.opened
      } catch {
        continue
      }
      let open = true
      void conn.closed.then(({ code }) => { open = false; codes.set(code, (codes.get(code) ?? 0) + 1) })
      for (let i = 0; i < 200 && open && Date.now() < deadline; i++) {
        conn.ws.send(nextFrame())
        frames++
        if (i % 10 === 0) await sleep(1)
      }
      conn.ws.terminate()
    }
  }

  // Honest clients edit throughout and must converge every second.
  let honestEdits = 0
  const checks: Array<Promise<void>> = []
  const editor = setInterval(() => {
    honest[honestEdits % 2]!.doc.getArray('honest').push([honestEdits])
    honestEdits++
  }, 20)
  const checker = setInterval(() => {
    const expected = honestEdits
    checks.push(waitFor(() => honest.every(c => c.doc.getArray('honest').length >= expected), `honest edits delivered during fuzzing (${expected})`, 5_000))
  }, 1000)
  await Promise.all([fuzzer(), fuzzer(), fuzzer()])
  clearInterval(editor)
  clearInterval(checker)
  await Promise.all(checks)

  t.comment(`${frames} frames over ${connections} connections; close codes: ${JSON.stringify(Object.fromEntries(codes))}`)
  t.ok(frames > 500, `sent ${frames} frames`)
  t.notOk(codes.has(1011), 'no input was treated as an internal error (each is a documented 1003/1006/1007/4413)')
  t.notOk(ts.logs.some(l => l.includes('internal error')), 'no internal errors logged')
  t.ok(honest.every(c => c.provider.wsconnected), 'honest clients were never disconnected')
  await waitFor(() => honest[0]!.doc.getArray('honest').length === honestEdits && honest[1]!.doc.getArray('honest').length === honestEdits, 'all honest edits everywhere')
  const serverDoc = ts.server.registry.get('fuzzed')!.ydoc
  await waitFor(() => honest.every(c => Buffer.from(Y.encodeStateVector(c.doc)).equals(Buffer.from(Y.encodeStateVector(serverDoc)))), 'honest clients equal the server document')
  t.equal(honest[0]!.doc.getText('t').toString(), honest[1]!.doc.getText('t').toString(), 'fuzzer text converged too')
  t.equal(honest[0]!.doc.getText('t').toString(), serverDoc.getText('t').toString())
  for (const [i, c] of honest.entries()) {
    const other = honest[1 - i]!
    t.same(c.provider.awareness.getStates().get(other.doc.clientID), { user: `honest-${1 - i}` }, `honest client ${i} sees the other's own presence, not a forgery`)
  }
  const health = await fetch(`http://127.0.0.1:${ts.port}/healthz`)
  t.equal(health.status, 200, 'server alive and responsive')
  const late = await connectSynced(ts.url, 'fuzzed', await signToken({ sub: 'late' }))
  t.teardown(() => late.destroy())
  t.equal(late.doc.getArray('honest').length, honestEdits, 'a new client gets the full document')
})
