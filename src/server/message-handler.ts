import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import { applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import { UpdateRejectedError } from '../documents/live-document.js'
import type { ClusterBridge } from '../cluster/bridge.js'
import type { LiveDocument } from '../documents/live-document.js'
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
import type { Connection } from './connection.js'
import { handleOfflineBatch, type BatchLimits } from './offline-batch.js'

export interface MessageContext {
  app: TemplatedApp
  writeBehind: WriteBehind
  /** Cluster mode: forwards what local clients send to the other nodes. */
  bridge: ClusterBridge | null
  batchLimits: BatchLimits
}

const READ_ONLY_REASON = 'read-only access: updates are not accepted'

/** What a connection receives first: the server's state vector (writers only) and who is present. */
export function greet (ws: WebSocket<Connection>, conn: Connection): void {
  ws.cork(() => {
    // Sync step 1 asks the client for what the server lacks; a read-only client may not give it.
    if (!conn.readOnly) ws.send(encodeSyncStep1(conn.doc.encodeStateVector()), true)
    const states = conn.doc.awareness.getStates()
    if (states.size > 0) {
      ws.send(encodeAwareness(encodeAwarenessUpdate(conn.doc.awareness, [...states.keys()])), true)
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
export function handleMessage (ctx: MessageContext, ws: WebSocket<Connection>, conn: Connection, frame: Uint8Array): void {
  const message = decodeClientMessage(frame)
  const doc = conn.doc
  switch (message.kind) {
    case 'sync-update':
    case 'sync-step2': {
      if (isEmptyUpdate(message.update)) return
      if (conn.readOnly) {
        refuseWrite(ws, conn)
        return
      }
      try {
        doc.applyClientUpdate(message.update, conn)
      } catch (err) {
        if (err instanceof UpdateRejectedError) {
          if (err.partial !== null) {
            // Part of the update integrated before Yjs failed: everyone must get exactly that part.
            const partialFrame = encodeSyncUpdate(err.partial)
            ctx.app.publish(doc.topic, partialFrame, true)
            ctx.bridge?.publishUpdate(doc, partialFrame)
            ctx.writeBehind.enqueue(doc.id, err.partial)
          }
          throw new MalformedMessageError(`update rejected: ${err.message}`)
        }
        throw err
      }
      const forward = message.kind === 'sync-update' ? frame : step2FrameAsUpdateFrame(frame)
      ws.publish(doc.topic, forward, true)
      ctx.bridge?.publishUpdate(doc, forward)
      // The frame's buffer belongs to uWS and dies with this callback: keep a copy.
      ctx.writeBehind.enqueue(doc.id, message.update.slice())
      return
    }
    case 'sync-step1':
      ws.send(encodeSyncStep2(doc.encodeStateAsUpdate(message.stateVector)), true)
      return
    case 'awareness':
      validateAwarenessUpdate(message.update)
      applyAwarenessUpdate(doc.awareness, message.update, conn)
      ws.publish(doc.topic, frame, true)
      ctx.bridge?.publishAwareness(doc, frame)
      return
    case 'query-awareness': {
      const states = doc.awareness.getStates()
      if (states.size > 0) ws.send(encodeAwareness(encodeAwarenessUpdate(doc.awareness, [...states.keys()])), true)
      return
    }
    case 'offline-batch':
      handleOfflineBatch(ctx, ws, conn, message.body, ctx.batchLimits)
  }
}

/** Removes the closed connection's presence for everyone else, on this node and the others. */
export function dropPresence (ctx: MessageContext, conn: Connection): void {
  if (conn.awarenessClients.size === 0) return
  const ids = [...conn.awarenessClients]
  const awareness = conn.doc.awareness
  removeAwarenessStates(awareness, ids, conn)
  // Encoded with each client's last clock and a null state, which every peer accepts as removal.
  const frame = encodeAwareness(encodeAwarenessUpdate(awareness, ids))
  ctx.app.publish(conn.doc.topic, frame, true)
  ctx.bridge?.publishAwareness(conn.doc, frame)
}

/**
 * Presence that was not renewed for 30 s (a client or a whole node that vanished without a close)
 * is dropped by the server's awareness; tell this node's clients.
 */
export function publishAwarenessTimeouts (app: TemplatedApp, doc: LiveDocument): void {
  doc.awareness.on('update', ({ removed }: { removed: number[] }, origin: unknown) => {
    if (origin !== 'timeout' || removed.length === 0 || doc.state === 'unloaded') return
    app.publish(doc.topic, encodeAwareness(encodeAwarenessUpdate(doc.awareness, removed)), true)
  })
}

function refuseWrite (ws: WebSocket<Connection>, conn: Connection): void {
  if (conn.deniedNotified) return
  conn.deniedNotified = true
  conn.log.info('write refused: read-only connection')
  ws.send(encodePermissionDenied(READ_ONLY_REASON), true)
}
