import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import type { DocumentChanges } from '../documents/document-changes.js'
import type { Metrics } from '../metrics/metrics.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import {
  BatchOutcome,
  BatchTooLargeError,
  encodeBatchAck,
  encodeExtensionError,
  ExtensionErrorCode,
  readOfflineBatchBody,
  type BatchAck,
  type ExtensionErrorCodeValue
} from '../protocol/extensions.js'
import { MalformedMessageError } from '../protocol/messages.js'
import type { VersionHistory } from '../versions/version-history.js'
import { sendTo, type ClientSocket, type Connection } from './connection.js'

export interface BatchLimits {
  maxUpdates: number
  maxBytes: number
  /** Documents are not grown past this many bytes (0 = no limit). */
  maxDocumentBytes: number
}

/** Acknowledged batch ids remembered per document, for resends; older ones rely on Yjs idempotence. */
const REMEMBERED_BATCHES = 1000

/**
 * Offline batches: each is decoded and validated whole, merged into one update, committed (fanned
 * out once, locally and to other nodes), written to the store with the write awaited, and only
 * then acknowledged. A batch id already acknowledged is acknowledged again with no second effect.
 */
export class OfflineBatches {
  constructor (
    private readonly changes: DocumentChanges,
    private readonly writeBehind: WriteBehind,
    private readonly limits: BatchLimits,
    private readonly metrics: Metrics,
    /** Takes a version before a merge that changes the document (FR-CS-011). */
    private readonly versions: VersionHistory | null = null
  ) {}

  /**
   * Throws MalformedMessageError when the frame itself cannot be read (the connection is closed);
   * a batch that reads but is invalid only gets an error message.
   */
  handle (ws: ClientSocket, conn: Connection, body: Uint8Array): void {
    const limits = this.limits
    if (!conn.offlineBatches) throw new MalformedMessageError('extension message on a connection without ?ext=offline-batch')
    let batch
    try {
      batch = readOfflineBatchBody(decoding.createDecoder(body), limits.maxUpdates)
    } catch (err) {
      if (err instanceof BatchTooLargeError) {
        this.sendError(ws, conn, err.batchId, ExtensionErrorCode.BatchTooLarge, err.message)
        return
      }
      throw new MalformedMessageError(`offline batch: ${(err as Error).message}`)
    }
    const { batchId } = batch
    if (conn.readOnly) {
      this.sendError(ws, conn, batchId, ExtensionErrorCode.PermissionDenied, 'read-only access: updates are not accepted')
      return
    }
    const bytes = batch.updates.reduce((sum, u) => sum + u.length, 0)
    if (bytes > limits.maxBytes) {
      this.sendError(ws, conn, batchId, ExtensionErrorCode.BatchTooLarge, `batch has ${bytes} bytes, at most ${limits.maxBytes} are accepted`)
      return
    }

    const doc = conn.doc
    const key = `${conn.userId}\0${batchId}`
    const known = doc.batches.get(key)
    if (known !== undefined) {
      void known.then(ack => { if (!conn.closed) sendTo(ws, this.metrics, 'extension', encodeBatchAck(ack)) }, () => {})
      return
    }

    // Validate everything before touching the document: one bad update rejects the whole batch.
    let merged: Uint8Array
    try {
      merged = batch.updates.length === 1 ? batch.updates[0]!.slice() : Y.mergeUpdates(batch.updates)
      Y.decodeUpdate(merged)
    } catch (err) {
      conn.log.info({ batchId, reason: (err as Error).message }, 'offline batch rejected: malformed update')
      this.sendError(ws, conn, batchId, ExtensionErrorCode.MalformedBatch, 'an update in the batch does not decode; nothing was applied')
      return
    }

    if (doc.wouldExceed(merged.length, limits.maxDocumentBytes)) {
      this.sendError(ws, conn, batchId, ExtensionErrorCode.DocumentTooLarge, `the document would grow past ${limits.maxDocumentBytes} bytes`)
      return
    }
    const stateVectorBefore = doc.encodeStateVector()
    const versionAfter = this.versions?.planOfflineMerge(doc, batch.syncedStateVector) ?? null
    let changed: boolean
    try {
      changed = this.changes.commit(doc, merged, null, conn, ws, 'if-changed')
    } catch (err) {
      void versionAfter?.(false)
      // The part Yjs integrated before failing (if any) was committed like any other change.
      this.sendError(ws, conn, batchId, ExtensionErrorCode.MalformedBatch, 'the batch failed to apply')
      throw new MalformedMessageError(`offline batch failed to apply: ${(err as Error).message}`)
    }
    const stateVectorAfter = doc.encodeStateVector()

    // The acknowledgement promises durability: write now (everything pending for this document,
    // which includes the batch or the earlier copy of its content), and wait for the store.
    // The version of what the document was before it; a version that cannot be written does not
    // hold back the acknowledgement of a durable merge (its id is then empty).
    const versionId = versionAfter === null
      ? Promise.resolve('')
      : versionAfter(changed).catch(err => { conn.log.warn({ batchId, err: (err as Error).message }, 'version before an offline merge not taken'); return '' })
    const durable = Promise.all([this.writeBehind.flush([doc.id]), versionId]).then(([, id]): BatchAck => ({
      batchId,
      outcome: changed ? BatchOutcome.Applied : BatchOutcome.AlreadyApplied,
      stateVectorBefore,
      stateVectorAfter,
      versionId: id
    }))
    remember(doc.batches, key, durable)
    durable.then(ack => {
      conn.log.debug({ batchId, updates: batch.updates.length, bytes, changed }, 'offline batch acknowledged')
      this.metrics.offlineBatches.labels(changed ? 'applied' : 'already-applied').inc()
      if (!conn.closed) sendTo(ws, this.metrics, 'extension', encodeBatchAck(ack))
    }, err => {
      doc.batches.delete(key)
      this.metrics.offlineBatches.labels('store-failed').inc()
      conn.log.warn({ batchId, err: (err as Error).message }, 'offline batch not acknowledged: store write failed')
      if (!conn.closed) this.sendError(ws, conn, batchId, ExtensionErrorCode.StoreUnavailable, 'the merge could not be stored yet; resend the batch later')
    })
  }

  private sendError (ws: ClientSocket, conn: Connection, batchId: string, code: ExtensionErrorCodeValue, message: string): void {
    if (conn.closed || !conn.offlineBatches) return
    if (code !== ExtensionErrorCode.StoreUnavailable) this.metrics.offlineBatches.labels('rejected').inc()
    sendTo(ws, this.metrics, 'extension', encodeExtensionError({ batchId, code, message }))
  }
}

function remember (batches: Map<string, Promise<BatchAck>>, key: string, ack: Promise<BatchAck>): void {
  batches.set(key, ack)
  if (batches.size > REMEMBERED_BATCHES) {
    const oldest = batches.keys().next().value
    if (oldest !== undefined) batches.delete(oldest)
  }
}
