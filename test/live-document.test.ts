import t from 'tap'
import * as Y from 'yjs'
import { LiveDocument } from '../src/documents/live-document.js'
import { drainChunks } from './helpers/chunks.js'

function edit (label: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getArray('items').push([label])
  return Y.encodeStateAsUpdate(doc)
}

t.test('document events reach their listeners with the arguments Yjs gives', async t => {
  const doc = new LiveDocument('events')
  t.teardown(() => doc.destroy())
  t.equal(doc.ydoc.guid, 'events', 'the document\'s id is its guid')
  const seen: string[] = []
  doc.ydoc.on('update', (update: Uint8Array, origin: unknown) => seen.push(`update ${String(origin)} ${update.length > 0}`))
  doc.ydoc.on('afterTransaction', (tr: Y.Transaction) => seen.push(`after ${String(tr.origin)}`))
  doc.apply(edit('a'), 'client-1')
  t.same(seen, ['after client-1', 'update client-1 true'])
})

t.test('documents without listeners share nothing that one listener could leak into', async t => {
  const [a, b, c] = ['quiet-a', 'quiet-b', 'quiet-c'].map(id => new LiveDocument(id))
  t.teardown(() => { a!.destroy(); b!.destroy(); c!.destroy() })
  t.equal(a!.ydoc._observers, b!.ydoc._observers, 'one empty map for documents nobody listens to')
  const heardOnA: string[] = []
  a!.ydoc.on('afterTransaction', (tr: Y.Transaction) => heardOnA.push(String(tr.origin)))
  a!.ydoc.once('update', () => heardOnA.push('update once'))
  t.not(a!.ydoc._observers, b!.ydoc._observers, 'the first listener gives its document a map of its own')
  b!.apply(edit('b'), 'on-b')
  a!.apply(edit('a'), 'on-a')
  a!.apply(edit('a2'), 'on-a-again')
  t.same(heardOnA, ['on-a', 'update once', 'on-a-again'], 'a listener hears its own document only; once is once')
  t.equal(b!.ydoc._observers.size, 0)
  t.equal(c!.ydoc._observers.size, 0, 'documents without listeners still share an empty map')
  t.throws(() => c!.ydoc._observers.set('update', new Set()), /shared empty listener map/, 'a write that bypasses on() fails loudly')
})

t.test('subdocuments: each document makes its own set on first use', async t => {
  const [a, b] = [new LiveDocument('subdocs-a'), new LiveDocument('subdocs-b')]
  t.teardown(() => { a.destroy(); b.destroy() })
  const source = new Y.Doc()
  source.getMap('m').set('child', new Y.Doc({ guid: 'child' }))
  a.apply(Y.encodeStateAsUpdate(source), 'client')
  t.same([...a.ydoc.getSubdocGuids()], ['child'], 'the subdocument is known to its document')
  t.equal(b.ydoc.getSubdocs().size, 0, 'and to no other')
  t.not(a.ydoc.subdocs, b.ydoc.subdocs)
  t.equal(Buffer.from(a.topic).toString(), 'doc/subdocs-a', 'the topic is the id in UTF-8')
})

t.test('a listener added while an event is emitted waits for the next one; one removed still runs', async t => {
  const doc = new LiveDocument('listeners')
  t.teardown(() => doc.destroy())
  const calls: string[] = []
  const late = (): void => { calls.push('late') }
  const once = (): void => {
    calls.push('once')
    doc.ydoc.off('afterTransaction', once)
    doc.ydoc.on('afterTransaction', late)
  }
  const other = (): void => { calls.push('other') }
  doc.ydoc.on('afterTransaction', once)
  doc.ydoc.on('afterTransaction', other)
  doc.apply(edit('a'), null)
  t.same(calls, ['once', 'other'])
  doc.apply(edit('b'), null)
  t.same(calls, ['once', 'other', 'other', 'late'])
})

t.test('the cached full state follows every change, and destroy is announced', async t => {
  const doc = new LiveDocument('cache')
  const empty = Uint8Array.of(0)
  doc.apply(edit('a'), null)
  const first = doc.encodeStateAsUpdate(empty)
  t.equal(doc.encodeStateAsUpdate(empty), first, 'served from cache while unchanged')
  doc.apply(edit('b'), null)
  const replica = new Y.Doc()
  Y.applyUpdate(replica, doc.encodeStateAsUpdate(empty))
  t.same((replica.getArray('items').toJSON() as string[]).sort(), ['a', 'b'])
  let destroyed = false
  doc.ydoc.on('destroy', () => { destroyed = true })
  doc.destroy()
  t.ok(destroyed, 'the Y.Doc destroy event reached its listener')
})

/** An update appending `text` to the Y.Text `t`, from one client that keeps typing. */
const typist = new Y.Doc()
function updateWithText (text: string): Uint8Array {
  const before = Y.encodeStateVector(typist)
  typist.getText('t').insert(typist.getText('t').length, text)
  return Y.encodeStateAsUpdate(typist, before)
}

t.test('a large document answers fresh clients in chunks, encoded once until it changes', async t => {
  const doc = new LiveDocument('large')
  t.teardown(() => doc.destroy())
  doc.apply(updateWithText('x'.repeat(10_000)), 'client')
  t.equal(doc.stateChunks(new Uint8Array([0]), { chunkBytes: 1 << 20, maxPieceBytes: 1 << 20 }), null, 'below one chunk: answered in one message')
  const first = drainChunks(doc.stateChunks(new Uint8Array([0]), { chunkBytes: 1000, maxPieceBytes: 1000 }))
  t.ok(first.length >= 10, `${first.length} chunks`)
  const second = drainChunks(doc.stateChunks(new Uint8Array([0]), { chunkBytes: 1000, maxPieceBytes: 1000 }))
  t.ok(second.every((chunk, i) => chunk === first[i]), 'the same chunks, not encoded again')
  doc.apply(updateWithText('y'), 'client')
  const third = drainChunks(doc.stateChunks(new Uint8Array([0]), { chunkBytes: 1000, maxPieceBytes: 1000 }))
  t.not(third[0], first[0], 'encoded again after a change')
  const replica = new Y.Doc()
  for (const chunk of third) Y.applyUpdate(replica, chunk)
  t.equal(replica.getText('t').length, 10_001)
})

t.test('a document that loaded empty answers joins without a Y.Doc until something is applied', async t => {
  const doc = new LiveDocument('empty-until-written')
  t.teardown(() => doc.destroy())
  doc.applyStored([])
  const client = new Y.Doc()
  t.same([...doc.encodeStateVector()], [...Y.encodeStateVector(new Y.Doc())], 'its state vector: an empty one')
  t.same([...doc.encodeStateAsUpdate(Y.encodeStateVector(client))], [...Y.encodeStateAsUpdate(new Y.Doc())], 'a fresh client gets the empty update')
  client.getArray('items').push(['offline edit'])
  t.same([...doc.encodeStateAsUpdate(Y.encodeStateVector(client))], [...Y.encodeStateAsUpdate(new Y.Doc())], 'a client holding more gets the empty update too')
  t.throws(() => doc.encodeStateAsUpdate(Uint8Array.of(5, 1)), 'a state vector that does not decode is still refused')
  t.same([...doc.encodeFullState()!], [0, 0])
  t.same([...doc.copyFullState()!], [0, 0])
  t.equal(doc.hasPending, false)
  t.equal(doc.hasYDoc, false, 'no Y.Doc was made')

  doc.apply(Y.encodeStateAsUpdate(client), 'client')
  t.equal(doc.hasYDoc, true, 'the first update makes it')
  const replica = new Y.Doc()
  Y.applyUpdate(replica, doc.encodeStateAsUpdate(Y.encodeStateVector(replica)))
  t.same(replica.getArray('items').toArray(), ['offline edit'], 'and it answers with what it holds from then on')
  t.same([...doc.encodeStateVector()], [...Y.encodeStateVector(client)])
})

t.test('a document loaded with content makes its Y.Doc at load', async t => {
  const doc = new LiveDocument('loaded-with-content')
  t.teardown(() => doc.destroy())
  doc.applyStored([edit('stored')])
  t.equal(doc.hasYDoc, true)
  const replica = new Y.Doc()
  Y.applyUpdate(replica, doc.encodeStateAsUpdate(Y.encodeStateVector(replica)))
  t.same(replica.getArray('items').toArray(), ['stored'])
})

t.test('a document whose log holds only empty updates loads without a Y.Doc', async t => {
  const doc = new LiveDocument('only-empty-entries')
  t.teardown(() => doc.destroy())
  doc.applyStored([Y.encodeStateAsUpdate(new Y.Doc()), Y.encodeStateAsUpdate(new Y.Doc())])
  t.equal(doc.hasYDoc, false)
  doc.applyStored([Y.encodeStateAsUpdate(new Y.Doc()), edit('kept')])
  t.same(doc.ydoc.getArray('items').toArray(), ['kept'], 'the others are applied')
})
