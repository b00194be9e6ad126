import type { DocumentChanges } from '../documents/document-changes.js'
import type { Transaction } from 'yjs'
import { changedBy, UpdateRejectedError, type LiveDocument } from '../documents/live-document.js'
import type { ChunkSize } from '../documents/state-chunks.js'
import type { Metrics } from '../metrics/metrics.js'
import {
  decodeClientMessage,
  encodePermissionDenied,
  encodeSyncStep1,
  encodeSyncStep2,
  isEmptyUpdate,
  MalformedMessageError,
  step2FrameAsUpdateFrame
} from '../protocol/messages.js'
import { sendTo, type ClientSocket, type Connection } from './connection.js'
import type { OfflineBatches } from './offline-batch.js'
import type { PacedSends } from './paced-sends.js'
import type { VersionHistory } from '../versions/version-history.js'

export interface ClientMessageLimits {
  /** Updates that would grow a document past this many bytes are refused (0 = no limit). */
  maxDocumentBytes: number
  /** A document larger than one chunk answers a sync step 1 in paced chunks. */
  chunks: ChunkSize
}

const READ_ONLY_REASON = 'read-only access: updates are not accepted'
const QUERY_AWARENESS_INTERVAL_MS = 1_000

/**
 * What a connected client says and is told: the greeting, every frame it sends, and the removal of
 * its presence when it leaves. Changes to the document go through DocumentChanges.
 */
export class ClientMessages {
  constructor (
    private readonly changes: DocumentChanges,
    private readonly offlineBatches: OfflineBatches,
    private readonly paced: PacedSends,
    private readonly limits: ClientMessageLimits,
    private readonly metrics: Metrics,
    private readonly versions: VersionHistory | null = null
  ) {}

  /** A returning client's sync step 2, with a before-offline-merge version when it changes the document. */
  private commitOfflineMerge (doc: LiveDocument, update: Uint8Array, forward: Uint8Array, ws: ClientSocket, conn: Connection, versions: VersionHistory): void {
    const versionAfter = versions.planOfflineMerge(doc, conn.clientStateVector)
    let changed = false
    const observe = (transaction: Transaction): void => { changed ||= changedBy(transaction) }
    doc.ydoc.on('afterTransaction', observe)
    try {
      this.changes.commit(doc, update, forward, conn, ws, 'always')
    } catch (err) {
      if (err instanceof UpdateRejectedError) throw new MalformedMessageError(`update rejected: ${err.message}`)
      throw err
    } finally {
      doc.ydoc.off('afterTransaction', observe)
      versionAfter(changed).catch(err => { conn.log.warn({ err: (err as Error).message }, 'version before an offline merge not taken') })
    }
  }

  /** What a connection receives first: the server's state vector (writers only) and who is present. */
  greet (ws: ClientSocket, conn: Connection): void {
    ws.cork(() => {
      // Sync step 1 asks the client for what the server lacks; a read-only client may not give it.
      if (!conn.readOnly) sendTo(ws, this.metrics, 'sync-step1', encodeSyncStep1(conn.doc.encodeStateVector()))
      // The greeting answers a query-awareness in advance.
      conn.awarenessQueriedAt = performance.now()
      this.sendAwareness(ws, conn)
    })
  }

  /**
   * Handles one binary frame. The hot path (an update) decodes, applies to the server's Y.Doc,
   * publishes the original bytes to the document's topic and queues them for the store, all
   * synchronously: nothing awaits between receiving an update and fanning it out.
   *
   * Throws MalformedMessageError for input that must close the connection.
   */
  handle (ws: ClientSocket, conn: Connection, frame: Uint8Array): void {
    let message
    try {
      message = decodeClientMessage(frame)
    } catch (err) {
      this.metrics.received('invalid', frame.length)
      throw err
    }
    this.metrics.received(message.kind, frame.length)
    const doc = conn.doc
    switch (message.kind) {
      case 'sync-update':
      case 'sync-step2': {
        if (isEmptyUpdate(message.update)) return
        if (conn.readOnly) {
          this.refuseWrite(ws, conn)
          return
        }
        if (doc.wouldExceed(message.update.length, this.limits.maxDocumentBytes)) {
          this.refuseOversize(ws, conn)
          return
        }
        const forward = message.kind === 'sync-update' ? frame : step2FrameAsUpdateFrame(frame)
        // A client of the offline-batch extension that comes back brings its offline edits in this
        // sync step 2 (the stock provider sends them before the batch): that is the merge.
        if (message.kind === 'sync-step2' && conn.offlineBatches && this.versions !== null) {
          this.commitOfflineMerge(doc, message.update, forward, ws, conn, this.versions)
          return
        }
        try {
          this.changes.commit(doc, message.update, forward, conn, ws, 'always')
        } catch (err) {
          if (err instanceof UpdateRejectedError) throw new MalformedMessageError(`update rejected: ${err.message}`)
          throw err
        }
        return
      }
      case 'sync-step1': {
        if (conn.offlineBatches) conn.clientStateVector = message.stateVector.slice()
        // A large document in paced chunks, a small one in one message.
        let answer
        try {
          answer = doc.stateChunks(message.stateVector, this.limits.chunks) ?? doc.encodeStateAsUpdate(message.stateVector)
        } catch (err) {
          throw new MalformedMessageError(`invalid state vector: ${(err as Error).message}`)
        }
        if (answer instanceof Uint8Array) sendTo(ws, this.metrics, 'sync-step2', encodeSyncStep2(answer))
        else this.paced.send(conn, answer, 'sync-step2')
        return
      }
      case 'awareness':
        this.changes.commitAwareness(doc, message.update, frame, conn, ws)
        return
      case 'query-awareness':
        // Answered at most once per QUERY_AWARENESS_INTERVAL_MS per connection: presence reaches
        // every client anyway as it changes.
        if (performance.now() - conn.awarenessQueriedAt < QUERY_AWARENESS_INTERVAL_MS) return
        conn.awarenessQueriedAt = performance.now()
        this.sendAwareness(ws, conn)
        return
      case 'offline-batch':
        this.offlineBatches.handle(ws, conn, message.body)
    }
  }

  /** Removes the closed connection's presence for everyone else, on this node and the others. */
  closed (conn: Connection): void {
    this.changes.removePresence(conn.doc, conn)
  }

  /** Everyone's presence, from the document's cached encoding. */
  private sendAwareness (ws: ClientSocket, conn: Connection): void {
    let frame
    try {
      frame = conn.doc.presence.frame()
    } catch (err) {
      // States are bounded when they arrive; should one still fail to encode, the join goes on
      // without presence rather than failing because of someone else's state.
      conn.log.error({ err }, 'presence could not be encoded for this connection')
      return
    }
    if (frame !== null) sendTo(ws, this.metrics, 'awareness', frame)
  }

  /**
   * The document is at MAX_DOCUMENT_BYTES: the update is dropped (not applied, forwarded or stored)
   * and the client told once with a permission-denied message. The connection stays open: closing
   * it would only make the client reconnect and send the same update again.
   */
  private refuseOversize (ws: ClientSocket, conn: Connection): void {
    if (conn.sizeLimitNotified) return
    conn.sizeLimitNotified = true
    const limit = this.limits.maxDocumentBytes
    conn.log.info({ limit }, 'write refused: document size limit reached')
    sendTo(ws, this.metrics, 'auth', encodePermissionDenied(`document size limit reached (${limit} bytes): updates are not accepted`))
  }

  private refuseWrite (ws: ClientSocket, conn: Connection): void {
    if (conn.deniedNotified) return
    conn.deniedNotified = true
    conn.log.info('write refused: read-only connection')
    sendTo(ws, this.metrics, 'auth', encodePermissionDenied(READ_ONLY_REASON))
  }
}
