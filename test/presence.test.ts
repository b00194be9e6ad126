import t from 'tap'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { applyAwarenessUpdate, Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness'
import { DocumentPresence, type AwarenessOwner, type PresenceLimits } from '../src/documents/presence.js'
import { presenceTimeouts } from '../src/documents/presence-timeouts.js'
import { LiveDocument } from '../src/documents/live-document.js'
import { awarenessEntry, encodeAwarenessEntries, readAwarenessEntries, type AwarenessEntry } from '../src/protocol/awareness-entries.js'

const limits: PresenceLimits = { maxStateBytes: 4096, maxStateDepth: 8, maxClientsPerConnection: 4, maxEntriesPerDocument: 100, maxBytesPerDocument: 1 << 20 }

function entry (clientId: number, clock: number, state: object | null): AwarenessEntry {
  return awarenessEntry(clientId, clock, JSON.stringify(state))
}

function owner (userId: string | null, remote = false): AwarenessOwner {
  return { awarenessClients: null, userId, remote }
}

/** An awareness update or frame's entries, as id → [clock, JSON text]. */
function read (update: Uint8Array | null, frame = false): Map<number, [number, string]> {
  const seen = new Map<number, [number, string]>()
  if (update === null) return seen
  const decoder = decoding.createDecoder(update)
  if (frame) decoding.readVarUint(decoder) // the message type
  const entries = readAwarenessEntries(frame ? decoding.readVarUint8Array(decoder) : update, limits)
  for (const e of entries) seen.set(e.clientId, [e.clock, e.json])
  return seen
}

/** The awareness update inside an awareness message. */
function updateOf (frame: Uint8Array): Uint8Array {
  const decoder = decoding.createDecoder(frame)
  decoding.readVarUint(decoder)
  return decoding.readVarUint8Array(decoder)
}

/** A small deterministic generator (mulberry32), so that a failure replays. */
function random (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test('what presence keeps matches what y-protocols\' Awareness keeps from the same accepted entries', async t => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const next = random(seed)
    const int = (n: number): number => Math.floor(next() * n)
    const presence = new DocumentPresence()
    const reference = new Awareness(new Y.Doc())
    reference.setLocalState(null)
    const owners = [owner('ada'), owner('ada'), owner('bob'), owner('cy', true)]
    for (let step = 0; step < 400; step++) {
      const who = owners[int(owners.length)]!
      if (int(20) === 0) {
        // A connection closes: its removals go to everyone.
        const removals = presence.removeOwner(who)
        if (removals !== null) applyAwarenessUpdate(reference, updateOf(removals), who)
        continue
      }
      const count = 1 + int(3)
      const entries = Array.from({ length: count }, () => entry(1 + int(6), int(8), int(4) === 0 ? null : { n: int(1000) }))
      const accepted = presence.apply(entries, who, limits)
      if (accepted.length > 0) applyAwarenessUpdate(reference, encodeAwarenessEntries(accepted), who)
      const ours = read(presence.frame(), true)
      const theirs = new Map<number, [number, string]>()
      for (const [id, state] of reference.getStates()) theirs.set(id, [reference.meta.get(id)!.clock, JSON.stringify(state)])
      if (JSON.stringify([...ours].sort()) !== JSON.stringify([...theirs].sort())) {
        t.same(ours, theirs, `seed ${seed}, step ${step}: the same states at the same clocks`)
        break
      }
      if (presence.presentCount !== ours.size) t.fail(`seed ${seed}, step ${step}: ${presence.presentCount} present, ${ours.size} in the frame`)
    }
    t.pass(`seed ${seed}: 400 steps`)
    reference.destroy()
    presence.destroy()
  }
})

t.test('leaving out the entries staleFor() names unread changes nothing that is kept or relayed', async t => {
  for (const seed of [11, 12, 13]) {
    const next = random(seed)
    const int = (n: number): number => Math.floor(next() * n)
    const direct = new DocumentPresence()
    const skipping = new DocumentPresence()
    const users = ['ada', 'ada', 'bob', null]
    const directOwners = users.map(user => owner(user))
    const skippingOwners = users.map(user => owner(user))
    let skipped = 0
    for (let step = 0; step < 400; step++) {
      const who = int(users.length)
      if (int(20) === 0) {
        t.same(skipping.removeOwner(skippingOwners[who]!), direct.removeOwner(directOwners[who]!))
        continue
      }
      const entries = Array.from({ length: 1 + int(3) }, () => entry(1 + int(6), int(8), int(4) === 0 ? null : { n: int(1000) }))
      const read = readAwarenessEntries(encodeAwarenessEntries(entries), limits, skipping.staleFor(skippingOwners[who]!))
      skipped += entries.length - read.length
      const accepted = skipping.apply(read, skippingOwners[who]!, limits)
      if (JSON.stringify(accepted) !== JSON.stringify(direct.apply(entries, directOwners[who]!, limits)) ||
          JSON.stringify(skipping.frame()) !== JSON.stringify(direct.frame())) {
        t.fail(`seed ${seed}, step ${step}: skipping changed what was accepted or kept`)
        break
      }
    }
    t.ok(skipped > 100, `seed ${seed}: ${skipped} entries left out unread`)
    direct.destroy()
    skipping.destroy()
  }
})

t.test('staleFor() names echoes, not removals at the same clock nor a possible takeover', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const ada = owner('ada')
  presence.apply([entry(7, 3, { a: 1 })], ada, limits)
  t.ok(presence.staleFor(owner('bob'))(7, 3, false), 'another user\'s echo at the same clock')
  t.ok(presence.staleFor(ada)(7, 2, false), 'an older clock')
  t.notOk(presence.staleFor(ada)(7, 4, false), 'a newer clock')
  t.notOk(presence.staleFor(ada)(7, 3, true), 'a removal at the same clock')
  t.notOk(presence.staleFor(owner('ada'))(7, 3, false), 'the same user on another connection: perhaps a takeover')
  t.ok(presence.staleFor(ada)(8, 0, true), 'removing an id nobody announced')
})

t.test('stale entries and echoes are dropped; a removal at the same clock applies', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const ada = owner('ada')
  t.equal(presence.apply([entry(7, 3, { a: 1 })], ada, limits).length, 1)
  t.equal(presence.apply([entry(7, 3, { a: 2 })], ada, limits).length, 0, 'the same clock: an echo')
  t.equal(presence.apply([entry(7, 2, { a: 2 })], ada, limits).length, 0, 'an older clock')
  t.equal(presence.apply([entry(7, 3, null)], ada, limits).length, 1, 'a removal at the same clock')
  t.equal(presence.frame(), null, 'nobody is present')
  t.equal(presence.apply([entry(7, 3, null)], ada, limits).length, 0, 'removing what is gone changes nothing')
  t.equal(presence.ownerOf(7), ada, 'the connection keeps its id while it is open')
})

t.test('a released id keeps its clock and its user: no stale echo brings it back, nobody else claims it', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const first = owner('ada')
  presence.apply([entry(7, 5, { a: 1 })], first, limits)
  t.same([...read(presence.removeOwner(first), true)], [[7, [5, 'null']]], 'removed at its last clock')
  t.equal(presence.removeOwner(first), null, 'nothing left to remove')
  t.equal(presence.apply([entry(7, 5, { a: 1 })], owner('ada'), limits).length, 0, 'an echo of the old state is stale')
  t.equal(presence.apply([entry(7, 9, { a: 1 })], owner('mallory'), limits).length, 0, 'another user cannot claim it')
  const again = owner('ada')
  t.equal(presence.apply([entry(7, 6, { a: 2 })], again, limits).length, 1, 'its user comes back with a newer clock')
  t.equal(presence.ownerOf(7), again)
})

t.test('one user\'s churn cannot push another user\'s released id out of memory to claim it', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const victim = owner('victim')
  presence.apply([entry(42, 7, { me: 'victim' })], victim, limits)
  presence.removeOwner(victim)
  // Mallory claims and releases 12,000 ids, four per connection, more than a document remembers.
  for (let c = 0; c < 3000; c++) {
    const connection = owner('mallory')
    presence.apply([0, 1, 2, 3].map(k => entry(100_000 + c * 4 + k, 1, {})), connection, limits)
    presence.removeOwner(connection)
  }
  t.equal(presence.apply([entry(42, 9, { me: 'forged' })], owner('mallory'), limits).length, 0, 'the victim\'s id is still theirs')
  t.equal(presence.apply([entry(42, 7, { me: 'victim' })], owner('victim'), limits).length, 0, 'and its clock is remembered: an old echo is stale')
  t.equal(presence.apply([entry(42, 8, { me: 'victim' })], owner('victim'), limits).length, 1, 'the victim comes back')
  t.equal(presence.apply([entry(100_000, 1, { me: 'bob' })], owner('bob'), limits).length, 1, 'mallory\'s oldest ids are the ones forgotten')
  t.equal(presence.apply([entry(100_000 + 11_999, 2, { me: 'bob' })], owner('bob'), limits).length, 0, 'her latest are still hers')
})

t.test('what released ids remember stays bounded however many users come and go', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const remembered = (): { byId: Map<number, unknown>, byUser: Map<unknown, number[]> } =>
    (presence as unknown as { formerOwners: { byId: Map<number, unknown>, byUser: Map<unknown, number[]> } }).formerOwners
  const roomy = { ...limits, maxEntriesPerDocument: 100_000 }
  for (let u = 0; u < 12_000; u++) {
    const user = owner(`user-${u}`)
    presence.apply([entry(u, 1, {})], user, roomy)
    presence.removeOwner(user)
    if (u % 2 === 0) {
      // Back on a new connection: the id is held again, and no longer remembered as released.
      presence.apply([entry(u, 2, {})], owner(`user-${u}`), roomy)
    }
  }
  t.equal(remembered().byId.size, 6000, 'the ids released and not held again')
  t.equal(remembered().byUser.size, 6000, 'one list per user that has one')
  t.ok([...remembered().byUser.values()].every(ids => ids.length === 1))
})

t.test('a tab\'s own removal takes its id back from the same user\'s tab that echoed it first', async t => {
  // Stock providers start at clock 0, which nobody applies: a tab that sets its state only after
  // connecting has claimed nothing when it echoes the first tab's state, so the echo takes the id
  // over. The first tab's removal, when it goes, must still remove its presence.
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const first = owner('ada')
  const second = owner('ada')
  presence.apply([entry(7, 1, { name: 'Ada' })], first, limits)
  t.equal(presence.apply([entry(7, 1, { name: 'Ada' })], second, limits).length, 1, 'the echo takes the id over')
  t.equal(presence.apply([entry(7, 2, null)], first, limits).length, 1, 'the first tab\'s removal is applied')
  t.equal(presence.presentCount, 0, 'nobody shown as Ada\'s first tab any more')
})

t.test('presence comes back after everyone left, and only then is swept', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const expired: Uint8Array[] = []
  presence.onExpired = removals => { expired.push(removals) }
  for (const round of [1, 2]) {
    const ada = owner('ada')
    t.equal(presence.apply([entry(7, round, { round })], ada, limits).length, 1, `round ${round}: present`)
    t.equal(presence.size, 1)
    t.not(presence.removeOwner(ada), null)
    t.equal(presence.size, 0, 'everyone left')
  }
  presenceTimeouts.sweep(Date.now() + 31_000)
  t.same(expired, [], 'nothing to expire')
})

t.test('a takeover moves the id with its state; the old connection\'s removal spares it', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const old = owner('ada')
  presence.apply([entry(7, 5, { tab: 'old' })], old, limits)
  const fresh = owner('ada')
  t.equal(presence.apply([entry(7, 5, { tab: 'old' })], fresh, limits).length, 1, 'a stale takeover is still relayed')
  t.same([...read(presence.frame(), true)], [[7, [5, '{"tab":"old"}']]], 'the state stays until renewed')
  t.equal(presence.ownerOf(7), fresh)
  t.equal(presence.removeOwner(old), null, 'the old connection no longer holds it')
  t.equal(presence.presentCount, 1)
})

t.test('the byte budget counts the states\' UTF-8 bytes, as joins receive them', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const small = { ...limits, maxBytesPerDocument: 100 }
  const wide = { n: '日本語'.repeat(10) } // 38 characters of JSON, 98 bytes
  t.equal(presence.apply([entry(1, 1, wide)], owner('ada'), small).length, 1)
  t.equal(presence.apply([entry(2, 1, { n: 'abc' })], owner('bob'), small).length, 0, 'full in bytes, though not in characters')
})

t.test('the byte budget counts what the states hold now: a timed-out or removed state frees its bytes', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  const small = { ...limits, maxBytesPerDocument: 100 }
  const ada = owner('ada')
  const big = { blob: 'x'.repeat(60) }
  t.equal(presence.apply([entry(1, 1, big)], ada, small).length, 1)
  t.equal(presence.apply([entry(2, 1, big)], owner('bob'), small).length, 0, 'past the budget: refused')
  presence.expire(Date.now() + 31_000)
  t.equal(presence.apply([entry(2, 1, big)], owner('bob'), small).length, 1, 'the timed-out state\'s bytes are free again')
  t.equal(presence.apply([entry(1, 2, big)], ada, small).length, 0, 'and now the first one does not fit')
})

t.test('states not renewed for 30 s are dropped by the node\'s one sweep; a peer\'s ids are released', async t => {
  const docs = [new LiveDocument('sweep-a'), new LiveDocument('sweep-b')]
  t.teardown(() => { for (const doc of docs) doc.destroy() })
  const client = new Awareness(new Y.Doc())
  t.teardown(() => { client.destroy() })
  client.setLocalState({ user: 'ada' })
  const entries = readAwarenessEntries(encodeAwarenessUpdate(client, [client.clientID]), limits)
  const local = owner('ada')
  const peer = owner('ada', true)
  docs[0]!.presence.apply(entries, local, limits)
  docs[1]!.presence.apply(entries, peer, limits)
  const expired: Array<[string, Map<number, [number, string]>]> = []
  for (const doc of docs) doc.presence.onExpired = removals => { expired.push([doc.id, read(removals, true)]) }
  presenceTimeouts.sweep(Date.now() + 10_000)
  t.same(expired, [], 'renewed 10 s ago: kept')
  presenceTimeouts.sweep(Date.now() + 31_000)
  const removal = new Map([[client.clientID, [1, 'null']]])
  t.same(expired, [['sweep-a', removal], ['sweep-b', removal]], 'not renewed for 31 s: removed from every document at its clock')
  t.equal(docs[0]!.presence.frame(), null)
  t.equal(docs[0]!.presence.ownerOf(client.clientID), local, 'a local connection keeps its id until it closes')
  t.equal(docs[1]!.presence.ownerOf(client.clientID), undefined, 'a peer\'s client is gone for good')
  presenceTimeouts.sweep(Date.now() + 62_000)
  t.equal(expired.length, 2, 'removed once')
})

t.test('an unloaded document leaves the presence sweep', async t => {
  const kept = new LiveDocument('sweep-kept')
  t.teardown(() => { kept.destroy() })
  const unloaded = new LiveDocument('sweep-unloaded')
  const entries = [entry(42, 1, { user: 'ada' })]
  kept.presence.apply(entries, owner('ada'), limits)
  unloaded.presence.apply(entries, owner('ada'), limits)
  const presence = unloaded.presence
  unloaded.destroy()
  // Presence put back after the unload: a sweep that still visited it would drop it.
  presence.apply([entry(42, 2, { user: 'ada' })], owner('ada'), limits)
  presenceTimeouts.sweep(Date.now() + 31_000)
  t.equal(kept.presence.presentCount, 0, 'the loaded document\'s stale presence is dropped')
  t.equal(presence.presentCount, 1, 'the unloaded document\'s presence is not visited')
})

t.test('this node\'s own clients\' states go to a peer with the user of each', async t => {
  const presence = new DocumentPresence()
  t.teardown(() => { presence.destroy() })
  presence.apply([entry(1, 1, { me: 1 })], owner('ada'), limits)
  presence.apply([entry(2, 1, { me: 2 })], owner('bob', true), limits)
  presence.apply([entry(3, 1, { me: 3 })], owner(null), limits)
  const local = presence.localStates()
  t.same([...read(local?.update ?? null).keys()], [1, 3])
  t.same(local?.users, ['ada', null])
})
