import * as encoding from 'lib0/encoding'
import { encodeAwareness } from '../../src/protocol/messages.js'

export type AwarenessEntry = [clientId: number, clock: number, json: string]

/** An awareness message as a client would send it, with any entries at all (hostile ones too). */
export function awarenessFrame (entries: AwarenessEntry[]): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const [id, clock, json] of entries) {
    encoding.writeVarUint(e, id)
    encoding.writeVarUint(e, clock)
    encoding.writeVarString(e, json)
  }
  return encodeAwareness(encoding.toUint8Array(e))
}
