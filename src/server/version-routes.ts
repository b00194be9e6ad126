import type { Logger } from 'pino'
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { AuthError, type Principal, type TokenVerifier } from '../auth/principal.js'
import type { Revocations } from '../auth/revocations.js'
import type { DocumentChanges } from '../documents/document-changes.js'
import type { ChunkSize } from '../documents/state-chunks.js'
import { validateDocumentId } from '../documents/document-id.js'
import type { LiveDocument } from '../documents/live-document.js'
import type { DocumentRegistry } from '../documents/registry.js'
import { BodyTooLargeError, bearerToken, readBody, remoteAddress, sendBinary, sendJson, sendJsonText, trackAbort } from '../http/http-util.js'
import { DocumentDeletedError, type DocumentStore } from '../persistence/document-store.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import { snapshotPieces, snapshotState } from '../versions/state-snapshot.js'
import { StateWorkerBusyError, StateWorkerError, type StateWorker } from '../versions/state-worker.js'
import { isVersionId } from '../versions/version-id.js'
import { VersionHistoryFullError, type VersionHistory } from '../versions/version-history.js'
import type { AddressRateLimit } from './address-rate-limit.js'
import { refuseDocumentAccess, type DocumentNeed } from './document-access.js'

export interface VersionRouteContext {
  verifier: TokenVerifier
  revocations: Revocations
  registry: DocumentRegistry
  store: DocumentStore
  versions: VersionHistory
  changes: DocumentChanges
  writeBehind: WriteBehind
  /** Restores, diffs and versions as JSON are computed there, off the event loop. */
  stateWorker: StateWorker
  /** Large states are encoded in pieces of this size, one per turn (as large updates are sent). */
  chunks: ChunkSize
  requestsPerAddress: AddressRateLimit
  log: Logger
  /** Restores never grow a document past this (0: no limit). */
  maxDocumentBytes: number
  /** Diffs of larger pairs of states are refused with 413. */
  maxDiffBytes: number
  /** Cluster mode: waits for the other nodes' answer to a fresh load's sync request. */
  awaitPeers: ((doc: LiveDocument) => Promise<void>) | null
}


const MAX_LABEL_LENGTH = 200
const MAX_LIST_LIMIT = 1_000
const MAX_REQUEST_BODY_BYTES = 16 * 1024
/** Diffs computed at once on one node: each holds both states, decoded, in memory. */
const MAX_CONCURRENT_DIFFS = 1

class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

interface Request {
  docId: string
  versionId: string | null
  query: URLSearchParams
  body: Uint8Array | null
}

type Handler = (res: HttpResponse, request: Request, principal: Principal, abort: { readonly aborted: boolean }) => Promise<void>

/**
 * The version history API: /documents/{docId}/versions... with `Authorization: Bearer`. The
 * document's own rules decide, as for the WebSocket: read access lists and reads, write access
 * creates and restores, an admin token may also delete; a revoked user is refused. Works on any
 * node, for documents nobody has open (they are loaded for the request and released after).
 */
export function registerVersionRoutes (app: TemplatedApp, ctx: VersionRouteContext): void {
  let diffsRunning = 0
  const route = (method: 'get' | 'post' | 'del', pattern: string, need: DocumentNeed, handler: Handler, options: { body?: boolean } = {}): void => {
    app[method](pattern, (res, req) => {
      const docId = req.getParameter(0) ?? ''
      const versionId = pattern.includes(':versionId') ? req.getParameter(1) ?? '' : null
      const query = new URLSearchParams(req.getQuery() ?? '')
      // The header only: a token in the query string would end up in proxies' logs.
      const token = bearerToken(req)
      const address = remoteAddress(res)
      const abort = trackAbort(res)
      const body = options.body === true ? readBody(res, MAX_REQUEST_BODY_BYTES) : null
      body?.catch(() => {})
      void (async () => {
        try {
          const problem = validateDocumentId(docId)
          if (problem !== null) throw new HttpError(400, 'invalid_document_id', problem)
          if (versionId !== null && !isVersionId(versionId)) throw new HttpError(400, 'invalid_version_id', 'a version id is 1-64 characters of A-Z a-z 0-9 _ -')
          // The same per-address bounds as the upgrade: one host cannot take every token check.
          if (!ctx.requestsPerAddress.allow(address) || !ctx.requestsPerAddress.enter(address)) throw new HttpError(429, 'too_many_requests', 'too many requests from this address, retry later')
          const principal = await ctx.verifier.verify(token).finally(() => ctx.requestsPerAddress.leave(address))
          const refusal = await refuseDocumentAccess(principal, docId, need, ctx.revocations)
          if (refusal !== null) throw new HttpError(403, refusal.error, refusal.message)
          await handler(res, { docId, versionId, query, body: body === null ? null : await body }, principal, abort)
        } catch (err) {
          if (abort.aborted) return
          if (err instanceof HttpError) sendJson(res, err.status, { error: err.code, message: err.message }, err.status === 429 ? { 'retry-after': '1' } : {})
          else if (err instanceof AuthError) sendJson(res, err.reason === 'unavailable' ? 503 : 401, { error: `token_${err.reason}`, message: err.message })
          else if (err instanceof BodyTooLargeError) sendJson(res, 413, { error: 'too_large', message: err.message })
          else if (err instanceof DocumentDeletedError) sendJson(res, 410, { error: 'document_deleted', message: err.message })
          else if (err instanceof StateWorkerBusyError) sendJson(res, 429, { error: 'too_many_requests', message: 'this node is computing other restores, diffs or exports; retry in a moment' }, { 'retry-after': '1' })
          else if (err instanceof StateWorkerError) {
            // Before the store's failures: a thread that ran out of memory says "terminated".
            ctx.log.error({ err, docId, versionId }, 'version computation failed')
            sendJson(res, 500, { error: 'internal', message: 'the computation failed; see the server log' })
          }
          else if (err instanceof VersionHistoryFullError) sendJson(res, 409, { error: 'version_history_full', message: err.message })
          else if (isStoreFailure(err)) sendJson(res, 503, { error: 'unavailable', message: 'version history unavailable, retry later' })
          else {
            ctx.log.error({ err, docId, versionId }, 'version request failed')
            sendJson(res, 500, { error: 'internal', message: 'the request failed; see the server log' })
          }
        }
      })()
    })
  }

  route('get', '/documents/:docId/versions', 'read', async (res, { docId, query }, _principal, abort) => {
    const limit = Math.min(MAX_LIST_LIMIT, positiveInt(query.get('limit'), 100))
    const before = query.get('before')
    if (before !== null && !isVersionId(before)) throw new HttpError(400, 'invalid_version_id', 'before must be a version id')
    const versions = await ctx.store.listVersions(docId, before === null ? { limit } : { limit, before })
    if (versions.length === 0 && !await exists(ctx, docId)) throw notFound('document')
    if (!abort.aborted) sendJson(res, 200, { docId, versions })
  })

  route('post', '/documents/:docId/versions', 'write', async (res, { docId, body }, _principal, abort) => {
    const label = parseLabel(body)
    if (!await exists(ctx, docId)) throw notFound('document')
    // The place is taken before the document is encoded, and held until the state is written:
    // each one holds the document's size.
    const meta = await ctx.stateWorker.withSlot('write', async slot => await ctx.versions.createFrom(docId, 'named', label, async () =>
      await withDocument(ctx, docId, async doc => await snapshotState(doc, ctx.chunks, ctx.stateWorker, slot))))
    if (meta === null) throw notFound('document')
    if (!abort.aborted) sendJson(res, 201, meta)
  }, { body: true })

  route('get', '/documents/:docId/versions/:versionId', 'read', async (res, { docId, versionId }, _principal, abort) => {
    const state = await ctx.store.loadVersion(docId, versionId!)
    if (state === null) throw notFound('version')
    if (!abort.aborted) sendBinary(res, state)
  })

  route('get', '/documents/:docId/versions/:versionId/json', 'read', async (res, { docId, versionId }, _principal, abort) => {
    const json = await ctx.stateWorker.withSlot('read', async slot => {
      const state = await ctx.store.loadVersion(docId, versionId!)
      if (state === null) throw notFound('version')
      return await ctx.stateWorker.documentJson(state, slot)
    })
    if (!abort.aborted) sendJsonText(res, 200, json)
  })

  route('get', '/documents/:docId/versions/:versionId/diff', 'read', async (res, { docId, versionId, query }, _principal, abort) => {
    const to = query.get('to') ?? 'current'
    if (to !== 'current' && !isVersionId(to)) throw new HttpError(400, 'invalid_version_id', 'to must be a version id or "current"')
    if (diffsRunning >= MAX_CONCURRENT_DIFFS) throw new HttpError(429, 'too_many_requests', 'a diff is being computed on this node; retry in a moment')
    diffsRunning++
    try {
      const types = await ctx.stateWorker.withSlot('read', async slot => {
        const from = await ctx.store.loadVersion(docId, versionId!)
        if (from === null) throw notFound('version')
        // The diff holds both states decoded, with their deleted content, in the worker's memory:
        // bounded, so that one reader cannot take the node's memory.
        const tooLarge = (bytes: string): HttpError => new HttpError(413, 'too_large', `the two states hold ${bytes} bytes; diffs are computed up to ${ctx.maxDiffBytes} (VERSION_DIFF_MAX_BYTES)`)
        const target = to === 'current'
          ? await withDocument(ctx, docId, async doc => {
            // Refused before the document is encoded (its size estimate is made exact near a limit).
            if (doc.wouldExceed(from.length, ctx.maxDiffBytes)) throw tooLarge('more than that many')
            return await snapshotState(doc, ctx.chunks, ctx.stateWorker, slot)
          })
          : await ctx.store.loadVersion(docId, to)
        if (target === null) throw notFound('version')
        if (from.length + target.length > ctx.maxDiffBytes) throw tooLarge(String(from.length + target.length))
        return await ctx.stateWorker.diffJson(from, target, slot)
      })
      if (!abort.aborted) sendJsonText(res, 200, `{"docId":${JSON.stringify(docId)},"from":${JSON.stringify(versionId)},"to":${JSON.stringify(to)},"types":${types}}`)
    } finally {
      diffsRunning--
    }
  })

  route('post', '/documents/:docId/versions/:versionId/restore', 'write', async (res, { docId, versionId }, principal, abort) => {
    const result = await ctx.stateWorker.withSlot('write', async slot => {
      const state = await ctx.store.loadVersion(docId, versionId!)
      if (state === null) throw notFound('version')
      // One restore of a document at a time in the whole cluster: two computed from the same state
      // on two nodes would both insert the version's content.
      const lock = await ctx.versions.lockRestore(docId)
      if (lock === null) throw new HttpError(409, 'restore_in_progress', 'another restore of this document is in progress; retry in a moment')
      // Asked before each step that changes something: a lock lost meanwhile may be another's now.
      const stillLocked = (): void => {
        if (!lock.held) throw new HttpError(503, 'restore_interrupted', 'the restore lost its lock (the lock store was unreachable, or emptied); the document was not changed, retry')
      }
      try {
        return await withDocument(ctx, docId, async doc => {
          // Computed first, on the worker thread, from the state encoded a piece per turn: a restore
          // that cannot be made takes no before-restore version. Edits made meanwhile stay where
          // the restore does not replace them, as edits still travelling from clients do.
          const computed: { update: Uint8Array | null } = { update: null }
          // Undoable: restoring this version puts back what the document held just before.
          const before = await ctx.versions.createFrom(docId, 'before-restore', null, async () => {
            const result = await ctx.stateWorker.restore(await snapshotPieces(doc, ctx.chunks), state, slot)
            if (doc.wouldExceed(result.update.length, ctx.maxDocumentBytes)) throw new HttpError(413, 'document_too_large', `restoring would grow the document past MAX_DOCUMENT_BYTES (${ctx.maxDocumentBytes})`)
            stillLocked()
            computed.update = result.update
            return result.current
          })
          stillLocked()
          // Dropped from memory while the restore was computed: applied now, the restore would be
          // stored for a document that no longer exists, or lost with a node that is stopping.
          if (doc.state === 'unloaded') {
            if (ctx.registry.closing) throw new HttpError(503, 'shutting_down', 'this node is shutting down; the document was not changed, retry')
            throw new DocumentDeletedError(docId)
          }
          const update = computed.update
          if (before === null || update === null) throw new Error('the restore was computed without a result')
          // One change, applied and stored whole: every replica has all of the restore or none of
          // it. Clients receive it in paced chunks, as any large update.
          if (ctx.changes.commit(doc, update, null, 'restore', null, 'if-changed', true)) ctx.versions.noteChange(docId, principal.userId)
          await ctx.writeBehind.flush([docId])
          return { restoredFrom: versionId, beforeRestore: before.id }
        })
      } finally {
        void lock.release()
      }
    })
    if (!abort.aborted) sendJson(res, 200, result)
  })

  route('del', '/documents/:docId/versions/:versionId', 'admin', async (res, { docId, versionId }, _principal, abort) => {
    const state = await ctx.store.loadVersion(docId, versionId!)
    if (state === null) throw notFound('version')
    await ctx.versions.delete(docId, versionId!, state.length)
    if (!abort.aborted) res.cork(() => { res.writeStatus('204 No Content').end() })
  })
}

/** A document exists once it was written: it is loaded here, or the store holds content of it. */
async function exists (ctx: VersionRouteContext, docId: string): Promise<boolean> {
  if (ctx.registry.get(docId) !== undefined) return true
  return await ctx.store.exists(docId)
}

async function withDocument<T> (ctx: VersionRouteContext, docId: string, use: (doc: LiveDocument) => Promise<T>): Promise<T> {
  const loadedHere = ctx.registry.get(docId) !== undefined
  const doc = await ctx.registry.acquire(docId)
  try {
    // Loaded just now from the store, which lacks what other nodes have not flushed yet: a
    // restore or a version computed from that would miss (and so keep) their latest edits.
    if (!loadedHere) await ctx.awaitPeers?.(doc)
    return await use(doc)
  } finally {
    ctx.registry.release(doc)
  }
}

/** Errors of the store (unreachable, timed out): a retry may succeed. */
function isStoreFailure (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' || /redis|connect|timeout|terminated|unavailable|closed/i.test((err as Error).message ?? '')
}

function parseLabel (body: Uint8Array | null): string {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array()))
  } catch {
    throw new HttpError(400, 'invalid_json', 'body must be JSON {"label": "..."}')
  }
  const label = (value as { label?: unknown } | null)?.label
  if (typeof label !== 'string' || label.trim() === '' || label.length > MAX_LABEL_LENGTH) {
    throw new HttpError(400, 'invalid_label', `label must be a non-empty string of at most ${MAX_LABEL_LENGTH} characters`)
  }
  return label.trim()
}

function positiveInt (value: string | null, fallback: number): number {
  if (value === null) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new HttpError(400, 'invalid_limit', 'limit must be a positive whole number')
  return n
}

function notFound (what: 'document' | 'version'): HttpError {
  return new HttpError(404, `${what}_not_found`, `no such ${what}`)
}
