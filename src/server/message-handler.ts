import type { TemplatedApp } from 'uWebSockets.js'
import { applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import type { ClusterBridge } from '../cluster/bridge.js'
import type { LiveDocument } from '../documents/live-document.js'
import { UpdateRejectedError } from '../documents/live-document.js'
import type { Metrics, MessageKind } from '../metrics/metrics.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import { validateAwarenessUpdate } from '../protocol/awareness-validation.js'
import {
  decodeClientMessage,
  encodeAwareness,
  encodePermissionDenied,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  isEmptyUpdate,
  MalformedMessageError,
  step2FrameAsUpdateFrame
} from '../protocol/messages.js'
import type { ClientSocket, Connection } from './connection.js'
import { handleOfflineBatch, type BatchLimits } from './offline-batch.js'

export interface MessageContext {
  app: TemplatedApp
  writeBehind: WriteBehind
  /** Cluster mode: forwards what local clients send to the other nodes. */
  bridge: ClusterBridge | null
  batchLimits: BatchLimits
  /** Updates that would grow a document past this many bytes are refused (0 = no limit). */
  maxDocumentBytes: number
  metrics: Metrics
  /** Called after a change made on this node (by a client or the admin API); webhooks use it. */
  onLocalChange: ((docId: string) => void) | null
}

const READ_ONLY_REASON = 'read-only access: updates are not accepted'

/** Sends to one socket and counts it. */
export function sendTo (ctx: MessageContext, ws: ClientSocket, kind: MessageKind, message: Uint8Array): void {
  ws.send(message, true)
  ctx.metrics.sent(kind, message.length)
}

/** Publishes to every local subscriber of the document (the sender included) and counts it once. */
export function publishToAll (ctx: MessageContext, doc: LiveDocument, kind: MessageKind, message: Uint8Array): void {
  ctx.app.publish(doc.topic, message, true)
  ctx.metrics.sent(kind, message.length)
}

/**
 * Hands an update this node applied to everyone else: the document's local subscribers (all but
 * `sender`, which has it already), the other nodes, the store and the change webhook. Every change
 * made on this node, by a client, an offline batch or the admin API, leaves through here.
 * `update` may be borrowed (a view into uWS's frame): the store queue copies what it keeps.
 */
export function distributeUpdate (ctx: MessageContext, doc: LiveDocument, update: Uint8Array, frame: Uint8Array, sender: ClientSocket | null): void {
  if (sender === null) ctx.app.publish(doc.topic, frame, true)
  else sender.publish(doc.topic, frame, true)
  ctx.metrics.sent('sync-update', frame.length)
  ctx.bridge?.publishUpdate(doc, frame)
  ctx.writeBehind.enqueue(doc.id, update)
  ctx.onLocalChange?.(doc.id)
}

/** Part of an update integrated before Yjs failed: every replica must get exactly that part. */
export function distributePartial (ctx: MessageContext, doc: LiveDocument, err: UpdateRejectedError): void {
  if (err.partial !== null) distributeUpdate(ctx, doc, err.partial, encodeSyncUpdate(err.partial), null)
}

/** What a connection receives first: the server's state vector (writers only) and who is present. */
export function greet (ctx: MessageContext, ws: ClientSocket, conn: Connection): void {
  ws.cork(() => {
    // Sync step 1 asks the client for what the server lacks; a read-only client may not give it.
    if (!conn.readOnly) sendTo(ctx, ws, 'sync-step1', encodeSyncStep1(conn.doc.encodeStateVector()))
    const states = conn.doc.awareness.getStates()
    if (states.size > 0) {
      sendTo(ctx, ws, 'awareness', encodeAwareness(encodeAwarenessUpdate(conn.doc.awareness, [...states.keys()])))
    }
  })
}

/**
 * Handles one binary frame. The hot path (an update) decodes, applies to the server's Y.Doc,
 * publishes the original bytes to the document's topic and queues them for the store, all
 * synchronously: nothing awaits between receiving an update and fanning it out.
 *
 * Throws MalformedMessageError for input that must close the connection.
 */
export function handleMessage (ctx: MessageContext, ws: ClientSocket, conn: Connection, frame: Uint8Array): void {
  let message
  try {
    message = decodeClientMessage(frame)
  } catch (err) {
    ctx.metrics.received('invalid', frame.length)
    throw err
  }
  ctx.metrics.received(message.kind, frame.length)
  const doc = conn.doc
  switch (message.kind) {
    case 'sync-update':
    case 'sync-step2': {
      if (isEmptyUpdate(message.update)) return
      if (conn.readOnly) {
        refuseWrite(ctx, ws, conn)
        return
      }
      if (doc.wouldExceed(message.update.length, ctx.maxDocumentBytes)) {
        refuseOversize(ctx, ws, conn)
        return
      }
      const sampled = ctx.metrics.sampleThis()
      const started = sampled ? performance.now() : 0
      try {
        doc.applyClientUpdate(message.update, conn)
      } catch (err) {
        if (err instanceof UpdateRejectedError) {
          distributePartial(ctx, doc, err)
          throw new MalformedMessageError(`update rejected: ${err.message}`)
        }
        throw err
      }
      const applied = sampled ? performance.now() : 0
      const forward = message.kind === 'sync-update' ? frame : step2FrameAsUpdateFrame(frame)
      distributeUpdate(ctx, doc, message.update, forward, ws)
      if (sampled) {
        ctx.metrics.fanoutSeconds.observe((performance.now() - applied) / 1000)
        ctx.metrics.updateApplySeconds.observe((applied - started) / 1000)
      }
      return
    }
    case 'sync-step1': {
      let missing: Uint8Array
      try {
        missing = doc.encodeStateAsUpdate(message.stateVector)
      } catch (err) {
        throw new MalformedMessageError(`invalid state vector: ${(err as Error).message}`)
      }
      sendTo(ctx, ws, 'sync-step2', encodeSyncStep2(missing))
      return
    }
    case 'awareness':
      validateAwarenessUpdate(message.update)
      applyAwarenessUpdate(doc.awareness, message.update, conn)
      ws.publish(doc.topic, frame, true)
      ctx.metrics.sent('awareness', frame.length)
      ctx.bridge?.publishAwareness(doc, frame)
      return
    case 'query-awareness': {
      const states = doc.awareness.getStates()
      if (states.size > 0) sendTo(ctx, ws, 'awareness', encodeAwareness(encodeAwarenessUpdate(doc.awareness, [...states.keys()])))
      return
    }
    case 'offline-batch':
      handleOfflineBatch(ctx, ws, conn, message.body)
  }
}

/** Removes the closed connection's presence for everyone else, on this node and the others. */
export function dropPresence (ctx: MessageContext, conn: Connection): void {
  if (conn.awarenessClients === null || conn.awarenessClients.size === 0) return
  const ids = [...conn.awarenessClients]
  const awareness = conn.doc.awareness
  removeAwarenessStates(awareness, ids, conn)
  // Encoded with each client's last clock and a null state, which every peer accepts as removal.
  const frame = encodeAwareness(encodeAwarenessUpdate(awareness, ids))
  publishToAll(ctx, conn.doc, 'awareness', frame)
  ctx.bridge?.publishAwareness(conn.doc, frame)
}

/**
 * Presence that was not renewed for 30 s (a client or a whole node that vanished without a close)
 * is dropped by the server's awareness; tell this node's clients.
 */
export function publishAwarenessTimeouts (ctx: MessageContext, doc: LiveDocument): void {
  doc.awareness.on('update', ({ removed }: { removed: number[] }, origin: unknown) => {
    if (origin !== 'timeout' || removed.length === 0 || doc.state === 'unloaded') return
    publishToAll(ctx, doc, 'awareness', encodeAwareness(encodeAwarenessUpdate(doc.awareness, removed)))
  })
}

/**
 * The document is at MAX_DOCUMENT_BYTES: the update is dropped (not applied, forwarded or stored)
 * and the client told once with a permission-denied message. The connection stays open: closing
 * it would only make the client reconnect and send the same update again.
 */
function refuseOversize (ctx: MessageContext, ws: ClientSocket, conn: Connection): void {
  if (conn.sizeLimitNotified) return
  conn.sizeLimitNotified = true
  conn.log.info({ limit: ctx.maxDocumentBytes }, 'write refused: document size limit reached')
  sendTo(ctx, ws, 'auth', encodePermissionDenied(`document size limit reached (${ctx.maxDocumentBytes} bytes): updates are not accepted`))
}

function refuseWrite (ctx: MessageContext, ws: ClientSocket, conn: Connection): void {
  if (conn.deniedNotified) return
  conn.deniedNotified = true
  conn.log.info('write refused: read-only connection')
  sendTo(ctx, ws, 'auth', encodePermissionDenied(READ_ONLY_REASON))
}
