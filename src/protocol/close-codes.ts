/**
 * WebSocket close codes the server uses; protocol.md documents each one. y-websocket 1.x and 2.x
 * reconnect after any of them; 3.x stops after 4400-4499, used here for what reconnecting cannot
 * fix (an expired token, revoked access, a deleted document, presence over its limits).
 */
export const CloseCode = {
  /** The server is shutting down (SIGTERM/SIGINT); reconnect, possibly to another node. */
  GoingAway: 1001,
  /** A text frame: the protocol is binary only. */
  UnsupportedData: 1003,
  /** A frame that does not decode, or a Yjs update / awareness update that fails to apply. */
  MalformedMessage: 1007,
  /**
   * Not sent: what a client observes when uWebSockets.js drops its TCP connection without a close
   * frame, for a frame larger than MAX_MESSAGE_BYTES or a socket past MAX_BACKPRESSURE_BYTES.
   * The server logs the cause.
   */
  Abnormal: 1006,
  /** An unexpected server error while handling this connection's message. */
  InternalError: 1011,
  /** The token's `exp` passed: reconnect with a fresh token. */
  TokenExpired: 4401,
  /** The user's access to this document was revoked (admin API); reconnecting gets HTTP 403. */
  AccessRevoked: 4403,
  /** The document was deleted through the admin API; reconnecting gets HTTP 410 for a while. */
  DocumentDeleted: 4404,
  /**
   * An awareness state over MAX_AWARENESS_STATE_BYTES or MAX_AWARENESS_STATE_DEPTH, or more
   * awareness client ids than MAX_AWARENESS_CLIENTS_PER_CONNECTION; nothing of it was applied.
   */
  PresenceTooLarge: 4413,
  /**
   * The connection kept sending faster than RATE_LIMIT_* allow, past its burst. In 4500-4599, the
   * "try again later" range: y-websocket 3.x reconnects after it, and stops for good after
   * 4400-4499 (which 4429 was, so a rate-limited 3.x client never came back).
   */
  RateLimited: 4529
} as const

export type CloseCodeValue = typeof CloseCode[keyof typeof CloseCode]
