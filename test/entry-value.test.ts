import t from 'tap'
import * as Y from 'yjs'
import { decodeEntryValue, encodeEntryValue, EntryBuilder } from '../src/persistence/entry-value.js'

function edit (label: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getArray('items').push([label])
  return Y.encodeStateAsUpdate(doc)
}

const HEADER = [0x80, 0x80, 0x80, 0x80, 0x00, 0x01]

t.test('updates are stored side by side behind the header and read back in order', async t => {
  for (const updates of [[edit('a')], [edit('a'), edit('b'), edit('c')]]) {
    const value = encodeEntryValue(updates)
    t.same([...value.subarray(0, HEADER.length)], HEADER)
    t.same(decodeEntryValue(value).map(u => [...u]), updates.map(u => [...u]))
  }
  const doc = new Y.Doc()
  Y.transact(doc, () => { for (const u of decodeEntryValue(encodeEntryValue([edit('a'), edit('b')]))) Y.applyUpdate(doc, u) })
  t.same((doc.getArray('items').toJSON() as string[]).sort(), ['a', 'b'])
})

t.test('the builder copies each update: the caller may reuse its buffer at once', async t => {
  const builder = new EntryBuilder()
  const scratch = new Uint8Array(300)
  const expected: number[][] = []
  // 40 appends of up to 300 bytes grow the buffer several times from its first 256 bytes.
  for (let i = 0; i < 40; i++) {
    const update = scratch.subarray(0, (i * 37) % 300)
    update.fill(i)
    builder.append(update)
    expected.push([...update])
    scratch.fill(0xff)
  }
  const value = builder.finish()
  t.equal(decodeEntryValue(value).length, 40)
  t.equal(builder.byteLength, value.length)
  t.same(decodeEntryValue(value).map(u => [...u]), expected)
})

t.test('lengths of every varUint width round-trip', async t => {
  // 127/128 and 16383/16384 cross a varUint byte boundary.
  const updates = [1, 127, 128, 16_383, 16_384, 70_000].map(n => new Uint8Array(n).fill(7))
  t.same(decodeEntryValue(encodeEntryValue(updates)).map(u => u.length), updates.map(u => u.length))
})

t.test('a client update that starts with the header is still stored and read as itself', async t => {
  // Yjs reads both as "no structs (a non-canonical 0), then a delete set": valid updates. The
  // second would parse as a list holding one 3-byte update if it were stored bare.
  const crafted = [Uint8Array.of(...HEADER, 0x00, 0x00), Uint8Array.of(...HEADER, 0x03, 0x01, 0x00, 0x01)]
  for (const update of crafted) {
    Y.applyUpdate(new Y.Doc(), update)
    t.same(decodeEntryValue(encodeEntryValue([update])).map(u => [...u]), [[...update]])
  }
})

t.test('a bare value from before this format reads as one update', async t => {
  const bare = edit('old')
  t.same(decodeEntryValue(bare), [bare])
  for (const legacy of [
    Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x00, 0x00), // resembles the header, other version
    Uint8Array.of(...HEADER),                          // the header alone
    Uint8Array.of(...HEADER, 0x05, 0x01, 0x00)         // a length running past the end
  ]) {
    t.same(decodeEntryValue(legacy), [legacy])
  }
})

t.test('an entry without updates is a programming error', async t => {
  t.throws(() => encodeEntryValue([]))
})
