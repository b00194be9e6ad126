import type { Logger } from 'pino'
import type { WebSocket } from 'uWebSockets.js'
import type { LiveDocument } from '../documents/live-document.js'
import type { MessageKind, Metrics } from '../metrics/metrics.js'
import { takeTokens, type RateLimits, type TokenBuckets } from './rate-limiter.js'

/**
 * What the uWS socket carries. uWS copies the own properties of the object given to `upgrade` onto
 * the socket, so the connection travels as one reference: its prototype (the lazy logger) survives
 * and the socket stays small.
 */
export interface SocketData {
  conn: Connection
}

export type ClientSocket = WebSocket<SocketData>

export interface ConnectionInit {
  docId: string
  userId: string
  readOnly: boolean
  doc: LiveDocument
  /** Opted in to offline batches (extension messages) with ?ext=offline-batch. */
  offlineBatches: boolean
  /** Token expiry (epoch ms); the connection is closed with 4401 then. */
  expiresAt: number | undefined
}

/** A slot in the connection table held by an upgrade until its socket opens or the upgrade fails. */
export interface Reservation {
  held: boolean
}

let nextConnectionId = 1

/**
 * Per-connection state. Thousands of these live at once, so everything is a plain field and what
 * most connections never use (a logger, an awareness set) is created on first use.
 */
export class Connection implements TokenBuckets {
  readonly id = nextConnectionId++
  readonly docId: string
  readonly userId: string
  readonly readOnly: boolean
  readonly doc: LiveDocument
  /** Opted in to offline batches: only then does it send or receive extension messages. */
  readonly offlineBatches: boolean
  /**
   * Offline-batch clients: the state vector of the client's last sync step 1 (what its document
   * held when it came back), to tell whether its merge overwrote anyone's newer work.
   */
  clientStateVector: Uint8Array | undefined = undefined
  readonly expiresAt: number | undefined
  /** Set by the close handler: the socket must not be used after that. */
  closed = false
  /** A read-only client is told once that its writes are refused, not once per write. */
  deniedNotified = false
  /** A write refused for the document size limit is reported once per connection. */
  sizeLimitNotified = false
  /** Awareness client ids this connection owns (null until it announces one). */
  awarenessClients: Set<number> | null = null
  /** When this connection's last query-awareness was answered (performance.now()). */
  awarenessQueriedAt = -Infinity
  /** The socket, from its `open` handler on (for closes decided away from a socket callback). */
  socket: ClientSocket | null = null
  /** The slot its upgrade reserved in the connection table, taken over when the socket opens. */
  reservation: Reservation | null = null
  /** Position in the expiry schedule's heap; -1 when not scheduled. */
  expiryIndex = -1
  messageTokens: number
  byteTokens: number
  refilledAt: number
  private childLog: Logger | null = null

  constructor (init: ConnectionInit, private readonly baseLog: Logger, private readonly limits: RateLimits) {
    this.docId = init.docId
    this.userId = init.userId
    this.readOnly = init.readOnly
    this.doc = init.doc
    this.offlineBatches = init.offlineBatches
    this.expiresAt = init.expiresAt
    // Full buckets: a reconnecting client's first sync step 2 may be large.
    this.messageTokens = limits.messagesBurst
    this.byteTokens = limits.bytesBurst
    this.refilledAt = performance.now()
  }

  /** A child logger with the connection's ids; built on first use (most connections never log). */
  get log (): Logger {
    this.childLog ??= this.baseLog.child({ connId: this.id, docId: this.docId, userId: this.userId })
    return this.childLog
  }

  /** Accounts for one incoming message; false when the connection is over its rate limits. */
  allowMessage (size: number): boolean {
    return takeTokens(this, this.limits, size)
  }
}

/** Sends one message to one socket and counts it. */
export function sendTo (ws: ClientSocket, metrics: Metrics, kind: MessageKind, message: Uint8Array): void {
  ws.send(message, true)
  metrics.sent(kind, message.length)
}
