import uWS from 'uWebSockets.js'
import type { ParticipantDirectory } from '../documents/participants.js'
import type { DocumentRegistry } from '../documents/registry.js'
import type { Metrics } from '../metrics/metrics.js'
import { CloseCode } from '../protocol/close-codes.js'
import { PresenceLimitError } from '../protocol/awareness-entries.js'
import { MalformedMessageError } from '../protocol/messages.js'
import type { ClientMessages } from './client-messages.js'
import type { Connection, SocketData } from './connection.js'
import type { ConnectionTable } from './connection-table.js'
import type { ExpirySchedule } from './expiry-schedule.js'
import type { OversizeCooldown } from './oversize-cooldown.js'
import type { PacedSends } from './paced-sends.js'

export interface SocketOptions {
  maxMessageBytes: number
  maxBackpressureBytes: number
  idleTimeoutSec: number
  /** For the log line of a rate-limited close. */
  rateLimits: { messagesPerSecond: number, bytesPerSecond: number }
}

export interface SocketDependencies {
  /** Answers the HTTP upgrade (authentication, the document's load). */
  upgrade: NonNullable<uWS.WebSocketBehavior<SocketData>['upgrade']>
  messages: ClientMessages
  paced: PacedSends
  oversize: OversizeCooldown
  connections: ConnectionTable
  participants: ParticipantDirectory
  registry: DocumentRegistry
  expiries: ExpirySchedule<Connection>
  metrics: Metrics
  debugLogging: boolean
}

/** uWS's close reason for a frame over maxPayloadLength. */
const UWS_TOO_BIG_REASON = 'Received too big message'

/** The expiry schedule's action: a connection whose token expired is closed with 4401. */
export function closeExpiredConnection (conn: Connection): void {
  if (conn.closed || conn.socket === null) return
  conn.log.info('closing: token expired')
  conn.socket.end(CloseCode.TokenExpired, 'token expired')
}

/**
 * The uWS WebSocket behaviour of the document endpoint: what happens when a socket opens, sends a
 * frame and closes. A throw escaping a uWS handler would take the process down, so each handler
 * contains its errors and closes only the connection concerned, with the code protocol.md gives.
 */
export function documentSocketBehavior (options: SocketOptions, deps: SocketDependencies): uWS.WebSocketBehavior<SocketData> {
  const { messages, paced, connections, participants, registry, expiries, metrics, debugLogging } = deps
  return {
    maxPayloadLength: options.maxMessageBytes,
    maxBackpressure: options.maxBackpressureBytes,
    // Skipping messages for a slow reader would leave its document silently diverged; closing it
    // makes the client reconnect and re-sync.
    closeOnBackpressureLimit: 1,
    idleTimeout: options.idleTimeoutSec,
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    upgrade: deps.upgrade,
    open: ws => {
      const conn = ws.getUserData().conn
      conn.socket = ws
      connections.add(conn)
      metrics.connections.inc()
      ws.subscribe(conn.doc.topic)
      participants.join(conn.docId, conn.userId)
      // The guard keeps the per-connection logger (created lazily) from being built for nothing.
      if (debugLogging) conn.log.debug({ readOnly: conn.readOnly }, 'connection opened')
      expiries.add(conn)
      try {
        messages.greet(ws, conn)
      } catch (err) {
        conn.log.error({ err }, 'closing: internal error while greeting')
        ws.end(CloseCode.InternalError, 'internal error')
      }
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData().conn
      if (!isBinary) {
        conn.log.info('closing: text frame')
        ws.end(CloseCode.UnsupportedData, 'binary frames only')
        return
      }
      if (!conn.allowMessage(message.byteLength)) {
        conn.log.warn({ limits: options.rateLimits }, 'closing: rate limit exceeded')
        ws.end(CloseCode.RateLimited, 'rate limit exceeded')
        return
      }
      try {
        messages.handle(ws, conn, new Uint8Array(message))
      } catch (err) {
        if (conn.closed) return
        if (err instanceof MalformedMessageError) {
          conn.log.info({ reason: err.message }, 'closing: malformed message')
          ws.end(CloseCode.MalformedMessage, 'malformed message')
        } else if (err instanceof PresenceLimitError) {
          conn.log.info({ reason: err.message }, 'closing: presence over its limits')
          ws.end(CloseCode.PresenceTooLarge, 'presence too large')
        } else {
          conn.log.error({ err }, 'closing: internal error while handling a message')
          ws.end(CloseCode.InternalError, 'internal error')
        }
      }
    },
    drain: ws => {
      const conn = ws.getUserData().conn
      try {
        paced.drained(conn)
      } catch (err) {
        conn.log.error({ err }, 'closing: internal error while sending')
        ws.end(CloseCode.InternalError, 'internal error')
      }
    },
    close: (ws, code, message) => {
      const conn = ws.getUserData().conn
      conn.closed = true
      conn.socket = null
      paced.closed(conn)
      expiries.remove(conn)
      connections.delete(conn)
      metrics.connections.dec()
      metrics.closes.labels(String(code)).inc()
      if (code === CloseCode.Abnormal && message.byteLength > 0) {
        // uWS's own reasons: "Received too big message", backpressure limit, idle timeout.
        const reason = Buffer.from(message).toString()
        conn.log.warn({ code, reason }, 'connection dropped by the server')
        if (reason.startsWith(UWS_TOO_BIG_REASON)) deps.oversize.strike(conn.docId, conn.userId)
      } else if (code === CloseCode.Abnormal && connections.closedWhileUpgrading(conn)) {
        metrics.upgradeDrops.inc()
        conn.log.warn({ code }, 'connection dropped by uWS as it was upgraded (uNetworking/uWebSockets#1928, fixed upstream, not in the pinned build): the client reconnects')
      } else if (code === CloseCode.Abnormal) {
        // uWS gives no reason when it drops a socket past MAX_BACKPRESSURE_BYTES, nor when the
        // client's connection vanished: said at info, so that a drop is never silent.
        conn.log.info({ code }, 'connection dropped without a close frame (the client vanished, or it fell MAX_BACKPRESSURE_BYTES behind)')
      } else if (debugLogging) {
        conn.log.debug({ code }, 'connection closed')
      }
      try {
        messages.closed(conn)
      } catch (err) {
        conn.log.error({ err }, 'failed to remove presence of closed connection')
      }
      participants.leave(conn.docId, conn.userId)
      registry.release(conn.doc)
    }
  }
}
