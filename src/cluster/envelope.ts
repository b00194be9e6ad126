import { Packr } from 'msgpackr'

/**
 * Messages between nodes (msgpack), one per Redis pub/sub message. The field names are single
 * letters because every edit crosses Redis in one of these; the kinds are named below. Every
 * envelope names its kind (`t`), its sender node (`n`, so a node ignores its own) and its document
 * (`d`). On a document's channel, Update, Awareness and Heartbeat carry the sender's per-document
 * sequence number (`s`): a receiver that sees a number skip knows it lost a message.
 *
 *   kind          channel       fields
 *   Update        doc channel   f: the y-websocket sync-update frame, forwarded to clients as is;
 *                               w: the sender's wall clock in ms when it published (for lag)
 *   Awareness     doc channel   f: the y-websocket awareness frame; u: the verified user whose
 *                               presence it is (absent from older nodes)
 *   Heartbeat     doc channel   s only: the sender's latest number, so a lost last message shows
 *   SyncRequest   doc channel   v: the requester's state vector ("send me what I lack")
 *   SyncReply     node channel  p: update the requester lacks, v: the replier's state vector (so
 *                               the requester pushes back what the replier lacks), a: the
 *                               replier's own clients' awareness, au: the user of each of its
 *                               entries
 *   SyncPush      node channel  p: update the replier lacked
 *   Deleted       doc channel   the document was deleted (admin API): drop it, close its clients
 *   Revoked       doc channel   u: a user whose access was revoked: close that user's connections
 *   Part          either        an envelope too large for one pub/sub message, cut in parts
 *                               (envelope-parts.ts): i: the sender's series number, k: this part's
 *                               index, c: the number of parts, b: this part's bytes
 *
 * The kinds' letters are the wire format that nodes of different versions share during a rolling
 * upgrade; Revoked's 'v' is a kind, unrelated to the state-vector field `v`.
 */
export const EnvelopeKind = {
  Update: 'u',
  Awareness: 'a',
  Heartbeat: 'h',
  SyncRequest: 'q',
  SyncReply: 'r',
  SyncPush: 'x',
  Deleted: 'k',
  Revoked: 'v',
  Part: 'p'
} as const

type Kinds = typeof EnvelopeKind

export type Envelope =
  | { t: Kinds['Update']; n: string; d: string; s: number; f: Uint8Array; w?: number }
  | { t: Kinds['Awareness']; n: string; d: string; s: number; f: Uint8Array; u?: string }
  | { t: Kinds['Heartbeat']; n: string; d: string; s: number }
  | { t: Kinds['SyncRequest']; n: string; d: string; v: Uint8Array }
  | { t: Kinds['SyncReply']; n: string; d: string; p?: Uint8Array; v?: Uint8Array; a?: Uint8Array; au?: Array<string | null> }
  | { t: Kinds['SyncPush']; n: string; d: string; p: Uint8Array }
  | { t: Kinds['Deleted']; n: string; d: string }
  | { t: Kinds['Revoked']; n: string; d: string; u: string }
  | { t: Kinds['Part']; n: string; d: string; i: number; k: number; c: number; b: Uint8Array }

const packr = new Packr({ useRecords: false, moreTypes: false })

export function encodeEnvelope (envelope: Envelope): Buffer {
  return packr.pack(envelope)
}

/**
 * Every envelope is a map whose first two keys are `t` (a one-letter kind) and `n`: its bytes start
 * with the map's header, `t` and the kind (as many bytes for every envelope), then `n` and the
 * sender's id as msgpack writes them. Redis echoes each message back to its publisher, so half of
 * what a busy node receives is its own: this prefix tells them apart without decoding them. Where
 * `n` starts is measured on this encoder rather than assumed.
 */
const SENDER_AT = encodeEnvelope({ t: EnvelopeKind.Heartbeat, n: '', d: '', s: 0 }).indexOf(Buffer.from([0xa1, 0x6e]))

/** What every envelope `nodeId` sends holds at SENDER_AT (isSentBy). */
export function senderMarker (nodeId: string): Buffer {
  return Buffer.concat([Buffer.from([0xa1, 0x6e]), packr.pack(nodeId)])
}

/**
 * Whether `message` is an envelope sent by the node whose marker this is. False for anything else,
 * including an own envelope encoded another way: the caller decodes those and checks `n`.
 */
export function isSentBy (message: Buffer, marker: Buffer): boolean {
  return SENDER_AT > 0 && message.length > SENDER_AT + marker.length && message.compare(marker, 0, marker.length, SENDER_AT, SENDER_AT + marker.length) === 0
}

/** Returns null for anything that is not a well-formed envelope. */
export function decodeEnvelope (bytes: Buffer): Envelope | null {
  let value: unknown
  try {
    value = packr.unpack(bytes)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const e = value as Record<string, unknown>
  if (typeof e.n !== 'string' || typeof e.d !== 'string' || typeof e.t !== 'string') return null
  const isBytes = (x: unknown): boolean => x instanceof Uint8Array
  const optionalBytes = (x: unknown): boolean => x === undefined || x === null || isBytes(x)
  const optionalUsers = (x: unknown): boolean => x === undefined || (Array.isArray(x) && x.every(u => u === null || typeof u === 'string'))
  switch (e.t) {
    case EnvelopeKind.Update: return typeof e.s === 'number' && isBytes(e.f) ? value as Envelope : null
    case EnvelopeKind.Awareness: return typeof e.s === 'number' && isBytes(e.f) && (e.u === undefined || typeof e.u === 'string') ? value as Envelope : null
    case EnvelopeKind.Heartbeat: return typeof e.s === 'number' ? value as Envelope : null
    case EnvelopeKind.SyncRequest: return isBytes(e.v) ? value as Envelope : null
    case EnvelopeKind.SyncReply: return optionalBytes(e.p) && optionalBytes(e.v) && optionalBytes(e.a) && optionalUsers(e.au) ? value as Envelope : null
    case EnvelopeKind.SyncPush: return isBytes(e.p) ? value as Envelope : null
    case EnvelopeKind.Deleted: return value as Envelope
    case EnvelopeKind.Revoked: return typeof e.u === 'string' ? value as Envelope : null
    case EnvelopeKind.Part: return Number.isInteger(e.i) && Number.isInteger(e.k) && Number.isInteger(e.c) && (e.k as number) >= 0 && (e.k as number) < (e.c as number) && isBytes(e.b) ? value as Envelope : null
    default: return null
  }
}
