import t from 'tap'
import * as Y from 'yjs'
import { decodeEntryValue, encodeEntryValue } from '../src/persistence/entry-value.js'

function edit (label: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getArray('items').push([label])
  return Y.encodeStateAsUpdate(doc)
}

const HEADER = [0x80, 0x80, 0x80, 0x80, 0x00, 0x01]

t.test('one update is stored bare, byte for byte, and reads back as itself', async t => {
  const update = edit('a')
  const value = encodeEntryValue([update])
  t.equal(value, update, 'no copy, no header')
  t.same(decodeEntryValue(value), [update])
})

t.test('several updates are stored side by side and read back in order', async t => {
  const updates = [edit('a'), edit('b'), edit('c')]
  const value = encodeEntryValue(updates)
  t.same([...value.subarray(0, HEADER.length)], HEADER)
  t.same(decodeEntryValue(value).map(u => [...u]), updates.map(u => [...u]))
  const doc = new Y.Doc()
  Y.transact(doc, () => { for (const u of decodeEntryValue(value)) Y.applyUpdate(doc, u) })
  t.same((doc.getArray('items').toJSON() as string[]).sort(), ['a', 'b', 'c'])
})

t.test('a client update that starts with the header is framed, so it cannot be misread', async t => {
  // Yjs reads both as "no structs (a non-canonical 0), then a delete set": valid updates. The
  // second would also parse as a list holding one 3-byte update if it were stored bare.
  const crafted = [Uint8Array.of(...HEADER, 0x00, 0x00), Uint8Array.of(...HEADER, 0x03, 0x01, 0x00, 0x01)]
  for (const update of crafted) {
    Y.applyUpdate(new Y.Doc(), update)
    const value = encodeEntryValue([update])
    t.not(value, update, 'stored behind a header')
    t.same(decodeEntryValue(value).map(u => [...u]), [[...update]])
  }
})

t.test('an update that only resembles the header is stored bare', async t => {
  const update = Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x00, 0x00)
  Y.applyUpdate(new Y.Doc(), update)
  t.equal(encodeEntryValue([update]), update)
  t.same(decodeEntryValue(update), [update])
})

t.test('a bare value from before this format reads as one update even if it starts like a header', async t => {
  for (const legacy of [
    Uint8Array.of(...HEADER),                          // count missing
    Uint8Array.of(...HEADER, 0x00),                    // count 0
    Uint8Array.of(...HEADER, 0x05, 0x01, 0x00),        // count beyond the data
    Uint8Array.of(...HEADER, 0x01, 0x01, 0x00, 0x07)   // trailing bytes
  ]) {
    t.same(decodeEntryValue(legacy), [legacy])
  }
  const bare = edit('old')
  t.same(decodeEntryValue(bare), [bare])
})

t.test('an entry without updates is a programming error', async t => {
  t.throws(() => encodeEntryValue([]))
})

t.test('lengths of every varUint width round-trip', async t => {
  // 127/128 and 16383/16384 cross a varUint byte boundary; 300 updates cross it for the count.
  const updates = [0, 1, 127, 128, 16_383, 16_384, 70_000].map(n => new Uint8Array(n).fill(7))
  const many = Array.from({ length: 300 }, (_, i) => Uint8Array.of(i & 0xff))
  for (const list of [updates, many]) {
    t.same(decodeEntryValue(encodeEntryValue(list)).map(u => u.length), list.map(u => u.length))
  }
})
