import type { Transaction } from 'yjs'
import type { LargeUpdateFanout, TopicPublisher } from '../documents/document-changes.js'
import type { LiveDocument } from '../documents/live-document.js'
import { ReplayedChunks, StateChunks, type ChunkSequence, type ChunkSize } from '../documents/state-chunks.js'
import type { Metrics } from '../metrics/metrics.js'
import { encodeSyncStep2, encodeSyncUpdate } from '../protocol/messages.js'
import type { ConnectionTable } from './connection-table.js'
import type { ClientSocket, Connection } from './connection.js'

/**
 * How the last chunk of a sequence is framed: as sync step 2 when the sequence answers a client's
 * sync step 1 (the stock provider reports "synced" on the first step 2 it receives, so the earlier
 * chunks go as plain updates and "synced" means the whole document), as an update otherwise.
 */
export type LastChunk = 'sync-step2' | 'sync-update'

/** Large updates waiting for one connection before it counts as a slow reader. */
const MAX_QUEUED_SEQUENCES = 32

interface Sequence {
  chunks: ChunkSequence
  last: LastChunk
}

/**
 * Large content (the answer to a big document's sync step 1, an update of megabytes) sent to one
 * connection a chunk at a time: the next chunk is encoded only when the socket has sent the last
 * one down to `lowWaterBytes`, and at most one chunk per connection per turn of the event loop.
 * The server's memory per connection stays about one chunk, the event loop serves everyone else
 * between chunks, uWS's backpressure limit keeps meaning a slow reader, and every chunk the client
 * receives restarts its 30 s message timer.
 */
export class PacedSends {
  private readonly queues = new Map<Connection, Sequence[]>()
  private scheduled = false
  private readonly ready = new Set<Connection>()

  constructor (private readonly lowWaterBytes: number, private readonly metrics: Metrics) {}

  /**
   * Queues `chunks` for the connection and sends the first one now if its socket is free (with
   * `firstNow` false: on the next turn, for a caller that held the event loop already). A
   * connection that lets MAX_QUEUED_SEQUENCES pile up is a slow reader: it is dropped (1006), as
   * uWS drops one past MAX_BACKPRESSURE_BYTES, and re-syncs when it reconnects.
   */
  send (conn: Connection, chunks: ChunkSequence, last: LastChunk, firstNow = true): void {
    const queue = this.queues.get(conn)
    if (queue === undefined) {
      this.queues.set(conn, [{ chunks, last }])
    } else if (queue.length >= MAX_QUEUED_SEQUENCES) {
      conn.log.warn({ queued: queue.length }, 'closing: too slow to receive large updates')
      this.closed(conn)
      // Not from inside the fan-out that called here: the close handler changes presence and
      // the document's connections.
      setImmediate(() => { if (!conn.closed) conn.socket?.close() })
      return
    } else {
      queue.push({ chunks, last })
    }
    if (firstNow) this.pump(conn)
    else this.readyNextTurn(conn)
  }

  /** uWS's drain: the socket's buffer went down, the connection may take the next chunk. */
  drained (conn: Connection): void {
    if (this.queues.has(conn)) this.pump(conn)
  }

  /** The connection closed: what it had not received it re-syncs on reconnect. */
  closed (conn: Connection): void {
    this.queues.delete(conn)
    this.ready.delete(conn)
  }

  /** Sequences still being sent, for the node's gauges. */
  get pending (): number {
    return this.queues.size
  }

  private pump (conn: Connection): void {
    const ws = conn.socket
    if (conn.closed || ws === null) {
      this.closed(conn)
      return
    }
    if (ws.getBufferedAmount() > this.lowWaterBytes) return // drain comes back here
    const queue = this.queues.get(conn)
    const sequence = queue?.[0]
    if (queue === undefined || sequence === undefined) return
    this.sendOne(ws, conn, sequence)
    if (sequence.chunks.done) queue.shift()
    if (queue.length === 0) {
      this.queues.delete(conn)
      return
    }
    this.readyNextTurn(conn)
  }

  private readyNextTurn (conn: Connection): void {
    this.ready.add(conn)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.next())
    }
  }

  /** One chunk for every connection that took its last one; the others wait for their drain. */
  private next (): void {
    this.scheduled = false
    const ready = [...this.ready]
    this.ready.clear()
    for (const conn of ready) this.pump(conn)
  }

  private sendOne (ws: ClientSocket, conn: Connection, sequence: Sequence): void {
    let chunk: Uint8Array | null
    try {
      chunk = sequence.chunks.next()
    } catch (err) {
      conn.log.error({ err }, 'document could not be sent in chunks; sending it whole')
      chunk = sequence.chunks.whole()
      sequence.chunks.abandon()
    }
    if (chunk === null) return
    const last = sequence.chunks.done
    const frame = last && sequence.last === 'sync-step2' ? encodeSyncStep2(chunk) : encodeSyncUpdate(chunk)
    ws.send(frame, true)
    this.metrics.sent(last ? sequence.last : 'sync-update', frame.length)
  }
}

/**
 * The server's LargeUpdateFanout: every local connection to the document but the sender receives
 * the update through PacedSends, so a large update costs no copy of it per subscriber. An update
 * no larger than a piece goes as it came, one copy shared by all (encoding it again from the
 * document would cost more: pieces of one string merge into one item there, which each encoding
 * then copies whole); a larger one as the transaction's changes in chunks, each connection's
 * encoded as its socket takes them.
 */
export class PacedLargeUpdates implements LargeUpdateFanout {
  readonly thresholdBytes: number

  constructor (
    private readonly size: ChunkSize,
    private readonly connections: ConnectionTable,
    private readonly paced: PacedSends
  ) {
    this.thresholdBytes = size.chunkBytes
  }

  fanOut (doc: LiveDocument, update: Uint8Array, transaction: Transaction, except: TopicPublisher | null): void {
    const asItCame = update.length <= this.size.maxPieceBytes
    let copy: Uint8Array[] | null = null
    for (const conn of this.connections.ofDocument(doc.id)) {
      if (conn.doc !== doc || conn.socket === null || conn.socket === except) continue
      // Copied once: a client's update is a view into uWS's buffer, valid only during this call.
      if (asItCame) copy ??= [update.slice()]
      // The first chunk on the next turn: applying a large update held the event loop already.
      this.paced.send(conn, copy !== null ? new ReplayedChunks(copy, doc.ydoc) : StateChunks.forTransaction(doc.ydoc, transaction, this.size), 'sync-update', false)
    }
  }
}

/**
 * Chunks of about a megabyte, never more than a quarter of the backpressure limit; pieces of a long
 * struct up to half of it. A chunk is sent when the socket holds at most one chunk, so what it
 * holds stays below the limit with room for the live edits published meanwhile.
 */
export function chunkSizeFor (maxBackpressureBytes: number): ChunkSize {
  const chunkBytes = Math.max(16 * 1024, Math.min(1024 * 1024, Math.floor(maxBackpressureBytes / 4)))
  return { chunkBytes, maxPieceBytes: Math.max(chunkBytes, Math.floor(maxBackpressureBytes / 2)) }
}
