import * as decoding from 'lib0/decoding'
import { MalformedMessageError, MessageType } from './messages.js'

/**
 * Awareness updates (y-protocols awareness.js), read whole before anything of them is applied:
 *   varUint count, count x (varUint clientID, varUint clock, varString JSON state or "null")
 */
export interface AwarenessEntry {
  clientId: number
  clock: number
  /** The state as sent (JSON text); `state` is what it parses to. */
  json: string
  /** The UTF-8 bytes of `json`, as read: what it weighs in a frame and in a document's budget. */
  bytes: number
  state: object | null
}

/** An entry made here rather than read (removals, tests): its JSON measured and parsed. */
export function awarenessEntry (clientId: number, clock: number, json: string): AwarenessEntry {
  return { clientId, clock, json, bytes: Buffer.byteLength(json), state: JSON.parse(json) as object | null }
}

export interface AwarenessStateLimits {
  /** Bytes of one state's JSON text. */
  maxStateBytes: number
  /** Nesting depth of one state's JSON (objects and arrays). */
  maxStateDepth: number
  /** Entries in one update (a stock client's echo carries every state of the document). */
  maxEntriesPerDocument?: number
}

// The byte-order mark is kept, as lib0's decoder (and so every client) keeps it: JSON.parse then
// refuses such a state here, instead of every client refusing the relayed frame.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * A well-formed awareness update that the server refuses: a state larger or deeper than the
 * limits, or more clients than a connection may announce. The sender is closed with 4413.
 */
export class PresenceLimitError extends Error {}

/**
 * Says which entries would change nothing (`removal`: the state is JSON null), so that they are
 * left out without being decoded or parsed.
 */
export type StaleEntryCheck = (clientId: number, clock: number, removal: boolean) => boolean

/**
 * Decodes every entry and checks each state against the limits. y-protocols applies entries one
 * by one and throws midway on bad JSON, and its encoder and deep comparison recurse into states,
 * so a state is checked (size, then depth by a scan that does not recurse) before it is parsed.
 * Throws MalformedMessageError for what does not decode, PresenceLimitError for what is too big.
 *
 * Entries `isStale` names are left out unparsed (they are dropped, never applied or relayed): the
 * stock provider sends every state it receives back to the server, so most entries a server reads
 * are such echoes.
 */
export function readAwarenessEntries (update: Uint8Array, limits: AwarenessStateLimits, isStale?: StaleEntryCheck): AwarenessEntry[] {
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
      if (isStale?.(clientId, clock, isJsonNull(bytes)) === true) continue
      const json = UTF8.decode(bytes)
      if (jsonDepthExceeds(json, limits.maxStateDepth)) throw new PresenceLimitError(`awareness state nested deeper than ${limits.maxStateDepth} levels`)
      const state: unknown = JSON.parse(json)
      if (state !== null && typeof state !== 'object') throw new MalformedMessageError('awareness state must be an object or null')
      entries.push({ clientId, clock, json, bytes: bytes.length, state })
    }
    if (decoding.hasContent(decoder)) throw new MalformedMessageError('trailing bytes in awareness update')
  } catch (err) {
    if (err instanceof MalformedMessageError || err instanceof PresenceLimitError) throw err
    throw new MalformedMessageError(`invalid awareness update: ${(err as Error).message}`)
  }
  return entries
}

/** The number of entries an awareness update says it holds (throws for one that does not decode). */
export function awarenessEntryCount (update: Uint8Array): number {
  return decoding.readVarUint(decoding.createDecoder(update))
}

const JSON_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d])
const NULL = [0x6e, 0x75, 0x6c, 0x6c] // "null"

/** Whether JSON text is null: the literal, with whitespace around it at most (JSON.parse's rule). */
export function isJsonNull (bytes: Uint8Array): boolean {
  let start = 0
  let end = bytes.length
  while (start < end && JSON_WHITESPACE.has(bytes[start]!)) start++
  while (end > start && JSON_WHITESPACE.has(bytes[end - 1]!)) end--
  return end - start === 4 && NULL.every((byte, i) => bytes[start + i] === byte)
}

/** Encodes entries as one awareness update (the states as they were sent). */
export function encodeAwarenessEntries (entries: AwarenessEntry[]): Uint8Array {
  return writeEntries(entries, false)
}

/** Encodes entries as one y-websocket awareness message: the update in its frame, written once. */
export function encodeAwarenessFrame (entries: AwarenessEntry[]): Uint8Array {
  return writeEntries(entries, true)
}

/**
 * lib0's encoder writes a string byte by byte; states are most of an update's bytes, so they are
 * written natively in place, into a buffer of exactly the update's size (each entry knows its
 * state's size).
 */
function writeEntries (entries: AwarenessEntry[], framed: boolean): Uint8Array {
  let updateSize = varUintSize(entries.length)
  for (const entry of entries) updateSize += varUintSize(entry.clientId) + varUintSize(entry.clock) + varUintSize(entry.bytes) + entry.bytes
  const headerSize = framed ? varUintSize(MessageType.Awareness) + varUintSize(updateSize) : 0
  const out = Buffer.alloc(headerSize + updateSize)
  let at = 0
  if (framed) {
    at = writeVarUint(out, at, MessageType.Awareness)
    at = writeVarUint(out, at, updateSize)
  }
  at = writeVarUint(out, at, entries.length)
  for (const entry of entries) {
    at = writeVarUint(out, at, entry.clientId)
    at = writeVarUint(out, at, entry.clock)
    at = writeVarUint(out, at, entry.bytes)
    at += out.write(entry.json, at, 'utf8')
  }
  // A plain view, as lib0 returns: a Buffer compares and serialises differently.
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

function varUintSize (value: number): number {
  let size = 1
  while (value > 0x7f) {
    value = Math.floor(value / 0x80)
    size++
  }
  return size
}

/** lib0's variable-length unsigned integer, for values up to 2^53. */
function writeVarUint (out: Uint8Array, at: number, value: number): number {
  while (value > 0x7f) {
    out[at++] = 0x80 | (value % 0x80)
    value = Math.floor(value / 0x80)
  }
  out[at++] = value
  return at
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
