import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { emptyUpdate } from '../protocol/messages.js'

type DeleteSet = ReturnType<typeof Y.createDeleteSet>

/** Chunks handed out one at a time (see StateChunks). */
export interface ChunkSequence {
  /** True once every chunk was returned by next(). */
  readonly done: boolean
  /** The next chunk, or null when done; may throw (then use whole()). */
  next: () => Uint8Array | null
  /** Everything from the start as one update. */
  whole: () => Uint8Array
  /** Done from now on. */
  abandon: () => void
}

/**
 * A Yjs document's content as a sequence of updates of about a chunk each instead of one, made
 * one at a time: a large document reaches a client as messages it can apply one by one, each
 * encoded when the socket can take it, so neither the server's event loop nor the client's 30 s
 * message timer waits for one huge frame.
 *
 * Each chunk is a valid Yjs update (format v1) that integrates once the chunks before it have:
 * structs are emitted in causal order (a struct only after its origins and its parent, the order
 * Yjs itself integrates in), each client's structs as one contiguous clock range per chunk, and a
 * struct longer than `maxPieceBytes` (one pasted string) is cut the way Yjs splits items, into few
 * pieces: the receiver merges the pieces back into one item, and its 'update' event (which every
 * provider listens to) then copies the whole string so far at each piece, so many small pieces of
 * one string would cost it quadratic time (measured: 3 s for 63 MiB in 1 MiB pieces, 0.3 s whole,
 * 0.5 s in 4 MiB pieces). Deletions follow
 * the structs as updates of their own. The document may change between chunks: positions are
 * clocks, which every later transaction keeps, and what changes after the start reaches the client
 * as ordinary updates.
 */
export class StateChunks implements ChunkSequence {
  private readonly cursors = new Map<number, Cursor>()
  /** Clients with structs to send, highest first (the order Yjs writes them in). */
  private readonly order: number[]
  private orderIndex = 0
  /** Delete-set chunks and other trailing updates, made once the structs are out. */
  private rest: Uint8Array[] | null = null
  private produced = 0

  /**
   * `from`/`to`: each client's clock range to send. `deletions`: the transaction's delete set, or
   * 'document' for the whole document's, read when the structs are out (plus any updates Yjs keeps
   * pending, which a complete answer to a sync step 1 includes), or 'snapshot': see forSnapshot.
   */
  private constructor (
    private readonly doc: Y.Doc,
    private readonly from: Map<number, number>,
    private readonly to: Map<number, number>,
    private readonly deletions: DeleteSet | 'document' | 'snapshot',
    private readonly size: ChunkSize
  ) {
    for (const [client, end] of to) {
      const start = from.get(client) ?? 0
      if (end > start) this.cursors.set(client, { next: start, to: end, index: 0 })
    }
    this.order = [...this.cursors.keys()].sort((a, b) => b - a)
  }

  /** What a client with `stateVector` lacks: the answer to its sync step 1, in chunks. */
  static forStateVector (doc: Y.Doc, stateVector: Uint8Array, size: ChunkSize): StateChunks {
    return new StateChunks(doc, Y.decodeStateVector(stateVector), Y.decodeStateVector(Y.encodeStateVector(doc)), 'document', size)
  }

  /**
   * The whole document as it is when the last chunk is made, encoded over several turns (a
   * version of a large document): the structs it has now, then one last update with what was
   * added since, the whole delete set and what Yjs holds pending. Structs already written change
   * afterwards only by being deleted, which that delete set covers.
   */
  static forSnapshot (doc: Y.Doc, size: ChunkSize): StateChunks {
    return new StateChunks(doc, new Map(), Y.decodeStateVector(Y.encodeStateVector(doc)), 'snapshot', size)
  }

  /** What a transaction added and deleted, in chunks (the transaction must have ended). */
  static forTransaction (doc: Y.Doc, transaction: Y.Transaction, size: ChunkSize): StateChunks {
    return new StateChunks(doc, transaction.beforeState, transaction.afterState, transaction.deleteSet, size)
  }

  /** True once every chunk was returned by next(). */
  get done (): boolean {
    return this.rest !== null && this.rest.length === 0
  }

  /**
   * The next chunk, or null when done. Throws if the document's structs cannot be ordered (never
   * for a document Yjs built); the caller then falls back to one whole update.
   */
  next (): Uint8Array | null {
    if (this.rest === null) {
      const chunk = this.nextStructs()
      if (this.structsLeft() === undefined) this.rest = this.trailingUpdates()
      if (chunk !== null) return this.count(chunk)
    }
    const chunk = this.rest?.shift()
    return chunk === undefined ? null : this.count(chunk)
  }

  /**
   * Everything from the start as one update: the fallback should next() throw. It repeats what
   * chunks already sent, which Yjs merges away.
   */
  whole (): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc, Y.encodeStateVector(this.from))
  }

  /** Stops here: done, nothing more to return (after whole() replaced the rest). */
  abandon (): void {
    this.rest = []
  }

  private count (chunk: Uint8Array): Uint8Array {
    this.produced++
    return chunk
  }

  private nextStructs (): Uint8Array | null {
    const runs = new Map<number, Run>()
    let bytes = 0
    // Clients waiting for another's structs, each with the id it waits for.
    const waiting: Array<{ client: number, needs: Y.ID }> = []
    let client = this.structsLeft()
    while (client !== undefined && bytes < this.size.chunkBytes) {
      const cursor = this.cursors.get(client) as Cursor
      if (cursor.next >= cursor.to) {
        client = waiting.pop()?.client ?? this.structsLeft()
        continue
      }
      const struct = this.structAt(client, cursor)
      const needs = this.unmetDependency(struct, cursor.next)
      if (needs !== null) {
        if (needs.client === client || waiting.some(w => w.client === needs.client)) {
          throw new Error('structs cannot be ordered causally')
        }
        waiting.push({ client, needs })
        client = needs.client
        continue
      }
      const end = this.pieceEnd(struct, cursor, bytes)
      if (end === null) break // a long struct starts the next chunk
      let run = runs.get(client)
      if (run === undefined) {
        run = { clock: cursor.next, structs: 0, encoder: new Y.UpdateEncoderV1() }
        runs.set(client, run)
      }
      const before = encoding.length(run.encoder.restEncoder)
      writePiece(run.encoder, struct, cursor.next, end)
      cursor.next = end
      run.structs++
      bytes += encoding.length(run.encoder.restEncoder) - before
      // Back to the client that waited as soon as what it needs is out.
      const top = waiting[waiting.length - 1]
      if (top !== undefined && top.needs.client === client && cursor.next > top.needs.clock) client = (waiting.pop() as { client: number }).client
    }
    if (runs.size === 0) return null
    const out = encoding.createEncoder()
    encoding.writeVarUint(out, runs.size)
    for (const client of [...runs.keys()].sort((a, b) => b - a)) {
      const run = runs.get(client) as Run
      encoding.writeVarUint(out, run.structs)
      encoding.writeVarUint(out, client)
      encoding.writeVarUint(out, run.clock)
      encoding.writeUint8Array(out, encoding.toUint8Array(run.encoder.restEncoder))
    }
    encoding.writeVarUint(out, 0) // no deletions: they follow the structs
    return encoding.toUint8Array(out)
  }

  /**
   * Where the piece of `struct` written next ends: the struct's end (or the range's) when it fits
   * the chunk, or is at most maxPieceBytes in a chunk of its own; null when it should start the
   * next chunk; for a longer struct, the end of a piece of an eighth of it (between chunkBytes and
   * maxPieceBytes).
   */
  private pieceEnd (struct: Y.Item | Y.GC, cursor: Cursor, bytes: number): number | null {
    const start = struct.id.clock
    const end = Math.min(start + struct.length, cursor.to)
    const estimate = estimatedBytes(struct, end - cursor.next)
    if (estimate <= this.size.chunkBytes - bytes) return end
    if (bytes > 0) return null
    if (estimate <= this.size.maxPieceBytes) return end
    const piece = Math.min(this.size.maxPieceBytes, Math.max(this.size.chunkBytes, Math.ceil(struct.length / 8)))
    let pieceEnd = Math.min(end, cursor.next + piece)
    if (struct instanceof Y.Item && struct.content instanceof Y.ContentString) {
      const str = struct.content.str
      const utf8 = Buffer.byteLength(str.slice(cursor.next - start, pieceEnd - start))
      if (utf8 > this.size.maxPieceBytes) pieceEnd = cursor.next + Math.max(1, Math.floor((pieceEnd - cursor.next) * this.size.maxPieceBytes / utf8))
      pieceEnd = avoidSurrogateSplit(str, start, cursor.next, pieceEnd)
    }
    return pieceEnd
  }

  /** A client that still has structs to send, or undefined when none has. */
  private structsLeft (): number | undefined {
    while (this.orderIndex < this.order.length) {
      const client = this.order[this.orderIndex] as number
      const cursor = this.cursors.get(client) as Cursor
      if (cursor.next < cursor.to) return client
      this.orderIndex++
    }
    return undefined
  }

  private structAt (client: number, cursor: Cursor): Y.Item | Y.GC {
    const structs = this.doc.store.clients.get(client) ?? []
    // Transactions may have split or merged structs since the last chunk: the clock is what holds.
    let struct = structs[cursor.index]
    if (struct === undefined || struct.id.clock > cursor.next || struct.id.clock + struct.length <= cursor.next) {
      cursor.index = Y.findIndexSS(structs, cursor.next)
      struct = structs[cursor.index]
    }
    return struct as Y.Item | Y.GC
  }

  /** A struct that must go first for `struct` (from `clock` on) to integrate, or null. */
  private unmetDependency (struct: Y.Item | Y.GC, clock: number): Y.ID | null {
    if (!(struct instanceof Y.Item)) return null
    const ids: Array<Y.ID | null> = [struct.rightOrigin]
    if (clock === struct.id.clock) {
      ids.push(struct.origin)
      const parentItem = (struct.parent as Y.AbstractType<unknown> | null)?._item ?? null
      if (struct.origin === null && struct.rightOrigin === null && parentItem !== null) ids.push(parentItem.id)
    }
    for (const id of ids) {
      if (id === null) continue
      const cursor = this.cursors.get(id.client)
      // Outside the ranges being sent: the receiver has it already.
      if (cursor !== undefined && id.clock >= cursor.next && id.clock < cursor.to) return id
    }
    return null
  }

  private trailingUpdates (): Uint8Array[] {
    // Made in the same turn as the chunk before it, or the document's own changes since would
    // be in neither.
    if (this.deletions === 'snapshot') return [Y.encodeStateAsUpdate(this.doc, Y.encodeStateVector(this.to))]
    const updates: Uint8Array[] = []
    const whole = this.deletions === 'document'
    const deleteSet = whole ? Y.createDeleteSetFromStructStore(this.doc.store) : this.deletions as DeleteSet
    updates.push(...deleteSetChunks(deleteSet, this.size.chunkBytes))
    if (whole) {
      const { pendingStructs, pendingDs } = this.doc.store
      if (pendingStructs !== null) updates.push(Y.convertUpdateFormatV2ToV1(pendingStructs.update))
      if (pendingDs !== null) updates.push(Y.convertUpdateFormatV2ToV1(pendingDs))
    }
    // Always at least one chunk: the answer to a sync step 1 is a message even when empty.
    if (updates.length === 0 && this.produced === 0) updates.push(emptyUpdate())
    return updates
  }
}

/** How large the chunks are, and the pieces a long struct is cut into. */
export interface ChunkSize {
  /** About this many bytes per chunk. */
  chunkBytes: number
  /** A struct longer than this is cut into pieces of at most this many bytes. */
  maxPieceBytes: number
}

interface Cursor {
  /** The next clock to send. */
  next: number
  /** The clock to stop at. */
  to: number
  /** Index hint into the client's struct array. */
  index: number
}

interface Run {
  clock: number
  structs: number
  encoder: Y.UpdateEncoderV1
}

/** About how many bytes writing `units` of the struct takes (deleted ranges take a few). */
function estimatedBytes (struct: Y.Item | Y.GC, units: number): number {
  if (struct instanceof Y.GC || struct.content instanceof Y.ContentDeleted) return 8
  return units
}

/** Writes `struct` from `clock` to `end`. */
function writePiece (encoder: Y.UpdateEncoderV1, struct: Y.Item | Y.GC, clock: number, end: number): void {
  const start = struct.id.clock
  if (struct instanceof Y.GC) {
    encoder.writeInfo(0)
    encoder.writeLen(end - clock)
    return
  }
  if (end === start + struct.length) {
    struct.write(encoder, clock - start)
    return
  }
  // Yjs writes an item from an offset to its end; a view whose content ends early writes a slice.
  const view = Object.create(struct) as Y.Item
  const content = struct.content.copy()
  content.splice(end - start)
  view.content = content
  view.write(encoder, clock - start)
}

/** Never cut between the halves of a surrogate pair (Yjs would replace both with U+FFFD). */
function avoidSurrogateSplit (str: string, start: number, clock: number, end: number): number {
  const cut = end - start
  if (cut >= str.length) return end
  const code = str.charCodeAt(cut - 1)
  if (code < 0xD800 || code > 0xDBFF) return end
  // One unit back, unless that leaves nothing; then one forward (the pair stays whole either way).
  return end - 1 > clock ? end - 1 : end + 1
}

/** A delete set as updates without structs, each holding about `maxBytes` of it. */
function deleteSetChunks (deleteSet: DeleteSet, maxBytes: number): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let part: Array<{ client: number, items: Array<{ clock: number, len: number }> }> = []
  let bytes = 0
  const flush = (): void => {
    if (part.length === 0) return
    const out = encoding.createEncoder()
    encoding.writeVarUint(out, 0) // no structs
    encoding.writeVarUint(out, part.length)
    for (const { client, items } of part) {
      encoding.writeVarUint(out, client)
      encoding.writeVarUint(out, items.length)
      for (const item of items) {
        encoding.writeVarUint(out, item.clock)
        encoding.writeVarUint(out, item.len)
      }
    }
    chunks.push(encoding.toUint8Array(out))
    part = []
    bytes = 0
  }
  for (const client of [...deleteSet.clients.keys()].sort((a, b) => b - a)) {
    let items: Array<{ clock: number, len: number }> = []
    part.push({ client, items })
    for (const item of deleteSet.clients.get(client) ?? []) {
      if (bytes >= maxBytes) {
        flush()
        items = []
        part.push({ client, items })
      }
      items.push(item)
      bytes += 10 // two varuints, at most 5 bytes each in practice
    }
  }
  if (part.some(p => p.items.length > 0)) flush()
  return chunks
}

/**
 * Chunks encoded earlier, handed out again: the whole document for one more fresh client, while
 * the document has not changed since they were made.
 */
export class ReplayedChunks implements ChunkSequence {
  private index = 0

  constructor (private readonly chunks: Uint8Array[], private readonly doc: Y.Doc) {}

  get done (): boolean {
    return this.index >= this.chunks.length
  }

  next (): Uint8Array | null {
    return this.chunks[this.index++] ?? null
  }

  whole (): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc)
  }

  abandon (): void {
    this.index = this.chunks.length
  }
}

/** Keeps every chunk a sequence hands out and gives them to `complete` once it is done. */
export class RecordedChunks implements ChunkSequence {
  private readonly recorded: Uint8Array[] = []
  private failed = false

  constructor (private readonly inner: ChunkSequence, private readonly complete: (chunks: Uint8Array[]) => void) {}

  get done (): boolean {
    return this.inner.done
  }

  next (): Uint8Array | null {
    let chunk
    try {
      chunk = this.inner.next()
    } catch (err) {
      this.failed = true
      throw err
    }
    if (chunk !== null) this.recorded.push(chunk)
    if (this.inner.done && !this.failed) this.complete(this.recorded)
    return chunk
  }

  whole (): Uint8Array {
    this.failed = true
    return this.inner.whole()
  }

  abandon (): void {
    this.failed = true
    this.inner.abandon()
  }
}
