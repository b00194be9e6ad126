/**
 * What presence (awareness) costs the node per cursor move and per join, in one process, against
 * y-protocols' Awareness used as the reference server uses it. One document with 10 people whose
 * cursors move (a state of the size y-prosemirror sends, renewed with a new clock each time); the
 * stock provider sends every state it receives back, so each move reaches the server 10 times:
 * once from its author, 9 times as an echo at the same clock.
 *
 * - reference: `applyAwarenessUpdate` for each (parses the state; for the move itself compares it
 *   deeply with the last one) and `encodeAwarenessUpdate` of the changed client for the broadcast
 *   (stringifies it again), as y-websocket's server does; a join encodes every state;
 * - ours: `readAwarenessEntries` (echoes left out unparsed, the move checked and parsed once) and
 *   `DocumentPresence.apply`; the bytes received are relayed as they are; a join is answered from
 *   the cached frame, encoded from the states' text after a change.
 *
 * Reports CPU per move (with its echoes) and per update followed by a join (which encodes everyone's
 * states once), and the heap one such document's
 * presence holds. Timings vary with the machine; compare the two lines of one run.
 *
 *   node --expose-gc --import tsx bench/diagnostics/presence-cost.ts
 */
import * as Y from 'yjs'
import { applyAwarenessUpdate, Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness'
import { DocumentPresence, type AwarenessOwner, type PresenceLimits } from '../../src/documents/presence.js'
import { awarenessEntry, encodeAwarenessEntries, readAwarenessEntries } from '../../src/protocol/awareness-entries.js'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const PEOPLE = 10
const UPDATES = 100_000
const JOINS = 20_000
const limits: PresenceLimits = { maxStateBytes: 65_536, maxStateDepth: 16, maxClientsPerConnection: 4, maxEntriesPerDocument: 1000, maxBytesPerDocument: 1 << 20 }

function cursorState (n: number): object {
  const position = (offset: number): object => ({ type: { client: 1234567890, clock: 17 }, tname: null, item: { client: 987654321, clock: 4000 + n + offset }, assoc: 0 })
  return { user: { name: `Person ${n % PEOPLE}`, color: '#30bced', colorLight: '#30bced33' }, cursor: { anchor: position(0), head: position(5) } }
}

// Every update as a client sends it: person i's state at clock `round + 1`.
const updates: Uint8Array[] = []
for (let round = 0; updates.length < UPDATES; round++) {
  for (let person = 0; person < PEOPLE && updates.length < UPDATES; person++) {
    updates.push(encodeAwarenessEntries([awarenessEntry(1000 + person, round + 1, JSON.stringify(cursorState(round * PEOPLE + person)))]))
  }
}

// A person moves, then someone joins: the same updates for both, at clocks after the others.
const moves = Array.from({ length: JOINS }, (_, i) => encodeAwarenessEntries([awarenessEntry(1000 + (i % PEOPLE), UPDATES + i + 1, JSON.stringify(cursorState(i)))]))

function cpuMs (run: () => void): number {
  const before = process.cpuUsage()
  run()
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1000
}

function reference (): { perUpdateUs: number, perJoinUs: number, heapBytes: number } {
  const awareness = new Awareness(new Y.Doc())
  awareness.setLocalState(null)
  let broadcast = 0
  awareness.on('update', ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }) => {
    broadcast += encodeAwarenessUpdate(awareness, added.concat(updated, removed)).length
  })
  const ms = cpuMs(() => {
    for (const update of updates) {
      for (let copy = 0; copy < PEOPLE; copy++) applyAwarenessUpdate(awareness, update, 'conn')
    }
  })
  const joinMs = cpuMs(() => {
    for (let i = 0; i < JOINS; i++) {
      applyAwarenessUpdate(awareness, moves[i]!, 'conn')
      encodeAwarenessUpdate(awareness, [...awareness.getStates().keys()])
    }
  })
  if (broadcast === 0) throw new Error('nothing broadcast')
  const heap = heapOf(() => { const a = new Awareness(new Y.Doc()); a.setLocalState(null); for (const update of updates.slice(0, PEOPLE)) applyAwarenessUpdate(a, update, 'conn'); return a })
  awareness.destroy()
  return { perUpdateUs: ms * 1000 / updates.length, perJoinUs: joinMs * 1000 / JOINS, heapBytes: heap }
}

function ours (): { perUpdateUs: number, perJoinUs: number, heapBytes: number } {
  const presence = new DocumentPresence()
  const owners: AwarenessOwner[] = Array.from({ length: PEOPLE }, (_, i) => ({ awarenessClients: null, userId: `user-${i}` }))
  let relayed = 0
  const ms = cpuMs(() => {
    updates.forEach((update, i) => {
      for (let copy = 0; copy < PEOPLE; copy++) {
        const owner = owners[(i + copy) % PEOPLE]!
        const entries = readAwarenessEntries(update, limits, presence.staleFor(owner))
        if (entries.length > 0 && presence.apply(entries, owner, limits).length === entries.length) relayed += update.length
      }
    })
  })
  const joinMs = cpuMs(() => {
    for (let i = 0; i < JOINS; i++) {
      presence.apply(readAwarenessEntries(moves[i]!, limits), owners[i % PEOPLE]!, limits)
      presence.frame()
    }
  })
  if (relayed === 0) throw new Error('nothing relayed')
  const heap = heapOf(() => {
    const p = new DocumentPresence()
    updates.slice(0, PEOPLE).forEach((update, i) => p.apply(readAwarenessEntries(update, limits), owners[i]!, limits))
    return p
  })
  presence.destroy()
  return { perUpdateUs: ms * 1000 / updates.length, perJoinUs: joinMs * 1000 / JOINS, heapBytes: heap }
}

/** Heap held by 1,000 of what `make` returns, per one, after full GCs. */
function heapOf (make: () => unknown): number {
  const held: unknown[] = []
  gc!(); gc!()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < 1000; i++) held.push(make())
  gc!(); gc!()
  const bytes = (process.memoryUsage().heapUsed - before) / held.length
  held.length = 0
  return Math.round(bytes)
}

for (let round = 1; round <= 3; round++) {
  const r = reference()
  const o = ours()
  console.log(`round ${round}: per move and its ${PEOPLE - 1} echoes ${o.perUpdateUs.toFixed(2)} vs ${r.perUpdateUs.toFixed(2)} µs (${(o.perUpdateUs / r.perUpdateUs).toFixed(2)}x), ` +
    `per update and join ${o.perJoinUs.toFixed(2)} vs ${r.perJoinUs.toFixed(2)} µs (${(o.perJoinUs / r.perJoinUs).toFixed(2)}x), ` +
    `heap of ${PEOPLE} people's presence ${o.heapBytes} vs ${r.heapBytes} bytes (${(o.heapBytes / r.heapBytes).toFixed(2)}x)`)
}
process.exit(0)
