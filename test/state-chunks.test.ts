import t from 'tap'
import * as Y from 'yjs'
import { StateChunks } from '../src/documents/state-chunks.js'

// A document in chunks must arrive whole, and each chunk must integrate as it arrives: a chunk that
// Yjs keeps pending (its dependencies still missing) means the order was wrong.

/** Chunks of `bytes`, long structs cut at the same size (the tests want many pieces). */
const size = (bytes: number): { chunkBytes: number, maxPieceBytes: number } => ({ chunkBytes: bytes, maxPieceBytes: bytes })

/** A deterministic pseudo-random source, so a failure reproduces. */
function random (seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648
  }
}

/** Three replicas editing text, an array, a map and XML, syncing now and then: interleaved origins. */
function busyDocument (seed: number, rounds: number): Y.Doc {
  const rand = random(seed)
  const docs = [new Y.Doc(), new Y.Doc(), new Y.Doc()]
  const words = ['a', 'hello ', '😀', 'x'.repeat(300), '\n', 'ünïcödé ']
  for (let round = 0; round < rounds; round++) {
    const doc = docs[Math.floor(rand() * docs.length)] as Y.Doc
    const text = doc.getText('text')
    const pick = rand()
    if (pick < 0.45) {
      text.insert(Math.floor(rand() * (text.length + 1)), words[Math.floor(rand() * words.length)] as string)
    } else if (pick < 0.6 && text.length > 2) {
      const at = Math.floor(rand() * (text.length - 1))
      text.delete(at, Math.min(text.length - at, 1 + Math.floor(rand() * 40)))
    } else if (pick < 0.7) {
      doc.getArray('list').insert(0, [round, { round }, 'value', new Uint8Array([1, 2, 3])])
    } else if (pick < 0.78) {
      doc.getMap('map').set(`key${round % 7}`, round)
    } else if (pick < 0.86) {
      const element = new Y.XmlElement('p')
      element.insert(0, [new Y.XmlText(`paragraph ${round}`)])
      doc.getXmlFragment('xml').insert(0, [element])
    } else if (pick < 0.9) {
      const nested = new Y.Map<unknown>()
      doc.getMap('map').set('nested', nested)
      nested.set('inner', 'value')
    } else {
      // Sync two replicas both ways.
      const a = docs[Math.floor(rand() * docs.length)] as Y.Doc
      const b = docs[Math.floor(rand() * docs.length)] as Y.Doc
      Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
      Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
    }
  }
  const merged = new Y.Doc()
  for (const doc of docs) Y.applyUpdate(merged, Y.encodeStateAsUpdate(doc))
  return merged
}

function snapshotOf (doc: Y.Doc): unknown {
  return {
    text: doc.getText('text').toString(),
    list: doc.getArray('list').toJSON(),
    map: doc.getMap('map').toJSON(),
    xml: doc.getXmlFragment('xml').toString(),
    stateVector: Array.from(Y.encodeStateVector(doc)),
    deleted: Y.encodeStateAsUpdate(doc, Y.encodeStateVector(doc)).length
  }
}

/** Applies every chunk in order; returns how many there were and whether any stayed pending. */
function receiveAll (chunks: StateChunks, into: Y.Doc): { count: number, pendingAfter: number, largest: number } {
  let count = 0
  let pendingAfter = 0
  let largest = 0
  for (let chunk = chunks.next(); chunk !== null; chunk = chunks.next()) {
    Y.applyUpdate(into, chunk)
    count++
    largest = Math.max(largest, chunk.length)
    if (into.store.pendingStructs !== null) pendingAfter++
  }
  t.ok(chunks.done, 'done once next() returns null')
  return { count, pendingAfter, largest }
}

t.test('a busy document arrives whole, every chunk integrating as it arrives', async t => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const source = busyDocument(seed, 600)
    for (const maxBytes of [16, 200, 4096]) {
      const target = new Y.Doc()
      const { count, pendingAfter } = receiveAll(StateChunks.forStateVector(source, Y.encodeStateVector(target), size(maxBytes)), target)
      t.same(snapshotOf(target), snapshotOf(source), `seed ${seed}, ${maxBytes} bytes: same content (${count} chunks)`)
      t.equal(pendingAfter, 0, `seed ${seed}, ${maxBytes} bytes: no chunk was left pending`)
      t.equal(target.store.pendingDs, null, 'no deletion left pending')
    }
  }
})

t.test('a client that has part of the document gets the rest', async t => {
  const source = busyDocument(7, 300)
  // An older copy: a causal prefix of the document (the first chunks of it).
  const partial = new Y.Doc()
  const all = StateChunks.forStateVector(source, Y.encodeStateVector(partial), size(64))
  for (let i = 0; i < 40; i++) Y.applyUpdate(partial, all.next() as Uint8Array)
  t.ok(partial.getText('text').length > 0 || partial.getArray('list').length > 0, 'the prefix holds something')
  const { count, pendingAfter } = receiveAll(StateChunks.forStateVector(source, Y.encodeStateVector(partial), size(64)), partial)
  t.ok(count > 1, `${count} chunks`)
  t.equal(pendingAfter, 0)
  t.same(snapshotOf(partial), snapshotOf(source), 'same as the source')
})

t.test('one long string goes in few pieces of at most maxPieceBytes, never cut inside a surrogate pair', async t => {
  const source = new Y.Doc()
  const long = '😀ab'.repeat(50_000)
  source.getText('text').insert(0, long)
  const target = new Y.Doc()
  const { count, largest } = receiveAll(StateChunks.forStateVector(source, Y.encodeStateVector(target), { chunkBytes: 10_000, maxPieceBytes: 40_000 }), target)
  // An eighth of it per piece: the receiver merges the pieces back, copying the string at each.
  t.ok(count >= 8 && count <= 12, `${count} chunks`)
  t.ok(largest <= 40_100, `largest chunk ${largest} bytes`)
  t.equal(target.getText('text').toString(), long, 'no character replaced')
  const whole = receiveAll(StateChunks.forStateVector(source, Y.encodeStateVector(new Y.Doc()), { chunkBytes: 10_000, maxPieceBytes: 1 << 20 }), new Y.Doc())
  t.equal(whole.count, 2, 'a struct below maxPieceBytes goes whole (then the deletions)')
})

t.test('a transaction in chunks: what it added and what it deleted', async t => {
  const source = new Y.Doc()
  const replica = new Y.Doc()
  source.getText('text').insert(0, 'keep this, delete this')
  Y.applyUpdate(replica, Y.encodeStateAsUpdate(source))
  let transaction: Y.Transaction | null = null
  source.on('afterTransaction', (tr: Y.Transaction) => { transaction = tr })
  source.transact(() => {
    source.getText('text').delete(10, 12)
    source.getText('text').insert(0, 'y'.repeat(5000))
    source.getArray('list').insert(0, ['one', 'two'])
  })
  const chunks = StateChunks.forTransaction(source, transaction as unknown as Y.Transaction, size(500))
  const { count, pendingAfter } = receiveAll(chunks, replica)
  t.ok(count > 5, `${count} chunks`)
  t.equal(pendingAfter, 0)
  t.same(snapshotOf(replica), snapshotOf(source))
})

t.test('edits between chunks: the receiver converges once it has the live updates too', async t => {
  for (const seed of [11, 12, 13]) {
    const source = busyDocument(seed, 300)
    const rand = random(seed)
    const target = new Y.Doc()
    const live: Uint8Array[] = []
    source.on('update', (update: Uint8Array) => { live.push(update) })
    const chunks = StateChunks.forStateVector(source, Y.encodeStateVector(target), size(100))
    for (let chunk = chunks.next(); chunk !== null; chunk = chunks.next()) {
      Y.applyUpdate(target, chunk)
      // Someone edits the source while the chunks go out; the update reaches the target too.
      const text = source.getText('text')
      if (rand() < 0.5 && text.length > 10) text.delete(Math.floor(rand() * (text.length - 5)), 3)
      else text.insert(Math.floor(rand() * (text.length + 1)), 'edit')
      Y.applyUpdate(target, live.shift() as Uint8Array)
    }
    t.same(snapshotOf(target), snapshotOf(source), `seed ${seed}: converged`)
  }
})

t.test('an empty difference is still one (empty) update', async t => {
  const source = busyDocument(3, 50)
  const chunks = StateChunks.forStateVector(new Y.Doc(), Y.encodeStateVector(source), size(100))
  const first = chunks.next()
  t.ok(first !== null)
  t.equal(chunks.next(), null)
  t.ok(chunks.done)
})

t.test('a snapshot in chunks is the document as it is when the last chunk is made, whatever changed between chunks', async t => {
  for (const seed of [11, 12, 13]) {
    const source = busyDocument(seed, 400)
    const snapshot = StateChunks.forSnapshot(source, size(200))
    const pieces: Uint8Array[] = []
    const editor = new Y.Doc()
    Y.applyUpdate(editor, Y.encodeStateAsUpdate(source))
    editor.on('update', (update: Uint8Array) => { Y.applyUpdate(source, update) })
    let round = 0
    // The document right after each piece was made, before the edits that follow it.
    const states: unknown[] = []
    for (let piece = snapshot.next(); piece !== null; piece = snapshot.next()) {
      pieces.push(piece)
      states.push(snapshotOf(source))
      if (snapshot.done) break
      // Between pieces, as people edit: replacing a selection and a map key in one transaction
      // (deletions and inserts together), typing, deleting older text.
      editor.transact(() => {
        const text = editor.getText('text')
        if (text.length > 30) text.delete(10, 15)
        text.insert(10, `replaced ${round} `)
        editor.getMap('map').set('title', `title ${round}`)
      })
      if (round % 3 === 0) editor.getText('text').insert(0, 'typed ')
      round++
    }
    const copy = new Y.Doc()
    for (const piece of pieces) Y.applyUpdate(copy, piece)
    t.ok(round > 2, `seed ${seed}: edited ${round} times while it was made`)
    t.equal(copy.store.pendingStructs, null, `seed ${seed}: nothing pending`)
    t.equal(copy.store.pendingDs, null, `seed ${seed}: no deletion pending`)
    // The last update is made in the same turn as the last chunk of structs.
    t.same(snapshotOf(copy), states[pieces.length - 2], `seed ${seed}: the document as it was when the last chunk of structs was made`)
  }
})
