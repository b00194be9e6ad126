import { createHash, timingSafeEqual } from 'node:crypto'
import type { TemplatedApp } from 'uWebSockets.js'
import { AuthError, type TokenVerifier } from '../auth/principal.js'
import type { Revocations } from '../auth/revocations.js'
import { validateDocumentId } from '../documents/document-id.js'
import type { ParticipantDirectory } from '../documents/participants.js'
import { bearerToken, remoteAddress, requestToken, sendJson, trackAbort } from '../http/http-util.js'
import type { Metrics } from '../metrics/metrics.js'
import type { AddressRateLimit } from './address-rate-limit.js'
import { refuseDocumentAccess } from './document-access.js'
import type { Readiness } from './node-operations.js'

export interface HttpRouteContext {
  readiness: () => Promise<Readiness>
  verifier: TokenVerifier
  participants: ParticipantDirectory
  revocations: Revocations
  /** The upgrades' per-address limits: the participants route checks tokens too. */
  requestsPerAddress: AddressRateLimit
  metrics: Metrics
  /** When set, GET /metrics needs `Authorization: Bearer <token>` (the header only: query strings end up in proxy logs). */
  metricsToken: string | null
  /** Sets gauges that are read from live state just before a scrape. */
  refreshGauges: () => void
}

/** Plain HTTP endpoints: health, readiness, metrics, participants. */
export function registerHttpRoutes (app: TemplatedApp, ctx: HttpRouteContext): void {
  app.get('/healthz', res => { sendJson(res, 200, { status: 'ok' }) })

  // Anyone may ask, so the answer is a status word: what is wrong (store errors, hosts) goes to the
  // log and to the admin inspector.
  app.get('/readyz', res => {
    const abort = trackAbort(res)
    void ctx.readiness().then(result => {
      if (!abort.aborted) sendJson(res, result.ready ? 200 : 503, { status: result.status, ready: result.ready })
    })
  })

  const metricsToken = ctx.metricsToken === null ? null : digest(ctx.metricsToken)
  app.get('/metrics', (res, req) => {
    if (metricsToken !== null && !timingSafeEqual(digest(bearerToken(req)), metricsToken)) {
      sendJson(res, 401, { error: 'token_invalid', message: 'metrics token required' })
      return
    }
    const abort = trackAbort(res)
    ctx.refreshGauges()
    void ctx.metrics.registry.metrics().then(text => {
      if (abort.aborted) return
      res.cork(() => {
        res.writeStatus('200 OK').writeHeader('content-type', ctx.metrics.registry.contentType).end(text)
      })
    })
  })

  app.get('/documents/:docId/participants', (res, req) => {
    const docId = req.getParameter(0) ?? ''
    const token = requestToken(req)
    const abort = trackAbort(res)
    const idProblem = validateDocumentId(docId)
    if (idProblem !== null) {
      sendJson(res, 400, { error: 'invalid_document_id', message: idProblem })
      return
    }
    const address = remoteAddress(res)
    if (!ctx.requestsPerAddress.allow(address) || !ctx.requestsPerAddress.enter(address)) {
      sendJson(res, 429, { error: 'too_many_requests', message: 'too many requests from this address, retry later' }, { 'retry-after': '1' })
      return
    }
    void (async () => {
      try {
        const principal = await ctx.verifier.verify(token).finally(() => ctx.requestsPerAddress.leave(address))
        const refusal = await refuseDocumentAccess(principal, docId, 'read', ctx.revocations)
        if (refusal !== null) {
          if (!abort.aborted) sendJson(res, 403, refusal)
          return
        }
        const participants = await ctx.participants.list(docId)
        if (!abort.aborted) sendJson(res, 200, { docId, participants })
      } catch (err) {
        if (abort.aborted) return
        if (err instanceof AuthError) {
          sendJson(res, err.reason === 'unavailable' ? 503 : 401, { error: `token_${err.reason}`, message: err.message })
        } else {
          sendJson(res, 503, { error: 'unavailable', message: 'participant list unavailable' })
        }
      }
    })()
  })
}

/** The catch-all 404; registered after every other route. */
export function registerNotFound (app: TemplatedApp): void {
  app.any('/*', res => { sendJson(res, 404, { error: 'not_found' }) })
}

/** Fixed-length digests, so that the comparison takes the same time whatever the input. */
function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}
