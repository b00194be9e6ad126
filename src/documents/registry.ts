import * as Y from 'yjs'
import type { Logger } from 'pino'
import type { DocumentStore } from '../persistence/document-store.js'
import type { Metrics } from '../metrics/metrics.js'
import { DocumentDeletedError } from '../persistence/document-store.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import { LiveDocument } from './live-document.js'

export interface RegistryOptions {
  idleUnloadMs: number
  /** Compact a document's log once this many entries were appended since the last compaction. */
  compactAfterEntries: number
  /** Retry period for an unload whose final flush failed. */
  unloadRetryMs: number
}

/** Lifecycle hooks, used by cluster mode to subscribe before a load and unsubscribe after unload. */
export interface RegistryHooks {
  /** Runs before the store is read; a rejection fails the load. */
  beforeLoad?: (docId: string) => Promise<void>
  afterLoad?: (doc: LiveDocument) => void
  afterUnload?: (docId: string) => Promise<void>
}

/**
 * The live documents of this node. A document is loaded on first join (concurrent joins share the
 * load, and nobody is handed the document before it finished), and unloaded after its last client
 * left and `idleUnloadMs` passed, only once its pending updates are in the store.
 */
export class DocumentRegistry {
  private readonly docs = new Map<string, LiveDocument>()
  private closing = false

  constructor (
    private readonly store: DocumentStore,
    private readonly writeBehind: WriteBehind,
    private readonly options: RegistryOptions,
    private readonly log: Logger,
    private readonly hooks: RegistryHooks = {},
    private readonly metrics?: Metrics
  ) {
    writeBehind.onAppended = docIds => this.noteAppended(docIds)
  }

  get size (): number {
    return this.docs.size
  }

  get (docId: string): LiveDocument | undefined {
    return this.docs.get(docId)
  }

  values (): IterableIterator<LiveDocument> {
    return this.docs.values()
  }

  /**
   * Takes a reference on the document, loading it if needed. Every successful acquire must be
   * paired with exactly one release(). Rejects if the document cannot be loaded.
   */
  async acquire (docId: string): Promise<LiveDocument> {
    if (this.closing) throw new Error('server is shutting down')
    let doc = this.docs.get(docId)
    if (doc === undefined) {
      doc = new LiveDocument(docId)
      doc.ready = this.load(doc)
      this.docs.set(docId, doc)
    }
    doc.refs++
    this.cancelUnload(doc)
    try {
      await doc.ready
    } catch (err) {
      doc.refs--
      throw err
    }
    return doc
  }

  release (doc: LiveDocument): void {
    doc.refs--
    if (doc.refs > 0 || this.closing || doc.state === 'unloaded') return
    this.scheduleUnload(doc, this.options.idleUnloadMs)
  }

  /**
   * Drops a document from memory without storing its pending updates (it is being deleted).
   * Its connections must be closed by the caller; their release() calls become no-ops.
   */
  async drop (docId: string): Promise<void> {
    this.writeBehind.discard(docId)
    const doc = this.docs.get(docId)
    if (doc === undefined) return
    this.cancelUnload(doc)
    this.evict(doc)
    await this.hooks.afterUnload?.(docId).catch(() => {})
  }

  /**
   * Flushes every document and drops them all; used at shutdown after all sockets closed. A failing
   * store is retried until `deadline` (epoch ms); past it the error is thrown with updates unsaved.
   */
  async closeAll (deadline: number): Promise<void> {
    this.closing = true
    for (const doc of this.docs.values()) this.cancelUnload(doc)
    for (;;) {
      try {
        await this.writeBehind.flush()
        break
      } catch (err) {
        const remaining = deadline - Date.now()
        if (remaining <= 0) throw err
        await new Promise(resolve => setTimeout(resolve, Math.min(250, remaining)))
      }
    }
    for (const doc of this.docs.values()) doc.destroy()
    this.docs.clear()
  }

  private async load (doc: LiveDocument): Promise<void> {
    const started = performance.now()
    let attached = false
    try {
      await this.hooks.beforeLoad?.(doc.id)
      attached = true
      const stored = await this.store.load(doc.id)
      doc.applyStored(stored.updates)
      // The stored bytes bound the encoded size from above; the exact size is measured only if
      // a write ever approaches MAX_DOCUMENT_BYTES, so a load never encodes the document.
      doc.sizeEstimate = stored.bytes
      // Counts updates, not entries (an entry may hold several): a long log compacts at load sooner.
      doc.entriesSinceCompaction = stored.updates.length
      doc.state = 'live'
      this.hooks.afterLoad?.(doc)
      this.log.debug({ docId: doc.id, entries: stored.updates.length, bytes: stored.bytes, ms: Math.round(performance.now() - started) }, 'document loaded')
      if (stored.updates.length > 1 && stored.updates.length >= this.options.compactAfterEntries) {
        void this.compact(doc)
      }
    } catch (err) {
      if (err instanceof DocumentDeletedError) {
        this.log.debug({ docId: doc.id }, 'document load refused: recently deleted')
      } else {
        this.metrics?.storeErrors.labels('load').inc()
        this.log.error({ err, docId: doc.id }, 'document load failed')
      }
      this.evict(doc)
      if (attached) await this.hooks.afterUnload?.(doc.id).catch(() => {})
      throw err
    }
  }

  private cancelUnload (doc: LiveDocument): void {
    if (doc.unloadTimer !== null) {
      clearTimeout(doc.unloadTimer)
      doc.unloadTimer = null
    }
  }

  private scheduleUnload (doc: LiveDocument, delayMs: number): void {
    this.cancelUnload(doc)
    doc.unloadTimer = setTimeout(() => {
      doc.unloadTimer = null
      void this.unload(doc)
    }, delayMs)
  }

  private async unload (doc: LiveDocument): Promise<void> {
    if (doc.refs > 0 || doc.state !== 'live') return
    doc.state = 'unloading'
    try {
      // Loop: anything applied while the flush ran (e.g. server-side writes) is flushed too.
      while (this.writeBehind.hasPending(doc.id)) await this.writeBehind.flush([doc.id])
    } catch (err) {
      doc.state = 'live'
      this.log.warn({ docId: doc.id, err }, 'unload postponed: pending updates could not be stored')
      if (doc.refs === 0 && !this.closing) this.scheduleUnload(doc, this.options.unloadRetryMs)
      return
    }
    // A client may have joined while the flush was running: it keeps the document alive.
    if (doc.refs > 0 || this.closing) {
      doc.state = 'live'
      return
    }
    // Nothing of it is pending or being written: the flush above resolved.
    this.evict(doc)
    this.log.debug({ docId: doc.id }, 'document unloaded')
    await this.hooks.afterUnload?.(doc.id).catch(err => this.log.warn({ docId: doc.id, err }, 'after-unload hook failed'))
  }

  /**
   * Takes the document out of this node's memory: the registry, the store's per-document state (a
   * later load rebuilds it) and the Y.Doc. Unload, delete and a failed load all leave through here.
   */
  private evict (doc: LiveDocument): void {
    this.docs.delete(doc.id)
    this.store.forget(doc.id)
    doc.destroy()
  }

  private noteAppended (docIds: string[]): void {
    for (const docId of docIds) {
      const doc = this.docs.get(docId)
      if (doc === undefined) continue
      doc.entriesSinceCompaction++
      if (doc.entriesSinceCompaction >= this.options.compactAfterEntries) void this.compact(doc)
    }
  }

  /**
   * Replaces the document's stored log, up to a cursor read now, by one snapshot holding those
   * entries and the in-memory state.
   */
  private async compact (doc: LiveDocument): Promise<void> {
    if (doc.state !== 'live') return
    doc.entriesSinceCompaction = 0
    try {
      // The only writer: memory holds every stored entry, so memory alone is the snapshot.
      const cursor = this.store.lastCursor(doc.id)
      if (cursor !== null) {
        await this.store.compact(doc.id, Y.encodeStateAsUpdate(doc.ydoc), cursor)
        this.log.debug({ docId: doc.id }, 'document log compacted from memory')
        return
      }
      const stored = await this.store.load(doc.id)
      if (stored.cursor === null || stored.updates.length <= 1 || doc.state !== 'live') return
      // Merge the log into the snapshot too: in cluster mode another node may have appended
      // entries this node has not received yet, and compaction must never drop them.
      const merged = new Y.Doc({ gc: true })
      Y.transact(merged, () => {
        for (const update of stored.updates) Y.applyUpdate(merged, update)
        Y.applyUpdate(merged, Y.encodeStateAsUpdate(doc.ydoc))
      })
      const snapshot = Y.encodeStateAsUpdate(merged)
      merged.destroy()
      await this.store.compact(doc.id, snapshot, stored.cursor)
      this.log.debug({ docId: doc.id, entries: stored.updates.length }, 'document log compacted')
    } catch (err) {
      this.metrics?.storeErrors.labels('compact').inc()
      this.log.warn({ docId: doc.id, err }, 'compaction failed; will retry later')
    }
  }
}
