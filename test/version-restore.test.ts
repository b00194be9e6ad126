import t from 'tap'
import * as Y from 'yjs'
import { StateChunks } from '../src/documents/state-chunks.js'
import { restorePiecesUpdate, restoreStateUpdate } from '../src/versions/restore.js'

/** Every top-level type of a client's document, read with the types the client declared. */
function view (doc: Y.Doc): Record<string, unknown> {
  return {
    text: doc.getText('text').toDelta(),
    map: doc.getMap('map').toJSON(),
    list: doc.getArray('list').toJSON(),
    prose: doc.getXmlFragment('prose').toString(),
    later: doc.getArray('later').toJSON()
  }
}

function build (): Y.Doc {
  const doc = new Y.Doc()
  doc.getText('text').insert(0, 'Hello bold world', {})
  doc.getText('text').format(6, 4, { bold: true })
  doc.getMap('map').set('title', 'Plan')
  doc.getMap('map').set('count', 3)
  const nested = new Y.Map<unknown>()
  nested.set('inner', 'kept')
  doc.getMap('map').set('nested', nested)
  const item = new Y.Map<unknown>()
  item.set('done', false)
  doc.getArray('list').push(['a', item, 'c'])
  const paragraph = new Y.XmlElement('paragraph')
  paragraph.insert(0, [new Y.XmlText('first paragraph')])
  doc.getXmlFragment('prose').insert(0, [paragraph])
  return doc
}

t.test('a restore gives every type the version\'s content, as one change on top of the current document', async t => {
  const client = build()
  const version = Y.encodeStateAsUpdate(client)
  const expected = view(client)
  // Someone else rewrites everything afterwards, and adds a type the version lacks.
  client.getText('text').delete(0, 5)
  client.getText('text').insert(0, 'Bye', { italic: true })
  client.getMap('map').set('title', 'Other')
  client.getMap('map').delete('count')
  client.getMap('map').set('extra', 1);
  (client.getMap('map').get('nested') as Y.Map<unknown>).set('inner', 'changed')
  client.getArray('list').delete(0, 1)
  client.getArray('list').push(['d']);
  (client.getXmlFragment('prose').get(0) as Y.XmlElement).insert(0, [new Y.XmlText('intro ')])
  client.getArray('later').push(['added after the version'])

  // The server's copy has no declared types, as on a real node.
  const server = new Y.Doc()
  Y.applyUpdate(server, Y.encodeStateAsUpdate(client))
  const update = restoreStateUpdate(Y.encodeStateAsUpdate(server), version)
  Y.applyUpdate(client, update)
  t.same(view(client), { ...expected, later: [] }, 'every type as in the version; a type the version lacks is emptied')
  const other = new Y.Doc()
  Y.applyUpdate(other, Y.encodeStateAsUpdate(server))
  Y.applyUpdate(other, update)
  t.same(view(other), view(client), 'any replica that applies it gets the same')

  // An edit made concurrently with the restore stays.
  const concurrent = build()
  const concurrentVersion = Y.encodeStateAsUpdate(concurrent)
  concurrent.getMap('map').set('title', 'Changed')
  const base = new Y.Doc()
  Y.applyUpdate(base, Y.encodeStateAsUpdate(concurrent))
  const restore = restoreStateUpdate(Y.encodeStateAsUpdate(base), concurrentVersion)
  concurrent.getMap('map').set('note', 'written while the restore travelled')
  Y.applyUpdate(concurrent, restore)
  t.equal(concurrent.getMap('map').get('title'), 'Plan', 'restored')
  t.equal(concurrent.getMap('map').get('note'), 'written while the restore travelled', 'a concurrent edit is kept')

  const unchanged = new Y.Doc()
  Y.applyUpdate(unchanged, version)
  const noop = restoreStateUpdate(Y.encodeStateAsUpdate(unchanged), Y.encodeStateAsUpdate(unchanged))
  Y.applyUpdate(unchanged, noop)
  t.same(view(unchanged), expected, 'restoring the current content keeps it')
})

t.test('a restore copies shared types embedded in text (a Y.XmlText holding elements, a Y.Text embedding a Y.Map)', async t => {
  const client = new Y.Doc()
  const slate = client.get('content', Y.XmlText) as Y.XmlText
  const paragraph = new Y.XmlText()
  paragraph.insert(0, 'hello para')
  slate.insertEmbed(0, paragraph)
  const rich = client.getText('rich')
  rich.insert(0, 'before ')
  const card = new Y.Map<unknown>()
  card.set('kind', 'card')
  rich.insertEmbed(rich.length, card)
  const version = Y.encodeStateAsUpdate(client)
  const expected = { content: slate.toDelta().map((op: { insert: unknown }) => op.insert instanceof Y.AbstractType ? op.insert.toString() : op.insert), rich: rich.toDelta().map((op: { insert: unknown }) => op.insert instanceof Y.AbstractType ? op.insert.toJSON() : op.insert) }
  slate.delete(0, slate.length)
  rich.delete(0, rich.length)
  rich.insert(0, 'gone')
  const server = new Y.Doc()
  Y.applyUpdate(server, Y.encodeStateAsUpdate(client))
  Y.applyUpdate(client, restoreStateUpdate(Y.encodeStateAsUpdate(server), version))
  const after = { content: slate.toDelta().map((op: { insert: unknown }) => op.insert instanceof Y.AbstractType ? op.insert.toString() : op.insert), rich: rich.toDelta().map((op: { insert: unknown }) => op.insert instanceof Y.AbstractType ? op.insert.toJSON() : op.insert) }
  t.same(after, expected, 'embedded types restored with their content')
})

t.test('a restore from the current state in pieces (a snapshot encoded over several turns) is the restore from the state whole', async t => {
  const writer = build()
  writer.getText('text').insert(0, 'pasted paragraph. '.repeat(5_000))
  for (let i = 0; i < 2_000; i++) writer.getArray('list').push([`item ${i}`])
  const version = Y.encodeStateAsUpdate(writer)
  const expected = view(writer)
  writer.getText('text').delete(0, 40_000)
  writer.getArray('list').delete(0, 1_500)
  writer.getMap('map').set('title', 'Rewritten')
  const current = Y.encodeStateAsUpdate(writer)

  const snapshot = StateChunks.forSnapshot(writer, { chunkBytes: 4 * 1024, maxPieceBytes: 16 * 1024 })
  const pieces: Uint8Array[] = []
  for (let piece = snapshot.next(); piece !== null; piece = snapshot.next()) pieces.push(piece)
  t.ok(pieces.length > 10, `in pieces (${pieces.length})`)
  const restored = restorePiecesUpdate(pieces, version)
  const fromPieces = new Y.Doc()
  Y.applyUpdate(fromPieces, current)
  Y.applyUpdate(fromPieces, restored.update)
  t.same(view(fromPieces), { ...expected, later: [] }, 'the version\'s content')
  const whole = new Y.Doc()
  Y.applyUpdate(whole, current)
  Y.applyUpdate(whole, restoreStateUpdate(current, version))
  t.same(view(fromPieces), view(whole), 'as from the state whole')
  const before = new Y.Doc()
  Y.applyUpdate(before, restored.current)
  t.same(view(before), view(writer), 'the current state comes back as one')
  t.same(Array.from(Y.encodeStateVector(before)), Array.from(Y.encodeStateVector(writer)))
})
