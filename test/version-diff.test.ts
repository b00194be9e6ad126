import t from 'tap'
import * as Y from 'yjs'
import { diffStates } from '../src/versions/version-diff.js'

t.test('the diff of two states names what was inserted and deleted, per type', async t => {
  const doc = new Y.Doc()
  const text = doc.getText('text')
  text.insert(0, 'Hello brave world')
  const map = doc.getMap<unknown>('map')
  map.set('title', 'Plan')
  map.set('gone', 1)
  map.set('same', 'kept')
  const list = doc.getArray<string>('list')
  list.push(['a', 'b', 'c', 'd'])
  const prose = doc.getXmlFragment('prose')
  const first = new Y.XmlElement('paragraph')
  first.insert(0, [new Y.XmlText('first')])
  const second = new Y.XmlElement('paragraph')
  second.insert(0, [new Y.XmlText('second')])
  prose.insert(0, [first, second])
  const before = Y.encodeStateAsUpdate(doc)

  text.delete(6, 6) // "brave "
  text.insert(text.length, '!')
  text.insert(0, '>> ')
  map.set('title', 'Final')
  map.delete('gone')
  map.set('added', { nested: true })
  list.delete(1, 2)
  list.insert(1, ['x'])
  prose.delete(1, 1);
  (first.get(0) as Y.XmlText).insert(5, ' edited')
  const third = new Y.XmlElement('heading')
  third.insert(0, [new Y.XmlText('new')])
  prose.insert(1, [third])
  const after = Y.encodeStateAsUpdate(doc)

  const diff = diffStates(before, after)
  t.same(diff.text, { kind: 'text', changes: [{ op: 'insert', index: 0, text: '>> ' }, { op: 'delete', index: 6, text: 'brave ' }, { op: 'insert', index: 14, text: '!' }] })
  t.same(diff.map, { kind: 'map', added: { added: { nested: true } }, removed: { gone: 1 }, changed: { title: { from: 'Plan', to: 'Final' } } })
  t.same(diff.list, { kind: 'array', changes: [{ op: 'insert', index: 1, values: ['x'] }, { op: 'delete', index: 1, values: ['b', 'c'] }] })
  t.same(diff.prose, {
    kind: 'xml',
    changes: [
      { op: 'insert', index: 5, text: ' edited', path: [0, 0] },
      { op: 'insert', index: 1, values: ['<heading>new</heading>'], path: [] },
      { op: 'delete', index: 1, values: ['<paragraph>second</paragraph>'], path: [] }
    ]
  })
  const backwards = diffStates(after, before)
  t.same((backwards.text as { changes: unknown[] }).changes, [{ op: 'delete', index: 0, text: '>> ' }, { op: 'insert', index: 6, text: 'brave ' }, { op: 'delete', index: 14, text: '!' }], 'from a newer state to an older one: the reverse')
  t.same(diffStates(after, after).text, { kind: 'text', changes: [] }, 'no change, no entries')
})
