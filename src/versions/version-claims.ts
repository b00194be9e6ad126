import { randomUUID } from 'node:crypto'

/**
 * Coordination of automatic versions between the nodes that hold a document, so that each version
 * is taken once per document, not once per node: every node sees the same changes (its clients'
 * and its peers') and decides at about the same moment; the one whose claim succeeds takes the
 * version, with the authors every node recorded. A single node needs none of it.
 */
export interface VersionClaims {
  /**
   * True for the one node that takes the document's next automatic version (for `ttlMs`); false
   * while another node's claim, or its mark of a version it just took, stands. A node's own claim
   * or mark never keeps it out: changes made while it encoded its last version are its to take.
   */
  claim (docId: string, ttlMs: number): Promise<boolean>
  /** This node just took a version: the other nodes skip their automatic one for `ttlMs`. */
  mark (docId: string, ttlMs: number): Promise<void>
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

/** One node: every claim is its own, and the authors it knows are all there are. */
export function singleNodeClaims (): VersionClaims {
  // In memory, the lock cannot outlive its holder: it never expires, and renewing keeps it.
  const restoring = new Map<string, string>()
  return {
    claim: async () => true,
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
