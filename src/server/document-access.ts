import type { Principal } from '../auth/principal.js'
import type { Revocations } from '../auth/revocations.js'

/** What an HTTP route needs of the caller's token for a document. */
export type DocumentNeed = 'read' | 'write' | 'admin'

/** Why a principal may not do what a route does with a document (answered 403). */
export interface AccessRefusal {
  error: 'forbidden' | 'access_revoked'
  message: string
}

/**
 * The document's own rules, as the WebSocket upgrade applies them, for every HTTP route that
 * grants access to a document: the token's access to it (read-only tokens read, read-write ones
 * write), no revocation of the user, and an admin token for admin actions (which it may do on any
 * document). Null when allowed.
 */
export async function refuseDocumentAccess (principal: Principal, docId: string, need: DocumentNeed, revocations: Revocations): Promise<AccessRefusal | null> {
  if (principal.admin) return null
  if (need === 'admin') return { error: 'forbidden', message: 'an admin token is required' }
  const access = principal.policy.accessFor(docId)
  if (access === 'none') return { error: 'forbidden', message: 'token does not grant access to this document' }
  if (need === 'write' && access !== 'read-write') return { error: 'forbidden', message: 'token grants read-only access to this document' }
  if (await revocations.isRevoked(docId, principal.userId)) return { error: 'access_revoked', message: 'access to this document was revoked' }
  return null
}
