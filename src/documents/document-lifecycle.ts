import type { LiveDocument } from './live-document.js'

/**
 * What the registry tells the parts that keep per-document state of their own (the cluster's
 * peer links, presence timeouts) as a document comes and goes. Each one is given to the registry
 * when it is built; every method is optional.
 */
export interface DocumentLifecycle {
  /** Runs before the store is read (cluster mode subscribes here); a rejection fails the load. */
  beforeLoad?: (doc: LiveDocument) => Promise<void>
  /** The document is live: loaded and about to be handed to whoever waited for it. */
  afterLoad?: (doc: LiveDocument) => void
  /** The document is about to leave memory after its last flush (not when deleted); it is still readable. */
  beforeUnload?: (doc: LiveDocument) => Promise<void>
  /** The document left memory (unloaded, deleted, or its load failed after this observer's beforeLoad). */
  afterUnload?: (docId: string) => Promise<void>
}
