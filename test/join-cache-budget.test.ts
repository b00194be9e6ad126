import t from 'tap'
import * as Y from 'yjs'
import { JoinCacheBudget, joinCacheBudget } from '../src/documents/join-cache-budget.js'
import { LiveDocument } from '../src/documents/live-document.js'
import { drainChunks } from './helpers/chunks.js'

function holder (name: string, evicted: string[]): { evictJoinCache: () => void } {
  return { evictJoinCache: () => { evicted.push(name) } }
}

t.test('the budget drops the least recently used caches to make room, and refuses what cannot fit', async t => {
  const evicted: string[] = []
  const budget = new JoinCacheBudget(100)
  const a = holder('a', evicted)
  const b = holder('b', evicted)
  const c = holder('c', evicted)
  t.ok(budget.admit(a, 40))
  t.ok(budget.admit(b, 40))
  budget.touch(a)
  t.ok(budget.admit(c, 40), 'c fits once someone makes room')
  t.same(evicted, ['b'], 'b, used least recently, was dropped; a was touched after it')
  t.equal(budget.used, 80)
  t.equal(budget.holders, 2)

  t.notOk(budget.admit(a, 101), 'more than the whole budget is refused')
  t.equal(budget.used, 80, 'a refusal changes nothing: a keeps what it had')
  t.ok(budget.admit(a, 60), 'a grows: its old bytes are replaced, not added (60 + c\'s 40 fit)')
  t.same(evicted, ['b'])
  t.equal(budget.used, 100)
  t.ok(budget.admit(a, 70))
  t.same(evicted, ['b', 'c'], 'c makes room for a\'s 70')
  t.equal(budget.used, 70)
  budget.release(a)
  t.equal(budget.used, 0)
  t.equal(budget.holders, 0)
  budget.release(a)
  t.equal(budget.used, 0, 'releasing twice is harmless')
})

t.test('loaded documents keep their full state for fresh joins within the process budget only', async t => {
  const limit = joinCacheBudget.limit
  t.teardown(() => { joinCacheBudget.limit = limit })
  const content = new Y.Doc()
  content.getText('t').insert(0, 'x'.repeat(3000))
  const state = Y.encodeStateAsUpdate(content)
  joinCacheBudget.limit = Math.floor(state.length * 1.5)
  const fresh = Y.encodeStateVector(new Y.Doc())

  const a = new LiveDocument('join-cache-a')
  const b = new LiveDocument('join-cache-b')
  t.teardown(() => { a.destroy(); b.destroy() })
  a.applyStored([state])
  b.applyStored([state])
  const before = joinCacheBudget.used

  const first = a.encodeStateAsUpdate(fresh)
  t.equal(a.encodeStateAsUpdate(fresh), first, 'a second fresh join is answered from the cache')
  t.equal(joinCacheBudget.used - before, first.length)
  const fromB = b.encodeStateAsUpdate(fresh)
  t.equal(b.encodeStateAsUpdate(fresh), fromB, 'b is cached now')
  t.equal(joinCacheBudget.used - before, fromB.length, 'a\'s cache was dropped to make room: the budget holds one')
  t.not(a.encodeStateAsUpdate(fresh), first, 'a encodes again (and takes the room back from b)')
  t.same(Y.decodeUpdate(a.encodeStateAsUpdate(fresh)), Y.decodeUpdate(first), 'with the same content')

  b.apply(Y.encodeStateAsUpdate(content, Y.encodeStateVector(b.ydoc)), null)
  const edit = new Y.Doc()
  Y.applyUpdate(edit, state)
  const sv = Y.encodeStateVector(edit)
  edit.getText('t').insert(0, 'y')
  a.apply(Y.encodeStateAsUpdate(edit, sv), null)
  t.equal(joinCacheBudget.used, before, 'a change drops the document\'s cache and gives its bytes back')

  joinCacheBudget.limit = 0
  const uncached = b.encodeStateAsUpdate(fresh)
  t.not(b.encodeStateAsUpdate(fresh), uncached, 'a budget of 0 caches nothing')
  t.equal(joinCacheBudget.used, before)
})

t.test('other callers read the cache but do not fill it; a large document keeps its chunks over its full state when both do not fit', async t => {
  const limit = joinCacheBudget.limit
  t.teardown(() => { joinCacheBudget.limit = limit })
  const content = new Y.Doc()
  content.getText('t').insert(0, 'x'.repeat(10_000))
  const state = Y.encodeStateAsUpdate(content)
  const doc = new LiveDocument('join-cache-large')
  t.teardown(() => { doc.destroy() })
  doc.apply(state, 'client')
  const before = joinCacheBudget.used
  const once = doc.encodeFullState()!
  t.equal(joinCacheBudget.used, before, 'a version or a repair does not fill the cache')
  t.not(doc.encodeFullState(), once, 'and encodes each time')

  joinCacheBudget.limit = before + Math.floor(state.length * 1.5)
  const fresh = new Uint8Array([0])
  const full = doc.encodeStateAsUpdate(fresh)
  t.equal(doc.encodeFullState(), full, 'other callers read what a join cached')
  const size = { chunkBytes: 1000, maxPieceBytes: 1000 }
  const first = drainChunks(doc.stateChunks(fresh, size))
  t.ok(first.length >= 10, `${first.length} chunks`)
  const second = drainChunks(doc.stateChunks(fresh, size))
  t.ok(second.every((chunk, i) => chunk === first[i]), 'the recorded chunks were kept for the next fresh join')
  t.not(doc.encodeFullState(), full, 'in place of the full state: both did not fit')
})
