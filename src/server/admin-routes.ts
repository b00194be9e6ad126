import type { HttpResponse, TemplatedApp } from 'uWebSockets.js'
import * as Y from 'yjs'
import { AuthError, type TokenVerifier } from '../auth/principal.js'
import type { DocumentChanges } from '../documents/document-changes.js'
import { validateDocumentId } from '../documents/document-id.js'
import { documentToJson } from '../documents/document-json.js'
import { UpdateRejectedError, type LiveDocument } from '../documents/live-document.js'
import type { ParticipantDirectory } from '../documents/participants.js'
import type { DocumentRegistry } from '../documents/registry.js'
import { BodyTooLargeError, readBody, requestToken, sendBinary, sendJson, trackAbort } from '../http/http-util.js'
import { DocumentDeletedError } from '../persistence/document-store.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import type { NodeOperations } from './node-operations.js'
import type { NodeSnapshot } from './node-snapshot.js'

export interface AdminContext {
  verifier: TokenVerifier
  registry: DocumentRegistry
  participants: ParticipantDirectory
  changes: DocumentChanges
  writeBehind: WriteBehind
  operations: NodeOperations
  maxBodyBytes: number
  snapshot: () => Promise<{ self: NodeSnapshot, nodes: NodeSnapshot[] }>
}

/** An admin write that Yjs refused partway; whatever integrated was committed and stored. */
class AdminUpdateRejectedError extends Error {}

type Handler = (res: HttpResponse, docId: string, body: Uint8Array | null, abort: { readonly aborted: boolean }) => Promise<void>

/**
 * The admin API: every route needs a token with `"admin": true` (401 without a valid token, 403
 * without the claim). Documents are loaded on demand and released afterwards, so the API works on
 * documents nobody has open, on any node of a cluster.
 */
export function registerAdminRoutes (app: TemplatedApp, ctx: AdminContext): void {
  const route = (method: 'get' | 'post' | 'del', pattern: string, handler: Handler, options: { body?: boolean } = {}): void => {
    app[method](pattern, (res, req) => {
      const docId = pattern.includes(':docId') ? req.getParameter(0) ?? '' : ''
      const token = requestToken(req)
      const abort = trackAbort(res)
      const body = options.body === true ? readBody(res, ctx.maxBodyBytes) : null
      body?.catch(() => {})
      void (async () => {
        try {
          if (pattern.includes(':docId')) {
            const problem = validateDocumentId(docId)
            if (problem !== null) return respond(res, abort, 400, { error: 'invalid_document_id', message: problem })
          }
          const principal = await ctx.verifier.verify(token)
          if (!principal.admin) return respond(res, abort, 403, { error: 'forbidden', message: 'admin token required' })
          await handler(res, docId, body === null ? null : await body, abort)
        } catch (err) {
          if (err instanceof AuthError) return respond(res, abort, err.reason === 'unavailable' ? 503 : 401, { error: `token_${err.reason}`, message: err.message })
          if (err instanceof BodyTooLargeError) return respond(res, abort, 413, { error: 'too_large', message: err.message })
          if (err instanceof DocumentDeletedError) return respond(res, abort, 410, { error: 'document_deleted', message: err.message })
          if (err instanceof AdminUpdateRejectedError) return respond(res, abort, 400, { error: 'update_rejected', message: err.message })
          return respond(res, abort, 503, { error: 'unavailable', message: (err as Error).message })
        }
      })()
    })
  }

  // The document is held while the callback runs (never unloaded there): its state, from the join
  // cache when that holds it, without making a Y.Doc for a document nobody wrote to.
  route('get', '/admin/documents/:docId', async (res, docId, body, abort) => {
    const state = await withDocument(ctx, docId, doc => doc.encodeFullState()!)
    if (!abort.aborted) sendBinary(res, state)
  })

  route('get', '/admin/documents/:docId/json', async (res, docId, body, abort) => {
    const state = await withDocument(ctx, docId, doc => doc.encodeFullState()!)
    respond(res, abort, 200, documentToJson(state))
  })

  route('post', '/admin/documents/:docId/updates', async (res, docId, body, abort) => {
    const update = body ?? new Uint8Array()
    try {
      Y.decodeUpdate(update)
    } catch {
      respond(res, abort, 400, { error: 'malformed_update', message: 'body is not a Yjs update (v1 encoding)' })
      return
    }
    const result = await withDocument(ctx, docId, async doc => {
      let changed: boolean
      try {
        changed = ctx.changes.commit(doc, update, null, 'admin', null, 'if-changed')
      } catch (err) {
        if (!(err instanceof UpdateRejectedError)) throw err
        await ctx.writeBehind.flush([doc.id])
        throw new AdminUpdateRejectedError(`the update failed to apply (${err.message}); any part that integrated was applied and stored`)
      }
      // Durable before answering, like an offline batch.
      await ctx.writeBehind.flush([doc.id])
      return { changed, stateVector: Buffer.from(doc.encodeStateVector()).toString('base64') }
    })
    respond(res, abort, 200, result)
  }, { body: true })

  route('del', '/admin/documents/:docId', async (res, docId, body, abort) => {
    await ctx.operations.deleteDocument(docId)
    respond(res, abort, 200, { deleted: docId })
  })

  route('get', '/admin/documents/:docId/participants', async (res, docId, body, abort) => {
    respond(res, abort, 200, { docId, participants: await ctx.participants.list(docId) })
  })

  const revocation = async (res: HttpResponse, body: Uint8Array | null, abort: { readonly aborted: boolean }, apply: (docId: string, userId: string) => Promise<unknown>): Promise<void> => {
    let request: { docId?: unknown, userId?: unknown }
    try {
      request = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array())) as typeof request
    } catch {
      respond(res, abort, 400, { error: 'invalid_json', message: 'body must be JSON {"docId", "userId"}' })
      return
    }
    const { docId, userId } = request
    if (typeof docId !== 'string' || validateDocumentId(docId) !== null || typeof userId !== 'string' || userId === '') {
      respond(res, abort, 400, { error: 'invalid_request', message: 'body must be JSON {"docId", "userId"} with a valid document id' })
      return
    }
    const result = await apply(docId, userId)
    respond(res, abort, 200, { docId, userId, ...(typeof result === 'number' ? { closedOnThisNode: result } : {}) })
  }

  route('post', '/admin/revocations', async (res, _docId, body, abort) => {
    await revocation(res, body, abort, async (docId, userId) => await ctx.operations.revoke(docId, userId))
  }, { body: true })

  route('del', '/admin/revocations', async (res, _docId, body, abort) => {
    await revocation(res, body, abort, async (docId, userId) => { await ctx.operations.restore(docId, userId) })
  }, { body: true })

  route('get', '/inspect.json', async (res, _docId, _body, abort) => {
    respond(res, abort, 200, await ctx.snapshot())
  })
}

async function withDocument<T> (ctx: AdminContext, docId: string, use: (doc: LiveDocument) => T | Promise<T>): Promise<T> {
  const doc = await ctx.registry.acquire(docId)
  try {
    return await use(doc)
  } finally {
    ctx.registry.release(doc)
  }
}

function respond (res: HttpResponse, abort: { readonly aborted: boolean }, status: number, body: unknown): void {
  if (!abort.aborted) sendJson(res, status, body)
}

