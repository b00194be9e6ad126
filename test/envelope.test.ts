import t from 'tap'
import { decodeEnvelope, encodeEnvelope, EnvelopeKind, isSentBy, senderMarker, type Envelope } from '../src/cluster/envelope.js'
import { splitEnvelope } from '../src/cluster/envelope-parts.js'

// A node tells its own envelopes (which Redis echoes back to it) from its peers' by their first
// bytes, without decoding them; the bridge relies on that for every message it receives.

const bytes = new Uint8Array([0, 2, 3, 1, 2, 3])

function everyKind (n: string): Envelope[] {
  return [
    { t: EnvelopeKind.Update, n, d: 'doc', s: 7, f: bytes, w: 1_700_000_000_000.5 },
    { t: EnvelopeKind.Awareness, n, d: 'doc', s: 8, f: bytes, u: 'alice' },
    { t: EnvelopeKind.Heartbeat, n, d: 'doc', s: 9 },
    { t: EnvelopeKind.Heartbeat, n, d: '', s: 0 },
    { t: EnvelopeKind.SyncRequest, n, d: 'doc', v: bytes },
    { t: EnvelopeKind.SyncReply, n, d: 'doc', p: bytes, v: bytes, a: bytes, au: ['alice', null] },
    { t: EnvelopeKind.SyncPush, n, d: 'doc', p: bytes },
    { t: EnvelopeKind.Deleted, n, d: 'doc' },
    { t: EnvelopeKind.Revoked, n, d: 'doc', u: 'mallory' }
  ]
}

t.test('every kind of envelope a node sends is recognised as its own, and only as its own', async t => {
  const ids = ['a', 'ab', 'node-1', 'node-10', 'x'.repeat(31), 'x'.repeat(32), 'n'.repeat(300), 'ünïcode-節点']
  for (const id of ids) {
    const mine = senderMarker(id)
    for (const envelope of everyKind(id)) {
      const encoded = encodeEnvelope(envelope)
      t.ok(isSentBy(encoded, mine), `${id.slice(0, 12)}: its ${envelope.t} envelope is its own`)
      t.equal(decodeEnvelope(encoded)?.n, id, 'and decodes with that sender')
      for (const other of ids.filter(o => o !== id)) {
        if (isSentBy(encoded, senderMarker(other))) t.fail(`${other.slice(0, 12)} takes ${id.slice(0, 12)}'s ${envelope.t} envelope for its own`)
      }
    }
  }
})

t.test('the parts of a large envelope are recognised too', async t => {
  const envelope: Envelope = { t: EnvelopeKind.Update, n: 'node-1', d: 'doc', s: 1, f: new Uint8Array(3 * 1024 * 1024) }
  const parts = splitEnvelope(encodeEnvelope(envelope), envelope, 1) ?? []
  t.ok(parts.length > 1, 'cut in parts')
  for (const part of parts) {
    t.ok(isSentBy(encodeEnvelope(part), senderMarker('node-1')), 'a part is its sender\'s')
    t.notOk(isSentBy(encodeEnvelope(part), senderMarker('node-2')), 'and no one else\'s')
  }
})

t.test('anything that is not an envelope is nobody\'s', async t => {
  const mine = senderMarker('a')
  for (const junk of [Buffer.alloc(0), Buffer.from([0xc1]), Buffer.from('hello world'), Buffer.from([0xde, 0x00, 0x05, 0xa1, 0x74, 0xa1, 0x75, 0xa1, 0x6e])]) {
    t.notOk(isSentBy(junk, mine), `${junk.toString('hex') || 'empty'}`)
  }
})
