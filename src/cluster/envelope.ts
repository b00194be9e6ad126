import { Packr } from 'msgpackr'

/**
 * Messages between nodes (msgpack). Every envelope names its sender node (`n`), so a node ignores
 * its own, and its document (`d`). On a document's channel, `u`, `a` and `h` carry the sender's
 * per-document sequence number (`s`): a receiver that sees a number skip knows it lost a message.
 *
 *   u  update       doc channel   f: the y-websocket sync-update frame, forwarded to clients as is;
 *                                 w: the sender's wall clock in ms when it published (for lag)
 *   a  awareness    doc channel   f: the y-websocket awareness frame
 *   h  heartbeat    doc channel   s only: the sender's latest number, so a lost last message shows
 *   q  sync request doc channel   v: the requester's state vector ("send me what I lack")
 *   r  sync reply   node channel  p: update the requester lacks, v: the replier's state vector (so
 *                                 the requester pushes back what the replier lacks), a: the
 *                                 replier's own clients' awareness
 *   x  sync push    node channel  p: update the replier lacked
 *   k  deleted      doc channel   the document was deleted (admin API): drop it, close its clients
 *   v  revoked      doc channel   u: a user whose access was revoked: close that user's connections
 */
export type Envelope =
  | { t: 'u'; n: string; d: string; s: number; f: Uint8Array; w?: number }
  | { t: 'a'; n: string; d: string; s: number; f: Uint8Array }
  | { t: 'h'; n: string; d: string; s: number }
  | { t: 'q'; n: string; d: string; v: Uint8Array }
  | { t: 'r'; n: string; d: string; p?: Uint8Array; v?: Uint8Array; a?: Uint8Array }
  | { t: 'x'; n: string; d: string; p: Uint8Array }
  | { t: 'k'; n: string; d: string }
  | { t: 'v'; n: string; d: string; u: string }

const packr = new Packr({ useRecords: false, moreTypes: false })

export function encodeEnvelope (envelope: Envelope): Buffer {
  return packr.pack(envelope)
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
  switch (e.t) {
    case 'u': case 'a': return typeof e.s === 'number' && isBytes(e.f) ? value as Envelope : null
    case 'h': return typeof e.s === 'number' ? value as Envelope : null
    case 'q': return isBytes(e.v) ? value as Envelope : null
    case 'r': return optionalBytes(e.p) && optionalBytes(e.v) && optionalBytes(e.a) ? value as Envelope : null
    case 'x': return isBytes(e.p) ? value as Envelope : null
    case 'k': return value as Envelope
    case 'v': return typeof e.u === 'string' ? value as Envelope : null
    default: return null
  }
}
