import * as decoding from 'lib0/decoding'

/**
 * The value of one stored log entry: the updates a flush collected for one document.
 *
 * One update is stored as its own bytes. Several are stored side by side behind a header instead of
 * being merged with Y.mergeUpdates: merging decodes and re-encodes every struct, which cost more
 * CPU than the store write itself, and a load applies the updates in one transaction either way.
 *
 *   header   80 80 80 80 00 01   (a non-canonical varUint 0, then format version 1)
 *   varUint  count
 *   count x varUint8Array update
 *
 * No Yjs encoder writes that header: lib0 writes canonical varUints, and 0x80 followed by 0x00 is a
 * non-canonical zero. A client could still send an update that starts with it (Yjs reads it as an
 * update with no structs), so such an update is always stored behind a header, never bare. Values
 * written before this format are bare updates and read as such.
 */
const HEADER = Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x00, 0x01)

function startsWithHeader (bytes: Uint8Array): boolean {
  if (bytes.length < HEADER.length) return false
  for (let i = 0; i < HEADER.length; i++) if (bytes[i] !== HEADER[i]) return false
  return true
}

/** Encodes one entry's updates (at least one). */
export function encodeEntryValue (updates: readonly Uint8Array[]): Uint8Array {
  if (updates.length === 0) throw new Error('an entry holds at least one update')
  const only = updates.length === 1 ? updates[0]! : null
  if (only !== null && !startsWithHeader(only)) return only
  // Sized exactly and written in one allocation: a lib0 Encoder starts small and grows by copying,
  // which made this the costliest step of a flush.
  let size = HEADER.length + varUintSize(updates.length)
  for (const update of updates) size += varUintSize(update.length) + update.length
  const value = new Uint8Array(size)
  value.set(HEADER)
  let pos = writeVarUint(value, HEADER.length, updates.length)
  for (const update of updates) {
    pos = writeVarUint(value, pos, update.length)
    value.set(update, pos)
    pos += update.length
  }
  return value
}

/** Bytes of `n` as a lib0 varUint (7 bits per byte). */
function varUintSize (n: number): number {
  let size = 1
  while (n > 0x7f) {
    n = Math.floor(n / 0x80)
    size++
  }
  return size
}

/** Writes `n` as a lib0 varUint at `pos`; returns the position after it. */
function writeVarUint (target: Uint8Array, pos: number, n: number): number {
  while (n > 0x7f) {
    target[pos++] = 0x80 | (n & 0x7f)
    n = Math.floor(n / 0x80)
  }
  target[pos++] = n
  return pos
}

/**
 * The updates of one stored value, as views into it (no copies). A value that starts with the
 * header but does not parse as a list (only a client's crafted update stored bare by a version
 * before this format could) is returned as the single update it then is.
 */
export function decodeEntryValue (value: Uint8Array): Uint8Array[] {
  if (!startsWithHeader(value)) return [value]
  try {
    const decoder = decoding.createDecoder(value)
    decoder.pos = HEADER.length
    const count = decoding.readVarUint(decoder)
    // Each update takes at least one byte: a count beyond that is not a list.
    if (count === 0 || count > value.length) return [value]
    const updates: Uint8Array[] = []
    for (let i = 0; i < count; i++) updates.push(decoding.readVarUint8Array(decoder))
    return decoding.hasContent(decoder) ? [value] : updates
  } catch {
    return [value]
  }
}
