import t from 'tap'
import * as encoding from 'lib0/encoding'
import { awarenessEntry, encodeAwarenessEntries, encodeAwarenessFrame, isJsonNull, readAwarenessEntries, type AwarenessEntry } from '../src/protocol/awareness-entries.js'
import { encodeAwareness } from '../src/protocol/messages.js'

const limits = { maxStateBytes: 4096, maxStateDepth: 8 }

/** What lib0's encoder (and so y-protocols) writes for the same entries. */
function lib0Update (entries: AwarenessEntry[]): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(encoder, entry.clientId)
    encoding.writeVarUint(encoder, entry.clock)
    encoding.writeVarString(encoder, entry.json)
  }
  return encoding.toUint8Array(encoder)
}

function entry (clientId: number, clock: number, json: string): AwarenessEntry {
  return awarenessEntry(clientId, clock, json)
}

t.test('entries are encoded byte for byte as lib0 encodes them, framed or not', async t => {
  const cases: AwarenessEntry[][] = [
    [],
    [entry(0, 0, 'null')],
    [entry(127, 128, '{}'), entry(16_384, 2 ** 32 + 5, '{"name":"Zoë 🚀","x":[1,2]}')],
    [entry(2 ** 53 - 1, 2 ** 40, JSON.stringify({ blob: 'ü'.repeat(200) }))],
    Array.from({ length: 300 }, (_, i) => entry(i * 1000, i, JSON.stringify({ i })))
  ]
  for (const entries of cases) {
    const expected = lib0Update(entries)
    t.same(encodeAwarenessEntries(entries), expected, `${entries.length} entries`)
    t.same(encodeAwarenessFrame(entries), encodeAwareness(expected), `${entries.length} entries, framed`)
    t.notOk(Buffer.isBuffer(encodeAwarenessEntries(entries)), 'a plain Uint8Array')
  }
})

t.test('JSON null is recognised as JSON.parse would read it', async t => {
  for (const text of ['null', ' null', 'null\n', '\t\r\n null \n', '"null"', 'nul', 'nulll', 'Null', '{}', '', ' ', 'null null']) {
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { parsed = 'not JSON' }
    t.equal(isJsonNull(new TextEncoder().encode(text)), parsed === null, JSON.stringify(text))
  }
})

t.test('a state led by a byte-order mark is refused, as every client would fail to parse it', async t => {
  const bom = new Uint8Array([0xef, 0xbb, 0xbf])
  const withBom = (text: string): Uint8Array => {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint8Array(encoder, new Uint8Array([...bom, ...new TextEncoder().encode(text)]))
    return encoding.toUint8Array(encoder)
  }
  t.throws(() => readAwarenessEntries(withBom('{"a":1}'), limits), /invalid awareness update/)
  t.throws(() => readAwarenessEntries(withBom('null'), limits), /invalid awareness update/)
  t.notOk(isJsonNull(new Uint8Array([...bom, 0x6e, 0x75, 0x6c, 0x6c])), 'nor is it null')
})

t.test('entries named stale are left out unread; the others are read whole and checked', async t => {
  const update = lib0Update([entry(1, 5, '{"a":1}'), entry(2, 3, '{"b":2}'), entry(3, 1, 'null')])
  const asked: Array<[number, number, boolean]> = []
  const entries = readAwarenessEntries(update, limits, (clientId, clock, removal) => {
    asked.push([clientId, clock, removal])
    return clientId === 2
  })
  t.same(asked, [[1, 5, false], [2, 3, false], [3, 1, true]], 'asked of every entry, with whether it removes')
  t.same(entries.map(e => e.clientId), [1, 3])

  // A malformed state in an entry that would change nothing is dropped unparsed; one that would
  // apply still fails the whole update.
  const malformed = (clock: number): Uint8Array => {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint(encoder, 9)
    encoding.writeVarUint(encoder, clock)
    encoding.writeVarString(encoder, '{"not json')
    return encoding.toUint8Array(encoder)
  }
  const staleBelow = (known: number) => (_id: number, clock: number) => clock <= known
  t.same(readAwarenessEntries(malformed(3), limits, staleBelow(3)), [], 'stale: dropped')
  t.throws(() => readAwarenessEntries(malformed(4), limits, staleBelow(3)), /invalid awareness update/, 'fresh: refused')
  t.throws(() => readAwarenessEntries(lib0Update([entry(1, 9, JSON.stringify({ x: 'y'.repeat(5000) }))]), limits, () => true), /at most 4096/, 'sizes are checked for every entry')
})
