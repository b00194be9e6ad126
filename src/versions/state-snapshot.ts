import * as Y from 'yjs'
import type { LiveDocument } from '../documents/live-document.js'
import { StateChunks, type ChunkSize } from '../documents/state-chunks.js'
import { StateWorkerError, type StateWorker, type StateWorkerSlot } from './state-worker.js'

/** Pieces adding up to less than this are merged on the event loop: a worker's round trip costs more. */
const MERGE_HERE_BYTES = 1024 * 1024

/**
 * A loaded document's whole state as pieces encoded one per event-loop turn
 * (StateChunks.forSnapshot), so that encoding a large document does not hold every other client
 * for as long as it takes. The caller keeps the document loaded meanwhile. The pieces are new
 * buffers of the caller's own.
 */
export async function snapshotPieces (doc: LiveDocument, size: ChunkSize): Promise<Uint8Array[]> {
  // Long strings cut to a chunk too, not to a piece: these pieces go to the worker thread, not to
  // a client whose 'update' event would copy the merged string at each one.
  const chunks = StateChunks.forSnapshot(doc.ydoc, { chunkBytes: size.chunkBytes, maxPieceBytes: size.chunkBytes })
  const pieces: Uint8Array[] = []
  try {
    for (let piece = chunks.next(); piece !== null; piece = chunks.next()) {
      pieces.push(piece)
      if (!chunks.done) await new Promise(resolve => setImmediate(resolve))
    }
  } catch {
    // Structs that cannot be ordered (never for a document Yjs built): the state in one piece.
    return [doc.copyFullState() ?? Y.encodeStateAsUpdate(new Y.Doc())]
  }
  return pieces
}

/**
 * The document's state as one update, a buffer of the caller's own: a small document's at once (a
 * copy of the join cache's when it holds it), a large one's encoded in pieces (snapshotPieces) and
 * merged off the event loop, in the caller's place among the worker's computations.
 */
export async function snapshotState (doc: LiveDocument, size: ChunkSize, worker: StateWorker, slot: StateWorkerSlot): Promise<Uint8Array> {
  // By the estimate (the updates applied), small: at most a few chunks, encoded at once.
  if (doc.sizeEstimate <= size.chunkBytes) {
    const state = doc.copyFullState()
    if (state !== null) return state
  }
  const pieces = await snapshotPieces(doc, size)
  if (pieces.length === 1) return pieces[0]!
  if (pieces.reduce((sum, piece) => sum + piece.length, 0) < MERGE_HERE_BYTES) return Y.mergeUpdates(pieces)
  return await worker.mergeState(pieces, slot)
}

/** Automatic versions of large documents encoded at once; the others wait their turn. */
export const MAX_AUTOMATIC_AT_ONCE = 2

/**
 * The states of automatic versions: a small document's at once, a large one's as snapshotState.
 * At most MAX_AUTOMATIC_AT_ONCE of those take the worker's places at a time, so that background
 * versions leave the rest to people's restores, versions and exports; with the worker full
 * anyway or failing on the document, the state is encoded at once, so that no version is skipped
 * and no failing merge is tried again at every sweep.
 */
export class AutomaticVersionStates {
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor (private readonly size: ChunkSize, private readonly worker: StateWorker) {}

  /** The state of `doc` for its automatic version; null once it is not loaded here. */
  async of (doc: LiveDocument | undefined): Promise<Uint8Array | null> {
    if (doc === undefined || doc.state === 'unloaded') return null
    // The estimate counts the updates applied, so a document under one chunk by it is at most a
    // few chunks (deletions spread over it encode larger than they arrived).
    if (doc.sizeEstimate <= this.size.chunkBytes) return doc.copyFullState()
    await this.enter()
    try {
      // It may have left while waiting for its turn.
      if ((doc.state as LiveDocument['state']) === 'unloaded') return null
      return await this.worker.withSlot('write', async slot => await snapshotState(doc, this.size, this.worker, slot))
    } catch (err) {
      if (err instanceof StateWorkerError) return doc.copyFullState()
      throw err
    } finally {
      this.leave()
    }
  }

  private async enter (): Promise<void> {
    if (this.running < MAX_AUTOMATIC_AT_ONCE) {
      this.running++
      return
    }
    // The place is handed over by leave(), still counted.
    await new Promise<void>(resolve => { this.waiting.push(resolve) })
  }

  private leave (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.running--
  }
}
