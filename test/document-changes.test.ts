import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { DocumentChanges, type PeerPublisher } from '../src/documents/document-changes.js'
import { LiveDocument, UpdateRejectedError } from '../src/documents/live-document.js'
import { Metrics } from '../src/metrics/metrics.js'
import { PRESENCE_LIMITS } from './helpers/presence.js'
import { decodeClientMessage } from '../src/protocol/messages.js'
import { awarenessEntry, encodeAwarenessEntries, encodeAwarenessFrame } from '../src/protocol/awareness-entries.js'

// The commit path on its own: what each kind of change hands to the local fan-out, the peers, the
// store queue and the change notice. End to end, every test that edits a document covers it too.

interface Recorder {
  changes: DocumentChanges
  doc: LiveDocument
  /** Frames published locally, and through whom: 'all' (the app) or 'sender'. */
  local: Array<{ via: 'all' | 'sender', frame: Uint8Array }>
  peers: Uint8Array[]
  stored: Uint8Array[]
  notices: string[]
  sender: { publish: (topic: Uint8Array, frame: Uint8Array) => boolean }
}

function recorder (t: Test, withPeers = true): Recorder {
  const local: Recorder['local'] = []
  const peerFrames: Uint8Array[] = []
  const stored: Uint8Array[] = []
  const notices: string[] = []
  const peers: PeerPublisher = { publishUpdate: (_doc, frame) => { peerFrames.push(frame) }, publishAwareness: () => {} }
  const changes = new DocumentChanges({
    localFanout: { publish: (_topic, frame) => { local.push({ via: 'all', frame }); return true } },
    peers: withPeers ? peers : null,
    store: { enqueue: (_docId, update) => { stored.push(update.slice()) } },
    metrics: new Metrics(false),
    presenceLimits: PRESENCE_LIMITS,
    onLocalChange: docId => { notices.push(docId) }
  })
  const doc = new LiveDocument('doc')
  doc.state = 'live'
  t.teardown(() => doc.destroy())
  const sender = { publish: (_topic: Uint8Array, frame: Uint8Array) => { local.push({ via: 'sender', frame }); return true } }
  return { changes, doc, local, peers: peerFrames, stored, notices, sender }
}

function textUpdate (text: string): Uint8Array {
  const source = new Y.Doc()
  source.getText('t').insert(0, text)
  return Y.encodeStateAsUpdate(source)
}

/** Structs that integrate, then a delete set that claims five clients and ends. */
function failingHalfway (text: string): Uint8Array {
  const broken = textUpdate(text).slice()
  broken[broken.length - 1] = 5
  return broken
}

function updateOf (frame: Uint8Array): Uint8Array {
  const message = decodeClientMessage(frame)
  if (message.kind !== 'sync-update') throw new Error(`not an update frame: ${message.kind}`)
  return message.update
}

t.test('a local change goes to the other local clients, the peers, the store and the notice, as the given frame', async t => {
  const r = recorder(t)
  const frame = Uint8Array.of(9, 9, 9) // forwarded as is: the commit path never re-encodes a frame it was given
  t.equal(r.changes.commit(r.doc, textUpdate('hi'), frame, 'client', r.sender, 'always'), true)
  t.same(r.local, [{ via: 'sender', frame }], 'published through the sender, which skips itself')
  t.same(r.peers, [frame], 'the same frame to the peers')
  t.equal(r.stored.length, 1)
  t.same(r.notices, ['doc'])
  t.equal(r.doc.ydoc.getText('t').toString(), 'hi')
})

t.test('relay if-changed hands on nothing for a change that changes nothing; always relays it', async t => {
  const r = recorder(t)
  const update = textUpdate('once')
  r.changes.commit(r.doc, update, null, 'admin', null, 'if-changed')
  t.equal(r.changes.commit(r.doc, update, null, 'admin', null, 'if-changed'), false, 'a resend changes nothing')
  t.equal(r.local.length, 1, 'and is not published again')
  t.equal(r.stored.length, 1, 'nor stored again')
  t.equal(r.changes.commit(r.doc, update, null, 'client', r.sender, 'always'), true, 'a client\'s duplicate is handed on')
  t.equal(r.local.length, 2, 'and relayed, as y-websocket does')
})

t.test('relay if-changed still hands on an update Yjs keeps pending: the one completing it later does not carry it', async t => {
  const r = recorder(t)
  const source = new Y.Doc()
  source.getText('t').insert(0, 'first ')
  const first = Y.encodeStateAsUpdate(source)
  const before = Y.encodeStateVector(source)
  source.getText('t').insert(6, 'second')
  const second = Y.encodeStateAsUpdate(source, before)
  // The second edit arrives first (an offline batch ahead of what it builds on): pending.
  t.equal(r.changes.commit(r.doc, second, null, 'batch', null, 'if-changed'), true, 'handed on although nothing changed yet')
  t.equal(r.local.length, 1, 'relayed to the local clients')
  t.equal(r.stored.length, 1, 'and queued for the store')
  t.equal(r.doc.ydoc.getText('t').toString(), '', 'pending on the server')
  r.changes.commit(r.doc, first, null, 'batch', null, 'if-changed')
  t.equal(r.doc.ydoc.getText('t').toString(), 'first second')
  // A replica that received only what was handed on has everything too.
  const replica = new Y.Doc()
  for (const { frame } of r.local) Y.applyUpdate(replica, updateOf(frame))
  t.equal(replica.getText('t').toString(), 'first second', 'every replica completes')
  const restored = new Y.Doc()
  for (const update of r.stored) Y.applyUpdate(restored, update)
  t.equal(restored.getText('t').toString(), 'first second', 'and so does what was stored')
})

t.test('a second pending update is handed on too, though Yjs merges it into the pending one it already keeps', async t => {
  // After a failover, updates arrive out of order on two channels: the document's (a peer's
  // latest edits) and the node's own (the repair with the edits lost before them).
  for (const path of ['peer', 'client'] as const) {
    const r = recorder(t)
    const source = new Y.Doc()
    const edits: Uint8Array[] = []
    for (const word of ['one ', 'two ', 'three ', 'four']) {
      const before = Y.encodeStateVector(source)
      source.getText('t').insert(source.getText('t').length, word)
      edits.push(Y.encodeStateAsUpdate(source, before))
    }
    const commit = (update: Uint8Array): void => {
      if (path === 'peer') r.changes.commitFromPeer(r.doc, update, null, 'peer')
      else r.changes.commit(r.doc, update, null, 'batch', null, 'if-changed')
    }
    // 'three' and 'four' arrive first, one after the other: both wait for 'one' and 'two'.
    commit(edits[2]!)
    commit(edits[3]!)
    t.equal(r.local.length, 2, `${path}: both pending updates relayed`)
    t.equal(r.stored.length, 2, `${path}: both stored`)
    // The repair carries only what was lost: 'one' and 'two'.
    commit(Y.mergeUpdates([edits[0]!, edits[1]!]))
    t.equal(r.doc.ydoc.getText('t').toString(), 'one two three four', `${path}: the server completes`)
    const replica = new Y.Doc()
    for (const { frame } of r.local) Y.applyUpdate(replica, updateOf(frame))
    t.equal(replica.getText('t').toString(), 'one two three four', `${path}: a client that received only what was handed on completes`)
    const restored = new Y.Doc()
    for (const update of r.stored) Y.applyUpdate(restored, update)
    t.equal(restored.getText('t').toString(), 'one two three four', `${path}: and so does what was stored`)
  }
})

t.test('without a frame, one is encoded from the update and reaches every local client', async t => {
  const r = recorder(t, false)
  const update = textUpdate('encoded')
  r.changes.commit(r.doc, update, null, 'admin', null, 'always')
  t.equal(r.local.length, 1)
  t.equal(r.local[0]!.via, 'all', 'no sender: every subscriber')
  t.same(updateOf(r.local[0]!.frame), update)
})

t.test('an update Yjs rejects partway: the part that integrated is handed on, then the error is thrown', async t => {
  for (const source of ['client', 'peer'] as const) {
    const r = recorder(t)
    const bad = failingHalfway('structs that integrate')
    let thrown: unknown = null
    try {
      if (source === 'client') r.changes.commit(r.doc, bad, bad, 'client', r.sender, 'always')
      else r.changes.commitFromPeer(r.doc, bad, null, 'peer')
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof UpdateRejectedError, `${source}: rejected`)
    t.equal(r.doc.ydoc.getText('t').toString(), 'structs that integrate', `${source}: the structs were applied`)
    t.equal(r.local.length, 1, `${source}: the partial update was published locally`)
    t.equal(r.local[0]!.via, 'all', `${source}: to every local client, the sender included (it never had the server's version of it)`)
    const partial = updateOf(r.local[0]!.frame)
    t.doesNotThrow(() => Y.decodeUpdate(partial), `${source}: as a well-formed update, not the rejected bytes`)
    t.same(r.stored, [partial], `${source}: and queued for the store`)
    const replica = new Y.Doc()
    Y.applyUpdate(replica, partial)
    t.same(Y.encodeStateVector(replica), Y.encodeStateVector(r.doc.ydoc), `${source}: a replica of the partial equals the server`)
    t.same(r.peers.length, source === 'client' ? 1 : 0, `${source}: peers get it only when it was made here`)
  }
})

t.test('a peer\'s change reaches local clients and the store, never the peers or the change notice', async t => {
  const r = recorder(t)
  const update = textUpdate('from afar')
  r.changes.commitFromPeer(r.doc, update, null, 'peer')
  t.equal(r.local.length, 1)
  t.same(updateOf(r.local[0]!.frame), update)
  t.equal(r.stored.length, 1)
  t.same(r.peers, [])
  t.same(r.notices, [])
})

t.test('a peer\'s change that this node already has goes nowhere; one Yjs keeps pending is still stored', async t => {
  const r = recorder(t)
  const source = new Y.Doc()
  source.getText('t').insert(0, 'first')
  const first = Y.encodeStateAsUpdate(source)
  const before = Y.encodeStateVector(source)
  source.getText('t').insert(5, ' second')
  const second = Y.encodeStateAsUpdate(source, before)

  r.changes.commitFromPeer(r.doc, first, null, 'peer')
  r.changes.commitFromPeer(r.doc, first, null, 'peer')
  t.equal(r.stored.length, 1, 'the duplicate (a repair\'s reply) is not stored again')
  t.equal(r.local.length, 1, 'nor published to local clients again')

  const fresh = recorder(t)
  fresh.changes.commitFromPeer(fresh.doc, second, null, 'peer')
  t.equal(fresh.stored.length, 1, 'an update waiting for its dependency is stored all the same')
  fresh.changes.commitFromPeer(fresh.doc, first, null, 'peer')
  t.equal(fresh.doc.ydoc.getText('t').toString(), 'first second')
  t.equal(fresh.stored.length, 2)
})

t.test('presence that times out is removed for the local clients; a throw while telling them is contained', async t => {
  const errors: string[] = []
  let failing = true
  const published: Uint8Array[] = []
  const changes = new DocumentChanges({
    localFanout: {
      publish: (_topic, frame) => {
        if (failing) throw new Error('socket gone')
        published.push(frame)
        return true
      }
    },
    peers: null,
    store: { enqueue: () => {} },
    metrics: new Metrics(false),
    presenceLimits: PRESENCE_LIMITS,
    onLocalChange: () => {},
    onPresenceError: (doc, err) => { errors.push(`${doc.id}: ${(err as Error).message}`) }
  })
  const docs = [new LiveDocument('first'), new LiveDocument('second')]
  t.teardown(() => { for (const doc of docs) doc.destroy() })
  const sender = { publish: () => true }
  for (const [i, doc] of docs.entries()) {
    doc.state = 'live'
    changes.afterLoad(doc)
    const update = encodeAwarenessEntries([awarenessEntry(100 + i, 1, '{"user":"ada"}')])
    changes.commitAwareness(doc, update, encodeAwarenessFrame([awarenessEntry(100 + i, 1, '{"user":"ada"}')]), { awarenessClients: null, userId: `user-${i}` }, sender)
  }
  const expire = (): void => { for (const doc of docs) doc.presence.expire(Date.now() + 31_000) }
  t.doesNotThrow(expire, 'the sweep goes on')
  t.same(errors, ['first: socket gone', 'second: socket gone'], 'each failure reported with its document')
  t.same(docs.map(doc => doc.presence.presentCount), [0, 0], 'both timed out')

  failing = false
  const third = new LiveDocument('third')
  t.teardown(() => { third.destroy() })
  third.state = 'live'
  changes.afterLoad(third)
  changes.commitAwareness(third, encodeAwarenessEntries([awarenessEntry(7, 3, '{}')]), encodeAwarenessFrame([awarenessEntry(7, 3, '{}')]), { awarenessClients: null, userId: 'u' }, sender)
  third.presence.expire(Date.now() + 31_000)
  t.same(published, [encodeAwarenessFrame([awarenessEntry(7, 3, 'null')])], 'the removal, at the last clock, goes to every local client')
})
