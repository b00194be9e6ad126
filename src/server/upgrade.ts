import type { Logger } from 'pino'
import type { HttpRequest, HttpResponse, us_socket_context_t } from 'uWebSockets.js'
import { AuthError, type TokenVerifier } from '../auth/principal.js'
import { validateDocumentId } from '../documents/document-id.js'
import { EXTENSIONS_PARAM } from '../protocol/extensions.js'
import type { Revocations } from '../auth/revocations.js'
import type { LimitsConfig } from '../config/config.js'
import { DocumentFullError, type DocumentRegistry } from '../documents/registry.js'
import type { Metrics } from '../metrics/metrics.js'
import { DocumentDeletedError } from '../persistence/document-store.js'
import { Connection, type SocketData } from './connection.js'
import type { AddressRateLimit } from './address-rate-limit.js'
import type { ConnectionTable } from './connection-table.js'
import type { OversizeCooldown } from './oversize-cooldown.js'
import { remoteAddress, requestToken, sendJson, trackAbort } from '../http/http-util.js'
import { DOCUMENT_PATH_PREFIX } from '../protocol/endpoints.js'
import { CloseCode } from '../protocol/close-codes.js'

export interface UpgradeContext {
  verifier: TokenVerifier
  registry: DocumentRegistry
  log: Logger
  metrics: Metrics
  limits: LimitsConfig
  revocations: Revocations
  upgradesPerAddress: AddressRateLimit
  connections: Pick<ConnectionTable, 'tryReserve' | 'release' | 'upgrade'>
  node: { readonly closing: boolean }
  oversize: OversizeCooldown
}

const AUTH_STATUS: Record<AuthError['reason'], number> = {
  missing: 401,
  invalid: 401,
  expired: 401,
  unavailable: 503
}

/**
 * Authenticates and authorizes a WebSocket upgrade, and loads the document, before upgrading:
 * a socket that opens is always allowed in and always sees the complete document.
 *
 * HTTP answers instead of an upgrade: 400 bad document id, 401 missing/invalid/expired token,
 * 403 no access to this document (or Origin not allowed, or access revoked), 410 document
 * deleted moments ago, 413 this user's last message to this document was over MAX_MESSAGE_BYTES
 * (for a while, see OversizeCooldown), 503 auth service or store unavailable, connection limits, shutting down.
 */
export function handleUpgrade (ctx: UpgradeContext, res: HttpResponse, req: HttpRequest, socketContext: us_socket_context_t): void {
  // Everything from `req` must be read now: it is only valid until this function returns.
  const url = req.getUrl()
  const docId = url.startsWith(DOCUMENT_PATH_PREFIX) ? url.slice(DOCUMENT_PATH_PREFIX.length) : ''
  const token = requestToken(req)
  const offlineBatches = req.getQuery(EXTENSIONS_PARAM.name) === EXTENSIONS_PARAM.value
  const secKey = req.getHeader('sec-websocket-key')
  const secProtocol = req.getHeader('sec-websocket-protocol').split(',')[0]?.trim() ?? ''
  const secExtensions = req.getHeader('sec-websocket-extensions')
  const origin = req.getHeader('origin')
  const address = remoteAddress(res)
  const connectionHeader = req.getHeader('connection')
  const abort = trackAbort(res)
  const refuse = (status: number, error: string, message: string, headers: Record<string, string> = {}): void => {
    ctx.metrics.upgrades.labels(String(status)).inc()
    if (!abort.aborted) sendJson(res, status, { error, message }, headers)
  }

  if (ctx.node.closing) {
    refuse(503, 'shutting_down', 'server is shutting down')
    return
  }
  if (!ctx.upgradesPerAddress.allow(address)) {
    refuse(429, 'too_many_upgrades', 'too many connection attempts from this address, retry later', { 'retry-after': '1' })
    return
  }
  // RFC 6455 4.2.1: a handshake whose Connection header lacks the "Upgrade" token is not one.
  // Refusing it also keeps uWS's HTTP "Connection: close" handling (set for any 5-character
  // Connection value) away from res.upgrade below, where it would close the socket mid-upgrade.
  if (!connectionHeader.split(',').some(token => token.trim().toLowerCase() === 'upgrade')) {
    refuse(400, 'bad_handshake', 'the Connection header must include "Upgrade"')
    return
  }
  const idProblem = validateDocumentId(docId)
  if (idProblem !== null) {
    refuse(400, 'invalid_document_id', idProblem)
    return
  }
  const origins = ctx.limits.allowedOrigins
  // Browsers always send Origin; other clients may omit it and are judged by their token alone.
  if (origins !== null && origin !== '' && !origins.includes('*') && !origins.includes(origin)) {
    refuse(403, 'origin_not_allowed', 'this Origin may not connect')
    return
  }
  const slot = ctx.connections.tryReserve(ctx.limits.maxConnections)
  if (slot === null) {
    ctx.log.warn({ limit: ctx.limits.maxConnections }, 'upgrade refused: MAX_CONNECTIONS reached')
    refuse(503, 'server_full', 'too many connections on this node, retry later', { 'retry-after': '5' })
    return
  }

  if (!ctx.upgradesPerAddress.enter(address)) {
    ctx.connections.release(slot)
    refuse(429, 'too_many_upgrades', 'too many connection attempts from this address in progress, retry later', { 'retry-after': '1' })
    return
  }

  void (async () => {
    let principal
    try {
      principal = await ctx.verifier.verify(token).finally(() => ctx.upgradesPerAddress.leave(address))
    } catch (err) {
      const authError = err instanceof AuthError ? err : new AuthError('invalid', 'token rejected')
      ctx.metrics.authFailures.labels(authError.reason).inc()
      ctx.log.debug({ docId, reason: authError.reason, detail: authError.message }, 'upgrade refused: authentication')
      refuse(AUTH_STATUS[authError.reason], `token_${authError.reason}`, authError.message,
        authError.reason === 'unavailable' ? {} : { 'www-authenticate': 'Bearer' })
      return
    }
    const access = principal.policy.accessFor(docId)
    if (access === 'none') {
      ctx.metrics.authFailures.labels('forbidden').inc()
      ctx.log.debug({ docId, userId: principal.userId }, 'upgrade refused: no access to document')
      refuse(403, 'forbidden', 'token does not grant access to this document')
      return
    }
    if (await ctx.revocations.isRevoked(docId, principal.userId)) {
      ctx.metrics.authFailures.labels('revoked').inc()
      refuse(403, 'access_revoked', 'access to this document was revoked')
      return
    }
    const wait = ctx.oversize.retryAfterSeconds(docId, principal.userId)
    if (wait > 0) {
      refuse(413, 'message_too_large', `a message this client sent to this document was larger than the server accepts (MAX_MESSAGE_BYTES); retry in ${wait} s`, { 'retry-after': String(wait) })
      return
    }
    if (abort.aborted) return

    let doc
    try {
      // The per-document limit is checked inside acquire, before it awaits the load.
      doc = await ctx.registry.acquire(docId, ctx.limits.maxConnectionsPerDocument)
    } catch (err) {
      if (err instanceof DocumentFullError) {
        ctx.log.warn({ docId, limit: ctx.limits.maxConnectionsPerDocument }, 'upgrade refused: MAX_CONNECTIONS_PER_DOCUMENT reached')
        refuse(503, 'document_full', 'too many connections to this document, retry later', { 'retry-after': '5' })
      } else if (err instanceof DocumentDeletedError) {
        refuse(410, 'document_deleted', 'the document was deleted')
      } else {
        refuse(503, 'document_unavailable', 'document could not be loaded, retry later')
      }
      return
    }
    if (abort.aborted || ctx.node.closing) {
      ctx.registry.release(doc)
      refuse(503, 'shutting_down', 'server is shutting down')
      return
    }
    const data: SocketData = {
      conn: new Connection({
        docId,
        userId: principal.userId,
        readOnly: access === 'read-only',
        doc,
        offlineBatches,
        expiresAt: principal.expiresAt
      }, ctx.log, ctx.limits)
    }
    ctx.metrics.upgrades.labels('101').inc()
    // A known uWS bug (uNetworking/uWebSockets#1928, fixed upstream by #1929, not in the pinned
    // build): when cork()'s handler upgraded the socket and the poll's realloc kept its address,
    // cork() goes on to run its HTTP "Connection: close" check on memory that now belongs to the
    // WebSocket (or to malloc); now and then that closes the socket it has just opened (measured: one
    // upgrade in 4,000 to 12,000 on loopback), and the client sees 1006 and reconnects. Upgrading
    // outside cork() avoids it but makes uWS.js print a warning to stderr on every upgrade and
    // send the 101 in ~24 small writes, which is worse for operators; keep cork() until a uWS
    // build with the fix can be pinned. `connections.upgrade` lets the close handler name it, so
    // it must enclose the whole cork(): the close comes after res.upgrade returns.
    data.conn.reservation = slot
    try {
      ctx.connections.upgrade(data.conn, () => {
        res.cork(() => {
          res.upgrade(data, secKey, secProtocol, secExtensions, socketContext)
        })
      })
    } catch (err) {
      // A socket that never opened leaves its document here and gets its 500 below.
      if (data.conn.socket === null && !data.conn.closed) {
        ctx.registry.release(doc)
        throw err
      }
      // Once uWS opened the socket the response is gone: a half set-up connection is closed (it
      // re-syncs on reconnect) and its close handler gives the document back.
      ctx.log.error({ err, docId }, 'upgrade failed')
      data.conn.socket?.end(CloseCode.InternalError, 'internal error')
    }
  })().catch(err => {
    ctx.log.error({ err, docId }, 'upgrade failed')
    if (!abort.aborted) sendJson(res, 500, { error: 'internal', message: 'internal error' })
  }).finally(() => {
    // uWS opens the socket inside upgrade(), which takes the slot; on every other path it is free.
    ctx.connections.release(slot)
  })
}
