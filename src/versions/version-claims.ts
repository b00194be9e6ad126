import { randomUUID } from 'node:crypto'

/**
 * Coordination of automatic versions between the nodes that hold a document, so that each version
 * is taken once per document, not once per node: every node sees the same changes (its clients'
 * and its peers') and decides at about the same moment; the one whose claim succeeds takes the
 * version, with the authors every node recorded. A single node needs none of it.
 */
export interface VersionClaims {
  /**
   * Taken by the one node that takes the document's next automatic version, of the changes made
   * until `covers` (epoch ms), for `ttlMs`. Refused while another node's claim, or its mark of a
   * version it just took, stands: the answer says until when that version covers changes, so
   * that a node keeps those made later for the next one. A node's own claim or mark never keeps
   * it out.
   */
  claim (docId: string, ttlMs: number, covers: number): Promise<ClaimAnswer>
  /**
   * This node just took a version of the changes made until `covers`: the other nodes skip their
   * automatic one of those for `ttlMs`. Another node's claim standing is left alone.
   */
  mark (docId: string, ttlMs: number, covers: number): Promise<void>
  /** Records authors of changes not yet in a version, for whichever node takes it. */
  addAuthors (docId: string, authors: string[]): Promise<void>
  /** The authors recorded by every node since the last version, emptied. */
  takeAuthors (docId: string): Promise<string[]>
  /**
   * For the one caller that may restore the document now: a token that holds the lock until
   * released or `ttlMs` without a renewal; null while another caller holds it.
   */
  lockRestore (docId: string, ttlMs: number): Promise<string | null>
  /** Extends the lock by `ttlMs`; false when `token` no longer holds it (it expired, another took it). */
  renewRestore (docId: string, token: string, ttlMs: number): Promise<boolean>
  /** Releases the lock if `token` still holds it: never another caller's. */
  unlockRestore (docId: string, token: string): Promise<void>
}

export type ClaimAnswer = { taken: true } | { taken: false, covers: number }

/** One node: every claim is its own, and the authors it knows are all there are. */
export function singleNodeClaims (): VersionClaims {
  // In memory, the lock cannot outlive its holder: it never expires, and renewing keeps it.
  const restoring = new Map<string, string>()
  return {
    claim: async () => ({ taken: true }),
    mark: async () => {},
    addAuthors: async () => {},
    takeAuthors: async () => [],
    lockRestore: async docId => {
      if (restoring.has(docId)) return null
      const token = randomUUID()
      restoring.set(docId, token)
      return token
    },
    renewRestore: async (docId, token) => restoring.get(docId) === token,
    unlockRestore: async (docId, token) => { if (restoring.get(docId) === token) restoring.delete(docId) }
  }
}
