/**
 * Coordination of automatic versions between the nodes that hold a document, so that each version
 * is taken once per document, not once per node: every node sees the same changes (its clients'
 * and its peers') and decides at about the same moment; the one whose claim succeeds takes the
 * version, with the authors every node recorded. A single node needs none of it.
 */
export interface VersionClaims {
  /**
   * True for the one node that takes the document's next automatic version; false while another
   * node's claim (or any version taken in the last `ttlMs`) stands.
   */
  claim (docId: string, ttlMs: number): Promise<boolean>
  /** A version was just taken on request: other nodes skip their automatic one for `ttlMs`. */
  mark (docId: string, ttlMs: number): Promise<void>
  /** Records authors of changes not yet in a version, for whichever node takes it. */
  addAuthors (docId: string, authors: string[]): Promise<void>
  /** The authors recorded by every node since the last version, emptied. */
  takeAuthors (docId: string): Promise<string[]>
  /** True for the one caller that may restore the document now (until unlock or `ttlMs`). */
  lockRestore (docId: string, ttlMs: number): Promise<boolean>
  unlockRestore (docId: string): Promise<void>
}

/** One node: every claim is its own, and the authors it knows are all there are. */
export function singleNodeClaims (): VersionClaims {
  const restoring = new Set<string>()
  return {
    claim: async () => true,
    mark: async () => {},
    addAuthors: async () => {},
    takeAuthors: async () => [],
    lockRestore: async docId => {
      if (restoring.has(docId)) return false
      restoring.add(docId)
      return true
    },
    unlockRestore: async docId => { restoring.delete(docId) }
  }
}
