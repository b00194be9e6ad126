import t from 'tap'
import * as Y from 'yjs'
import { documentToJson } from '../src/documents/document-json.js'
import { restoreStateUpdate } from '../src/versions/restore.js'
import { MAX_QUEUED_TASKS, StateWorker } from '../src/versions/state-worker.js'
import { diffStates } from '../src/versions/version-diff.js'

/** How a failed task rejects: with the worker's error, never taking this process down. */
const FAILED = { name: 'StateWorkerError' }

function docWith (text: string, title: string): Y.Doc {
  const doc = new Y.Doc()
  doc.getText('text').insert(0, text)
  doc.getMap('map').set('title', title)
  return doc
}

function contentAfter (state: Uint8Array, updates: Uint8Array[]): Record<string, unknown> {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  for (const update of updates) Y.applyUpdate(doc, update)
  return documentToJson(Y.encodeStateAsUpdate(doc))
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

  const result = await worker.restore(current, version.slice(), SIZE)
  t.ok(result.updates.length > 3, `in pieces (${result.updates.length})`)
  t.same(contentAfter(currentCopy, result.updates), expected, 'the same restore (each made by a fresh client id)')
  t.same(expected, { text: 'first words '.repeat(20_000), map: { title: 'Plan' } }, 'which restores the version')
  t.same(Buffer.from(result.current), Buffer.from(currentCopy), 'the current state comes back whole')
  t.equal(current.byteLength, 0, 'the state handed over was transferred, not copied')

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

t.test('a computation that runs out of memory ends only the thread; the next task gets a new one', async t => {
  const worker = new StateWorker({ maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 })
  t.teardown(async () => { await worker.close() })
  const large = new Y.Doc()
  const text = large.getText('text')
  // Many small items (one per insert at a random place) take far more heap than their bytes.
  for (let i = 0; i < 60_000; i++) text.insert(Math.floor(Math.random() * (text.length + 1)), 'word ')
  const state = Y.encodeStateAsUpdate(large)
  await t.rejects(worker.diffJson(state.slice(), state.slice()), { ...FAILED, message: /memory limit/ }, 'the task fails')
  t.same(JSON.parse(await worker.documentJson(Y.encodeStateAsUpdate(docWith('after', 'it')))), { text: 'after', map: { title: 'it' } }, 'the next task is answered')
  t.ok(process.memoryUsage().rss > 0, 'this process is still running')
})

t.test('closing fails the tasks in flight and refuses new ones', async t => {
  const worker = new StateWorker()
  const big = Y.encodeStateAsUpdate(docWith('x'.repeat(2_000_000), 'big'))
  const inFlight = t.rejects(worker.diffJson(big.slice(), big.slice()), FAILED)
  await worker.close()
  await inFlight
  await t.rejects(worker.documentJson(big), FAILED)
})

t.test('at most MAX_QUEUED_TASKS wait; more are refused at once, and the queue drains', async t => {
  const worker = new StateWorker()
  t.teardown(async () => { await worker.close() })
  const state = Y.encodeStateAsUpdate(docWith('y'.repeat(500_000), 'queued'))
  const queued = Array.from({ length: MAX_QUEUED_TASKS }, async () => await worker.documentJson(state.slice()))
  await t.rejects(worker.documentJson(state.slice()), { name: 'StateWorkerBusyError' }, 'one more is refused')
  t.equal((await Promise.all(queued)).length, MAX_QUEUED_TASKS, 'the queued ones are answered')
  t.ok(JSON.parse(await worker.documentJson(state.slice())), 'and a task after them too')
})
