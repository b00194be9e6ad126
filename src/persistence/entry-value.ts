import * as decoding from 'lib0/decoding'

/**
 * The value of one stored log entry: updates of one document, side by side.
 *
 *   header   80 80 80 80 00 01   (a non-canonical varUint 0, then format version 1)
 *   then, to the end of the value, varUint8Array updates (lib0 framing: varUint length, bytes)
 *
 * The write-behind copies each update into its document's entry as it arrives (EntryBuilder), so
 * an update costs one copy into a buffer that grows by doubling: no array of copies to keep, and no
 * Y.mergeUpdates, which decodes and re-encodes every struct and cost more CPU than the store write.
 * A load applies the updates in one transaction either way.
 *
 * Values written before this format are bare Yjs updates, read as they are. No Yjs encoder writes
 * the header (lib0 writes canonical varUints, and 0x80 followed by 0x00 is a non-canonical zero),
 * so a bare value starts with it only if a client crafted such an update (Yjs reads it as one
 * without structs) and an earlier version stored it; such a value is read as one update unless its
 * rest also parses as a list. Every value holding a client's update carries the header, so crafted
 * updates are always framed; only a large update the server encoded itself (a restore) is stored
 * bare (write-behind.ts).
 */
const HEADER = Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x00, 0x01)

const INITIAL_CAPACITY = 256

/**
 * Collects updates into one entry value, in one buffer that grows by doubling. Not a lib0 Encoder:
 * its chunked buffers, the two views writeUint8Array makes per call and the concatenation in
 * toUint8Array cost several times more per update (docs/performance.md).
 */
export class EntryBuilder {
  private buffer: Uint8Array
  private length = HEADER.length

  constructor (firstUpdateBytes = 0) {
    this.buffer = new Uint8Array(Math.max(INITIAL_CAPACITY, HEADER.length + 5 + firstUpdateBytes))
    this.buffer.set(HEADER)
  }

  /** Bytes of the value so far. */
  get byteLength (): number {
    return this.length
  }

  /** Copies `update` in: the caller may reuse or release its buffer afterwards. */
  append (update: Uint8Array): void {
    const needed = this.length + 5 + update.length
    if (needed > this.buffer.length) {
      const grown = new Uint8Array(Math.max(needed, this.buffer.length * 2))
      grown.set(this.buffer.subarray(0, this.length))
      this.buffer = grown
    }
    let n = update.length
    while (n > 0x7f) {
      this.buffer[this.length++] = 0x80 | (n & 0x7f)
      n = Math.floor(n / 0x80)
    }
    this.buffer[this.length++] = n
    this.buffer.set(update, this.length)
    this.length += update.length
  }

  /** The value; the builder must not be used afterwards. */
  finish (): Uint8Array {
    return this.buffer.subarray(0, this.length)
  }
}

/** One entry value holding `updates` (tests, and callers that have the updates at hand). */
export function encodeEntryValue (updates: readonly Uint8Array[]): Uint8Array {
  if (updates.length === 0) throw new Error('an entry holds at least one update')
  // Sized for all of them at once (a length prefix takes at most 5 bytes): one allocation, no copy.
  const builder = new EntryBuilder(updates.reduce((sum, update) => sum + update.length, 0) + 5 * (updates.length - 1))
  for (const update of updates) builder.append(update)
  return builder.finish()
}

function startsWithHeader (bytes: Uint8Array): boolean {
  if (bytes.length < HEADER.length) return false
  for (let i = 0; i < HEADER.length; i++) if (bytes[i] !== HEADER[i]) return false
  return true
}

/** The updates of one stored value, as views into it (no copies). */
export function decodeEntryValue (value: Uint8Array): Uint8Array[] {
  if (!startsWithHeader(value)) return [value]
  try {
    const decoder = decoding.createDecoder(value)
    decoder.pos = HEADER.length
    const updates: Uint8Array[] = []
    while (decoding.hasContent(decoder)) updates.push(decoding.readVarUint8Array(decoder))
    return updates.length > 0 ? updates : [value]
  } catch {
    // Runs past the end: a bare update that only starts like the header.
    return [value]
  }
}
