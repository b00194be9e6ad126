import t from 'tap'
import * as Y from 'yjs'
import { documentToJson } from '../src/documents/document-json.js'
import { LiveDocument } from '../src/documents/live-document.js'
import { StateChunks } from '../src/documents/state-chunks.js'
import { AutomaticVersionStates, MAX_AUTOMATIC_AT_ONCE } from '../src/versions/state-snapshot.js'
import { restoreStateUpdate } from '../src/versions/restore.js'
import { MAX_QUEUED_READS, MAX_QUEUED_TASKS, StateWorker } from '../src/versions/state-worker.js'
import { diffStates } from '../src/versions/version-diff.js'

/** How a failed task rejects: with the worker's error, never taking this process down. */
const FAILED = { name: 'StateWorkerError' }

function docWith (text: string, title: string): Y.Doc {
  const doc = new Y.Doc()
  doc.getText('text').insert(0, text)
  doc.getMap('map').set('title', title)
  return doc
}

function applied (state: Uint8Array): Y.Doc {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  return doc
}

function contentAfter (state: Uint8Array, updates: Uint8Array[]): Record<string, unknown> {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  for (const update of updates) Y.applyUpdate(doc, update)
  return documentToJson(Y.encodeStateAsUpdate(doc))
}

/** A promise and the function that settles it (Node 20 has no Promise.withResolvers). */
function opened (): { promise: Promise<void>, resolve: () => void } {
  let resolve = (): void => {}
  const promise = new Promise<void>(r => { resolve = r })
  return { promise, resolve }
}

const SIZE = { chunkBytes: 16 * 1024, maxPieceBytes: 64 * 1024 }

t.test('the worker computes what the functions compute on the event loop, and hands the current state back', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const doc = docWith('first words '.repeat(20_000), 'Plan')
  const version = Y.encodeStateAsUpdate(doc)
  doc.getText('text').insert(0, 'later: ')
  doc.getMap('map').set('title', 'Changed')
  const current = Y.encodeStateAsUpdate(doc)
  const expected = contentAfter(current, [restoreStateUpdate(current, version)])
  const currentCopy = current.slice()

  // The current state in pieces, as the routes encode it (one per event-loop turn).
  const snapshot = StateChunks.forSnapshot(doc, { chunkBytes: 16 * 1024, maxPieceBytes: 256 * 1024 })
  const pieces: Uint8Array[] = []
  for (let piece = snapshot.next(); piece !== null; piece = snapshot.next()) pieces.push(piece)
  const large = pieces.find(piece => piece.byteLength >= 64 * 1024)!
  t.ok(pieces.length > 1, `in pieces (${pieces.length})`)
  const result = await worker.restore(pieces, version.slice())
  t.same(contentAfter(currentCopy, [result.update]), expected, 'the same restore (each made by a fresh client id)')
  t.same(expected, { text: 'first words '.repeat(20_000), map: { title: 'Plan' } }, 'which restores the version')
  t.same(documentToJson(result.current), documentToJson(currentCopy), 'the current state comes back as one')
  t.same(Array.from(Y.encodeStateVector(applied(result.current))), Array.from(Y.encodeStateVector(doc)), 'with every struct')
  t.equal(large.byteLength, 0, 'a large piece handed over was transferred, not copied')

  const snapshotAgain = StateChunks.forSnapshot(doc, SIZE)
  const again: Uint8Array[] = []
  for (let piece = snapshotAgain.next(); piece !== null; piece = snapshotAgain.next()) again.push(piece)
  t.same(documentToJson(await worker.mergeState(again)), documentToJson(currentCopy), 'pieces merged into one state')

  const from = version.slice()
  t.same(JSON.parse(await worker.diffJson(from, currentCopy.slice())), diffStates(version, currentCopy), 'the same diff')
  t.same(JSON.parse(await worker.documentJson(currentCopy.slice())), documentToJson(currentCopy), 'the same JSON')
})

t.test('a state that is a view into a shared buffer is copied, never detached', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const state = Y.encodeStateAsUpdate(docWith('small', 'x'))
  // Small Buffers share Node's pool: transferring one would detach every other on it.
  const pooled = Buffer.from(state)
  const neighbour = Buffer.from('a neighbour on the same pool')
  t.not(pooled.byteLength, pooled.buffer.byteLength, 'the state is a view into a larger buffer')
  t.same(JSON.parse(await worker.documentJson(pooled)), { text: 'small', map: { title: 'x' } })
  t.equal(pooled.byteLength, state.byteLength, 'the view is intact')
  t.equal(neighbour.toString(), 'a neighbour on the same pool', 'and so is its neighbour')
})

t.test('a state that does not decode fails its task alone', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  await t.rejects(worker.documentJson(Uint8Array.of(1, 2, 3, 200, 200, 200)), FAILED)
  t.same(JSON.parse(await worker.documentJson(Y.encodeStateAsUpdate(docWith('still', 'works')))), { text: 'still', map: { title: 'works' } }, 'the next task is answered')
})

t.test('a computation that kills the thread (its heap limit) fails alone: the task queued behind it gets a new thread', async t => {
  const worker = new StateWorker({ maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 })
  t.teardown(async () => { await worker.close() })
  const large = new Y.Doc()
  const text = large.getText('text')
  // Many small items (one per insert at a random place) take far more heap than their bytes.
  for (let i = 0; i < 60_000; i++) text.insert(Math.floor(Math.random() * (text.length + 1)), 'word ')
  const state = Y.encodeStateAsUpdate(large)
  const heavy = t.rejects(worker.diffJson(state.slice(), state.slice()), { ...FAILED, message: /memory limit/ }, 'the task fails')
  const behind = worker.documentJson(Y.encodeStateAsUpdate(docWith('after', 'it')))
  await heavy
  t.same(JSON.parse(await behind), { text: 'after', map: { title: 'it' } }, 'the task queued behind it is answered')
  t.ok(process.memoryUsage().rss > 0, 'this process is still running')
})

t.test('a computation past its deadline is stopped; the next one runs', async t => {
  // Far apart: the diff takes several seconds, a new thread and a small task well under one.
  const worker = new StateWorker(undefined, 1_500)
  t.teardown(async () => { await worker.close() })
  const large = new Y.Doc()
  const text = large.getText('text')
  for (let i = 0; i < 120_000; i++) text.insert(Math.floor(Math.random() * (text.length + 1)), 'word ')
  const state = Y.encodeStateAsUpdate(large)
  await t.rejects(worker.diffJson(state.slice(), state.slice()), { ...FAILED, message: /longer than 1500 ms/ })
  t.same(JSON.parse(await worker.documentJson(Y.encodeStateAsUpdate(docWith('next', 'one')))), { text: 'next', map: { title: 'one' } })
})

t.test('an empty or already handed-over state is refused, not left waiting', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const state = Y.encodeStateAsUpdate(docWith('z'.repeat(100_000), 'handed'))
  await worker.documentJson(state)
  t.equal(state.byteLength, 0, 'handed over')
  await t.rejects(worker.documentJson(state), { ...FAILED, message: /handed-over/ })
})

t.test('closing fails the tasks in flight and refuses new ones', async t => {
  const worker = new StateWorker()
  const big = Y.encodeStateAsUpdate(docWith('x'.repeat(2_000_000), 'big'))
  const inFlight = t.rejects(worker.diffJson(big.slice(), big.slice()), FAILED)
  await worker.close()
  await inFlight
  await t.rejects(worker.documentJson(big), FAILED)
})

t.test('at most MAX_QUEUED_TASKS at once, of which MAX_QUEUED_READS reads; more are refused at once, and the queue drains', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const state = Y.encodeStateAsUpdate(docWith('y'.repeat(500_000), 'queued'))
  const reads = Array.from({ length: MAX_QUEUED_READS }, async () => await worker.documentJson(state.slice()))
  await t.rejects(worker.documentJson(state.slice()), { name: 'StateWorkerBusyError' }, 'one more read is refused')
  const pieces = (): Uint8Array[] => [state.slice()]
  const merges = Array.from({ length: MAX_QUEUED_TASKS - MAX_QUEUED_READS }, async () => await worker.mergeState(pieces()))
  await t.rejects(worker.mergeState(pieces()), { name: 'StateWorkerBusyError' }, 'past the total, anything is refused')
  t.equal((await Promise.all(reads)).length, MAX_QUEUED_READS, 'the queued reads are answered')
  t.equal((await Promise.all(merges)).length, MAX_QUEUED_TASKS - MAX_QUEUED_READS, 'and the rest')
  t.ok(JSON.parse(await worker.documentJson(state.slice())), 'and a task after them too')
})

t.test('a place is taken before the states are gathered: a busy node refuses before it loads or encodes anything', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const state = Y.encodeStateAsUpdate(docWith('z'.repeat(200_000), 'slots'))
  const gate = opened()
  const held: Array<Promise<string>> = []
  // Every place taken by callers still gathering their states (nothing queued on the thread yet).
  for (let i = 0; i < MAX_QUEUED_TASKS; i++) {
    held.push(worker.withSlot(i < MAX_QUEUED_READS ? 'read' : 'write', async slot => {
      await gate.promise
      return await worker.documentJson(state.slice(), slot)
    }))
  }
  let gathered = false
  await t.rejects(worker.withSlot('write', async () => { gathered = true }), { name: 'StateWorkerBusyError' }, 'one more caller is refused')
  t.notOk(gathered, 'before it gathers anything')
  await t.rejects(worker.documentJson(state.slice()), { name: 'StateWorkerBusyError' }, 'and so is a task without a place')
  gate.resolve()
  t.equal((await Promise.all(held)).length, MAX_QUEUED_TASKS, 'the callers holding places get their results')
  const failing = worker.withSlot('read', async () => { throw new Error('the version is gone') })
  await t.rejects(failing, /the version is gone/, 'a caller that fails ...')
  const reads = Array.from({ length: MAX_QUEUED_READS }, async () => await worker.withSlot('read', async slot => await worker.documentJson(state.slice(), slot)))
  t.equal((await Promise.all(reads)).length, MAX_QUEUED_READS, '... gives its place back, as every finished one did')
})

t.test('reads take at most MAX_QUEUED_READS places; writes still get the rest', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const gate = opened()
  const reads = Array.from({ length: MAX_QUEUED_READS }, async () => { await worker.withSlot('read', async () => { await gate.promise }) })
  await t.rejects(worker.withSlot('read', async () => {}), { name: 'StateWorkerBusyError' }, 'one more read is refused')
  let wrote = false
  await worker.withSlot('write', async () => { wrote = true })
  t.ok(wrote, 'a restore or a version still gets a place')
  gate.resolve()
  await Promise.all(reads)
})

t.test('automatic versions: a large document through the worker, at most MAX_AUTOMATIC_AT_ONCE at a time; at once with the worker full or failing', async t => {
  const doc = new LiveDocument('large')
  doc.state = 'live'
  t.teardown(() => doc.destroy())
  for (let i = 0; i < 40; i++) doc.ydoc.getText('text').insert(0, `${i}:` + 'w'.repeat(40_000))
  doc.sizeEstimate = Y.encodeStateAsUpdate(doc.ydoc).length
  const expected = documentToJson(Y.encodeStateAsUpdate(doc.ydoc))
  const working = new StateWorker()
  t.teardown(async () => { await working.close() })
  // Counts the merges the worker is asked for, and holds them while `hold` is closed.
  let merges = 0
  let inFlight = 0
  let most = 0
  let hold: Promise<void> = Promise.resolve()
  const merge = working.mergeState.bind(working)
  working.mergeState = async (pieces, slot) => {
    merges++
    most = Math.max(most, ++inFlight)
    try {
      await hold
      return await merge(pieces, slot)
    } finally {
      inFlight--
    }
  }
  const states = new AutomaticVersionStates(SIZE, working)
  t.same(documentToJson((await states.of(doc))!), expected, 'the whole document')
  t.equal(merges, 1, 'merged on the worker')
  const gate = opened()
  hold = gate.promise
  const many = Array.from({ length: MAX_AUTOMATIC_AT_ONCE + 3 }, async () => await states.of(doc))
  await new Promise(resolve => setTimeout(resolve, 300))
  gate.resolve()
  for (const state of await Promise.all(many)) t.same(documentToJson(state!), expected)
  t.equal(most, MAX_AUTOMATIC_AT_ONCE, 'never more than MAX_AUTOMATIC_AT_ONCE on the worker at once; the others waited their turn')
  t.equal(merges, 1 + MAX_AUTOMATIC_AT_ONCE + 3, 'and then went through it too')

  const failing = new StateWorker(undefined, 1) // every computation past its deadline
  t.teardown(async () => { await failing.close() })
  t.same(documentToJson((await new AutomaticVersionStates(SIZE, failing).of(doc))!), expected, 'a failing worker: encoded at once')
  const full = opened()
  const held = Array.from({ length: MAX_QUEUED_TASKS }, async () => { await working.withSlot('write', async () => { await full.promise }) })
  const before = merges
  t.same(documentToJson((await states.of(doc))!), expected, 'a full worker: encoded at once')
  t.equal(merges, before, 'without waiting for it')
  full.resolve()
  await Promise.all(held)
  t.equal(await states.of(undefined), null, 'a document not loaded here has none')
  const small = new LiveDocument('small')
  small.state = 'live'
  t.teardown(() => small.destroy())
  small.ydoc.getText('text').insert(0, 'short')
  small.sizeEstimate = 100
  const smallState = await states.of(small)
  t.equal(merges, before, 'a small document never asks the worker')
  const copy = new Y.Doc()
  Y.applyUpdate(copy, smallState!)
  t.equal(copy.getText('text').toString(), 'short')
})
