import type { Logger } from 'pino'
import type { LiveDocument } from '../documents/live-document.js'
import type { RateLimiter } from './rate-limiter.js'

/** Per-connection state, attached to the uWS socket at upgrade (ws.getUserData()). */
export interface Connection {
  id: number
  docId: string
  userId: string
  readOnly: boolean
  doc: LiveDocument
  log: Logger
  /** Set by the close handler: the socket must not be used after that. */
  closed: boolean
  /** Awareness client ids this connection announced; removed for everyone when it closes. */
  awarenessClients: Set<number>
  /** A read-only client is told once that its writes are refused, not once per write. */
  deniedNotified: boolean
  /** Opted in to extension messages (offline batches) with ?ext=offline-batch. */
  extensions: boolean
  limiter: RateLimiter
  /** Token expiry (epoch ms); the connection is closed with 4401 then. */
  expiresAt: number | undefined
  expiryTimer: NodeJS.Timeout | null
  /** A write refused for the document size limit is reported once per connection. */
  sizeLimitNotified: boolean
}

let nextConnectionId = 1

export function newConnectionId (): number {
  return nextConnectionId++
}
