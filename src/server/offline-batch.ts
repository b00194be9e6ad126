import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import { UpdateRejectedError } from '../documents/live-document.js'
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
import { encodeSyncUpdate, MalformedMessageError } from '../protocol/messages.js'
import type { ClientSocket, Connection } from './connection.js'
import { distributePartial, distributeUpdate, sendTo, type MessageContext } from './message-handler.js'

export interface BatchLimits {
  maxUpdates: number
  maxBytes: number
}

/** Acknowledged batch ids remembered per document, for resends; older ones rely on Yjs idempotence. */
const REMEMBERED_BATCHES = 1000

/**
 * An offline batch: decoded and validated whole, merged into one update, applied, fanned out
 * once (locally and to other nodes), written to the store with the write awaited, and only then
 * acknowledged. A batch id already acknowledged is acknowledged again with no second effect.
 *
 * Throws MalformedMessageError when the frame itself cannot be read (the connection is closed);
 * a batch that reads but is invalid only gets an error message.
 */
export function handleOfflineBatch (ctx: MessageContext, ws: ClientSocket, conn: Connection, body: Uint8Array): void {
  const limits = ctx.batchLimits
  if (!conn.extensions) throw new MalformedMessageError('extension message on a connection without ?ext=offline-batch')
  let batch
  try {
    batch = readOfflineBatchBody(decoding.createDecoder(body), limits.maxUpdates)
  } catch (err) {
    if (err instanceof BatchTooLargeError) {
      sendError(ctx, ws, err.batchId, ExtensionErrorCode.BatchTooLarge, err.message)
      return
    }
    throw new MalformedMessageError(`offline batch: ${(err as Error).message}`)
  }
  const { batchId } = batch
  if (conn.readOnly) {
    sendError(ctx, ws, batchId, ExtensionErrorCode.PermissionDenied, 'read-only access: updates are not accepted')
    return
  }
  const bytes = batch.updates.reduce((sum, u) => sum + u.length, 0)
  if (bytes > limits.maxBytes) {
    sendError(ctx, ws, batchId, ExtensionErrorCode.BatchTooLarge, `batch has ${bytes} bytes, at most ${limits.maxBytes} are accepted`)
    return
  }

  const doc = conn.doc
  const key = `${conn.userId}\0${batchId}`
  const known = doc.batches.get(key) as Promise<BatchAck> | undefined
  if (known !== undefined) {
    void known.then(ack => { if (!conn.closed) sendTo(ctx, ws, 'extension', encodeBatchAck(ack)) }, () => {})
    return
  }

  // Validate everything before touching the document: one bad update rejects the whole batch.
  let merged: Uint8Array
  try {
    merged = batch.updates.length === 1 ? batch.updates[0]!.slice() : Y.mergeUpdates(batch.updates)
    Y.decodeUpdate(merged)
  } catch (err) {
    conn.log.info({ batchId, reason: (err as Error).message }, 'offline batch rejected: malformed update')
    sendError(ctx, ws, batchId, ExtensionErrorCode.MalformedBatch, 'an update in the batch does not decode; nothing was applied')
    return
  }

  if (doc.wouldExceed(merged.length, ctx.maxDocumentBytes)) {
    sendError(ctx, ws, batchId, ExtensionErrorCode.DocumentTooLarge, `the document would grow past ${ctx.maxDocumentBytes} bytes`)
    return
  }
  const stateVectorBefore = doc.encodeStateVector()
  let changed: boolean
  try {
    changed = doc.applyAndReportChange(merged, conn)
  } catch (err) {
    if (err instanceof UpdateRejectedError) distributePartial(ctx, doc, err)
    sendError(ctx, ws, batchId, ExtensionErrorCode.MalformedBatch, 'the batch failed to apply')
    throw new MalformedMessageError(`offline batch failed to apply: ${(err as Error).message}`)
  }
  if (changed) distributeUpdate(ctx, doc, merged, encodeSyncUpdate(merged), ws)
  const stateVectorAfter = doc.encodeStateVector()

  // The acknowledgement promises durability: write now (everything pending for this document,
  // which includes the batch or the earlier copy of its content), and wait for the store.
  const durable = ctx.writeBehind.flush([doc.id]).then((): BatchAck => ({
    batchId,
    outcome: changed ? BatchOutcome.Applied : BatchOutcome.AlreadyApplied,
    stateVectorBefore,
    stateVectorAfter
  }))
  remember(doc.batches, key, durable)
  durable.then(ack => {
    conn.log.debug({ batchId, updates: batch.updates.length, bytes, changed }, 'offline batch acknowledged')
    ctx.metrics.offlineBatches.labels(changed ? 'applied' : 'already-applied').inc()
    if (!conn.closed) sendTo(ctx, ws, 'extension', encodeBatchAck(ack))
  }, err => {
    doc.batches.delete(key)
    ctx.metrics.offlineBatches.labels('store-failed').inc()
    conn.log.warn({ batchId, err: (err as Error).message }, 'offline batch not acknowledged: store write failed')
    if (!conn.closed) sendError(ctx, ws, batchId, ExtensionErrorCode.StoreUnavailable, 'the merge could not be stored yet; resend the batch later')
  })
}

function remember (batches: Map<string, Promise<unknown>>, key: string, ack: Promise<BatchAck>): void {
  batches.set(key, ack)
  if (batches.size > REMEMBERED_BATCHES) {
    const oldest = batches.keys().next().value
    if (oldest !== undefined) batches.delete(oldest)
  }
}

function sendError (ctx: MessageContext, ws: ClientSocket, batchId: string, code: ExtensionErrorCodeValue, message: string): void {
  const conn = ws.getUserData().conn
  if (conn.closed || !conn.extensions) return
  if (code !== ExtensionErrorCode.StoreUnavailable) ctx.metrics.offlineBatches.labels('rejected').inc()
  sendTo(ctx, ws, 'extension', encodeExtensionError({ batchId, code, message }))
}
