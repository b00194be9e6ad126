import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { MalformedMessageError } from './messages.js'

/**
 * Awareness updates (y-protocols awareness.js), read whole before anything of them is applied:
 *   varUint count, count x (varUint clientID, varUint clock, varString JSON state or "null")
 */
export interface AwarenessEntry {
  clientId: number
  clock: number
  /** The state as sent (JSON text); `state` is what it parses to. */
  json: string
  state: object | null
}

export interface AwarenessStateLimits {
  /** Bytes of one state's JSON text. */
  maxStateBytes: number
  /** Nesting depth of one state's JSON (objects and arrays). */
  maxStateDepth: number
  /** Entries in one update (a stock client's echo carries every state of the document). */
  maxEntriesPerDocument?: number
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A well-formed awareness update that the server refuses: a state larger or deeper than the
 * limits, or more clients than a connection may announce. The sender is closed with 4413.
 */
export class PresenceLimitError extends Error {}

/**
 * Decodes every entry and checks each state against the limits. y-protocols applies entries one
 * by one and throws midway on bad JSON, and its encoder and deep comparison recurse into states,
 * so a state is checked (size, then depth by a scan that does not recurse) before it is parsed.
 * Throws MalformedMessageError for what does not decode, PresenceLimitError for what is too big.
 */
export function readAwarenessEntries (update: Uint8Array, limits: AwarenessStateLimits): AwarenessEntry[] {
  const entries: AwarenessEntry[] = []
  try {
    const decoder = decoding.createDecoder(update)
    const count = decoding.readVarUint(decoder)
    // Checked before any state is parsed: a frame of tiny entries is many parses.
    if (limits.maxEntriesPerDocument !== undefined && count > limits.maxEntriesPerDocument) {
      throw new PresenceLimitError(`awareness update of ${count} entries, a document holds at most ${limits.maxEntriesPerDocument}`)
    }
    for (let i = 0; i < count; i++) {
      const clientId = decoding.readVarUint(decoder)
      const clock = decoding.readVarUint(decoder)
      const bytes = decoding.readVarUint8Array(decoder)
      if (bytes.length > limits.maxStateBytes) throw new PresenceLimitError(`awareness state of ${bytes.length} bytes, at most ${limits.maxStateBytes} are accepted`)
      const json = UTF8.decode(bytes)
      if (jsonDepthExceeds(json, limits.maxStateDepth)) throw new PresenceLimitError(`awareness state nested deeper than ${limits.maxStateDepth} levels`)
      const state: unknown = JSON.parse(json)
      if (state !== null && typeof state !== 'object') throw new MalformedMessageError('awareness state must be an object or null')
      entries.push({ clientId, clock, json, state })
    }
    if (decoding.hasContent(decoder)) throw new MalformedMessageError('trailing bytes in awareness update')
  } catch (err) {
    if (err instanceof MalformedMessageError || err instanceof PresenceLimitError) throw err
    throw new MalformedMessageError(`invalid awareness update: ${(err as Error).message}`)
  }
  return entries
}

/** Encodes entries as one awareness update (the states as they were sent). */
export function encodeAwarenessEntries (entries: AwarenessEntry[]): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(encoder, entry.clientId)
    encoding.writeVarUint(encoder, entry.clock)
    encoding.writeVarString(encoder, entry.json)
  }
  return encoding.toUint8Array(encoder)
}

/** True when JSON text nests objects and arrays deeper than `max`; linear, no recursion. */
export function jsonDepthExceeds (json: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) { // } ]
      depth--
    }
  }
  return false
}
