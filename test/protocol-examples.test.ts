import t from 'tap'
import { readFileSync } from 'node:fs'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { encodeBatchAck, encodeExtensionError, encodeOfflineBatch } from '../src/protocol/extensions.js'
import { decodeClientMessage, encodeAwareness, encodePermissionDenied, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate } from '../src/protocol/messages.js'

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex').match(/../g)!.join(' ')

/** The rows of protocol.md's "Examples" table: example name to hex. */
function documentedExamples (): Map<string, string> {
  const text = readFileSync(new URL('../protocol.md', import.meta.url), 'utf8')
  const section = text.slice(text.indexOf('## Examples'), text.indexOf('## Close codes'))
  const rows = new Map<string, string>()
  for (const line of section.split('\n')) {
    const match = /^\| (.+?) \| `([0-9a-f ]+)` \|$/.exec(line)
    if (match !== null) rows.set(match[1]!, match[2]!)
  }
  return rows
}

t.test('the hex examples in protocol.md match the encoders', async t => {
  const doc = new Y.Doc()
  doc.clientID = 1
  doc.getText('t').insert(0, 'hi')
  const update = Y.encodeStateAsUpdate(doc)
  const stateVector = Y.encodeStateVector(doc)
  const emptyStateVector = Y.encodeStateVector(new Y.Doc())
  const awareness = encoding.createEncoder()
  encoding.writeVarUint(awareness, 1)
  encoding.writeVarUint(awareness, 1)
  encoding.writeVarUint(awareness, 3)
  encoding.writeVarString(awareness, '{"name":"Ada"}')

  const expected: Record<string, Uint8Array> = {
    'sync step 1, empty document': encodeSyncStep1(emptyStateVector),
    'sync step 1, after the insert': encodeSyncStep1(stateVector),
    'sync step 2 carrying the insert': encodeSyncStep2(update),
    'sync update carrying the insert': encodeSyncUpdate(update),
    'awareness: client 1, clock 3, `{"name":"Ada"}`': encodeAwareness(encoding.toUint8Array(awareness)),
    'permission denied': encodePermissionDenied('read-only access: updates are not accepted'),
    'query-awareness': new Uint8Array([3]),
    'offline batch `b1` with the insert': encodeOfflineBatch({ batchId: 'b1', updates: [update] }),
    'batch ack `b1`, applied, before `00`, after `01 01 02`, no version': encodeBatchAck({ batchId: 'b1', outcome: 0, stateVectorBefore: emptyStateVector, stateVectorAfter: stateVector, versionId: '' }),
    'batch ack `b1`, applied, before `00`, after `01 01 02`, version `v7`': encodeBatchAck({ batchId: 'b1', outcome: 0, stateVectorBefore: emptyStateVector, stateVectorAfter: stateVector, versionId: 'v7' }),
    'offline batch `b1` with the insert, synced at `00`': encodeOfflineBatch({ batchId: 'b1', updates: [update], syncedStateVector: emptyStateVector }),
    'error for `b1`, code 1, `bad`': encodeExtensionError({ batchId: 'b1', code: 1, message: 'bad' })
  }
  const documented = documentedExamples()
  t.same([...documented.keys()].sort(), Object.keys(expected).sort(), 'every documented example is checked, and only those')
  for (const [name, bytes] of Object.entries(expected)) {
    t.equal(documented.get(name), hex(bytes), name)
  }
  t.match(readFileSync(new URL('../protocol.md', import.meta.url), 'utf8'), hex(update), 'the documented update is the real one')
})

t.test('the decoder reads what the encoders write', async t => {
  const update = new Uint8Array([1, 1, 1, 0, 4, 1, 1, 116, 2, 104, 105, 0])
  t.same(decodeClientMessage(encodeSyncUpdate(update)), { kind: 'sync-update', update })
  t.same(decodeClientMessage(encodeSyncStep2(update)), { kind: 'sync-step2', update })
  t.same(decodeClientMessage(encodeSyncStep1(new Uint8Array([0]))), { kind: 'sync-step1', stateVector: new Uint8Array([0]) })
  t.same(decodeClientMessage(new Uint8Array([3])), { kind: 'query-awareness' })
  const batch = decodeClientMessage(encodeOfflineBatch({ batchId: 'b1', updates: [update] }))
  t.equal(batch.kind, 'offline-batch')
})
