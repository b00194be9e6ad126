import type { Logger } from 'pino'
import type { DocumentStore } from '../persistence/document-store.js'
import type { Metrics } from '../metrics/metrics.js'
import { DocumentDeletedError } from '../persistence/document-store.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import type { Compactor } from './compactor.js'
import type { DocumentLifecycle } from './document-lifecycle.js'
import { LiveDocument } from './live-document.js'

/** The document has as many connections as MAX_CONNECTIONS_PER_DOCUMENT allows. */
export class DocumentFullError extends Error {
  constructor (readonly docId: string) {
    super(`document ${docId} has the most connections allowed`)
  }
}

export interface RegistryOptions {
  idleUnloadMs: number
  /** Retry period for an unload whose final flush failed. */
  unloadRetryMs: number
}

/**
 * The live documents of this node. A document is loaded on first join (concurrent joins share the
 * load, and nobody is handed the document before it finished), and unloaded after its last client
 * left and `idleUnloadMs` passed, only once its pending updates are in the store.
 */
export class DocumentRegistry {
  private readonly docs = new Map<string, LiveDocument>()
  private stopping = false

  /** closeAll() began: documents unloaded from now on were not deleted, the node is stopping. */
  get closing (): boolean {
    return this.stopping
  }

  constructor (
    private readonly store: DocumentStore,
    private readonly writeBehind: WriteBehind,
    private readonly compactor: Compactor,
    private readonly options: RegistryOptions,
    private readonly log: Logger,
    /** Told of every load and unload, in this order. */
    private readonly lifecycle: DocumentLifecycle[] = [],
    private readonly metrics?: Metrics
  ) {}

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
   * paired with exactly one release(). Rejects if the document cannot be loaded, and with
   * DocumentFullError, before anything is awaited, when it already has `maxRefs` references.
   */
  async acquire (docId: string, maxRefs = Infinity): Promise<LiveDocument> {
    if (this.stopping) throw new Error('server is shutting down')
    let doc = this.docs.get(docId)
    if (doc !== undefined && doc.refs >= maxRefs) throw new DocumentFullError(docId)
    if (doc === undefined) {
      doc = new LiveDocument(docId)
      doc.ready = this.load(doc)
      this.docs.set(docId, doc)
    }
    doc.refs++
    doc.acquisitions++
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
    if (doc.refs > 0 || this.stopping || doc.state === 'unloaded') return
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
    await this.afterUnload(docId)
  }

  /**
   * Flushes every document and drops them all; used at shutdown after all sockets closed. A failing
   * store is retried until `deadline` (epoch ms); past it the error is thrown with updates unsaved.
   */
  async closeAll (deadline: number): Promise<void> {
    this.stopping = true
    for (const doc of this.docs.values()) this.cancelUnload(doc)
    for (;;) {
      try {
        // A store that neither answers nor fails (a client library queueing commands while Redis is
        // unreachable) must not hold the shutdown past its deadline.
        await withDeadline(this.writeBehind.flush(), deadline)
        break
      } catch (err) {
        const remaining = deadline - Date.now()
        if (remaining <= 0) throw err
        await new Promise(resolve => setTimeout(resolve, Math.min(250, remaining)))
      }
    }
    for (const doc of [...this.docs.values()]) this.evict(doc)
  }

  private async load (doc: LiveDocument): Promise<void> {
    const started = performance.now()
    // The observers whose beforeLoad completed, told of the unload if the load fails later.
    let prepared = 0
    try {
      for (const observer of this.lifecycle) {
        await observer.beforeLoad?.(doc)
        prepared++
      }
      const stored = await this.store.load(doc.id)
      // Deleted while it loaded (drop evicted it and told the observers): it must not come alive.
      if (this.docs.get(doc.id) !== doc) throw new DocumentDeletedError(doc.id)
      doc.applyStored(stored.updates)
      // The stored bytes bound the encoded size from above; the exact size is measured only if
      // a write ever approaches MAX_DOCUMENT_BYTES, so a load never encodes the document.
      doc.sizeEstimate = stored.bytes
      doc.state = 'live'
      for (const observer of this.lifecycle) observer.afterLoad?.(doc)
      this.log.debug({ docId: doc.id, entries: stored.updates.length, bytes: stored.bytes, ms: Math.round(performance.now() - started) }, 'document loaded')
      this.compactor.track(doc, stored.updates.length, stored.cursor)
    } catch (err) {
      if (err instanceof DocumentDeletedError) {
        this.log.debug({ docId: doc.id }, 'document load refused: recently deleted')
      } else {
        this.metrics?.storeErrors.labels('load').inc()
        this.log.error({ err, docId: doc.id }, 'document load failed')
      }
      const dropped = this.docs.get(doc.id) !== doc
      this.evict(doc)
      if (!dropped) await this.afterUnload(doc.id, this.lifecycle.slice(0, prepared))
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
    const acquisitions = doc.acquisitions
    // Checked after every await of the unload.
    const goesOn = (): boolean => this.stillUnloading(doc) && !this.usedMeanwhile(doc, acquisitions)
    if (!await this.flushBeforeUnload(doc) || !goesOn()) return
    for (const observer of this.lifecycle) {
      await observer.beforeUnload?.(doc).catch(err => this.log.warn({ docId: doc.id, err }, 'before-unload hook failed'))
    }
    if (!goesOn()) return
    // Peers' edits that arrived meanwhile are stored before it leaves (the nodes they came from
    // version them): a document edited elsewhere still unloads here.
    if (!await this.flushBeforeUnload(doc) || !goesOn()) return
    // Nothing of it is pending or being written: the flush above resolved.
    this.evict(doc)
    this.log.debug({ docId: doc.id }, 'document unloaded')
    await this.afterUnload(doc.id)
  }

  /** Stores what is pending for a document being unloaded; false (and the unload postponed) if the store failed. */
  private async flushBeforeUnload (doc: LiveDocument): Promise<boolean> {
    try {
      // Loop: anything applied while the flush ran (e.g. server-side writes) is flushed too.
      while (this.writeBehind.hasPending(doc.id)) await this.writeBehind.flush([doc.id])
      return true
    } catch (err) {
      if (doc.state !== 'unloading') return false
      doc.state = 'live'
      this.log.warn({ docId: doc.id, err }, 'unload postponed: pending updates could not be stored')
      if (doc.refs === 0 && !this.stopping) this.scheduleUnload(doc, this.options.unloadRetryMs)
      return false
    }
  }

  /**
   * Used on this node since the unload began (a client that came and went, a server-side write;
   * a large document's version makes the hooks take a while): it stays loaded, and its changes get
   * their version at a later unload instead of being lost with this one.
   */
  private usedMeanwhile (doc: LiveDocument, acquisitions: number): boolean {
    if (doc.acquisitions === acquisitions) return false
    doc.state = 'live'
    this.scheduleUnload(doc, this.options.idleUnloadMs)
    return true
  }

  /** After an await of the unload: false if it must stop (dropped meanwhile, joined, shutting down). */
  private stillUnloading (doc: LiveDocument): boolean {
    // Deleted meanwhile (drop evicted it; the id may hold a new document by now): nothing to do.
    if (doc.state !== 'unloading' || this.docs.get(doc.id) !== doc) return false
    // A client joined meanwhile: it keeps the document alive. At shutdown closeAll takes over.
    if (doc.refs > 0 || this.stopping) {
      doc.state = 'live'
      return false
    }
    return true
  }

  private async afterUnload (docId: string, observers = this.lifecycle): Promise<void> {
    for (const observer of observers) {
      await observer.afterUnload?.(docId).catch(err => this.log.warn({ docId, err }, 'after-unload hook failed'))
    }
  }

  /**
   * Takes the document out of this node's memory: the registry, the store's per-document state (a
   * later load rebuilds it) and the Y.Doc. Unload, delete and a failed load all leave through here.
   */
  private evict (doc: LiveDocument): void {
    // Never another document loaded under the same id since, nor its store's state.
    if (this.docs.get(doc.id) === doc) {
      this.docs.delete(doc.id)
      this.compactor.forget(doc.id)
      this.store.forget(doc.id)
    }
    doc.destroy()
  }
}

/** `work`, or a rejection once `deadline` (epoch ms) passes first. */
async function withDeadline<T> (work: Promise<T>, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error('the store did not answer before the shutdown deadline')) }, Math.max(0, deadline - Date.now()))
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}
