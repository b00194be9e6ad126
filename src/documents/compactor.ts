import type { Logger } from 'pino'
import * as Y from 'yjs'
import type { Metrics } from '../metrics/metrics.js'
import type { DocumentStore } from '../persistence/document-store.js'
import type { AppendListener } from '../persistence/write-behind.js'
import type { LiveDocument } from './live-document.js'

export interface CompactorOptions {
  /** Compact a document's log once this many writes appended to it since the last compaction. */
  compactAfterEntries: number
  /**
   * A log found long at load is compacted this much later (default 5 s): not while the clients
   * that caused the load are syncing, since encoding a large document holds the event loop.
   */
  compactAfterLoadMs?: number
}

/**
 * Bytes appended since the last compaction that always allow one (see logOutgrew): twice the
 * default MAX_DOCUMENT_BYTES, so that uploading a document of any default size never compacts it
 * on the way (each compaction encodes the whole document, and a 64 MiB upload compacted at 64 MiB
 * peaked at 6.6x the document instead of 4x).
 */
const LOG_BYTES_FLOOR = 128 * 1024 * 1024

/**
 * Keeps every loaded document's stored log short: after `compactAfterEntries` writes (counted as
 * the write-behind reports them) or once the bytes written outgrow the document (logOutgrew), or
 * at load when the log is already that long, the log up to a
 * cursor read then is replaced by one snapshot that holds those entries and the in-memory state.
 */
export class Compactor implements AppendListener {
  private readonly docs = new Map<string, LiveDocument>()
  /** Documents whose long log, found at load, is compacted when the timer fires (not sooner). */
  private readonly deferred = new Map<string, NodeJS.Timeout>()

  constructor (
    private readonly store: DocumentStore,
    private readonly options: CompactorOptions,
    private readonly log: Logger,
    private readonly metrics?: Metrics
  ) {}

  /**
   * A document was loaded from `storedUpdates` updates, the last of them at `cursor`; a long log is
   * compacted a little later. Memory then holds every entry up to that cursor (it was loaded from
   * them), so the snapshot is memory's state and nothing is read again, in every store: entries
   * other nodes append after the cursor stay in the log.
   */
  track (doc: LiveDocument, storedUpdates: number, cursor: string | null = null): void {
    this.docs.set(doc.id, doc)
    // Counts updates, not entries (an entry may hold several): a long log compacts at load sooner.
    doc.entriesSinceCompaction = storedUpdates
    if (storedUpdates > 1 && storedUpdates >= this.options.compactAfterEntries) {
      // Appends meanwhile (the joining clients' first edits) wait for it too.
      const later = setTimeout(() => {
        this.deferred.delete(doc.id)
        if (this.docs.get(doc.id) === doc) void this.compact(doc, cursor)
      }, this.options.compactAfterLoadMs ?? 5_000)
      later.unref()
      this.deferred.set(doc.id, later)
    }
  }

  forget (docId: string): void {
    this.docs.delete(docId)
    clearTimeout(this.deferred.get(docId))
    this.deferred.delete(docId)
  }

  appended (written: ReadonlyMap<string, number>): void {
    for (const [docId, bytes] of written) {
      const doc = this.docs.get(docId)
      if (doc === undefined || this.deferred.has(docId)) continue
      doc.entriesSinceCompaction++
      doc.bytesSinceCompaction += bytes
      if (doc.entriesSinceCompaction >= this.options.compactAfterEntries || this.logOutgrew(doc)) void this.compact(doc)
    }
  }

  /**
   * A write counts once however many entries it holds, so a document taking in large updates
   * without pause would grow its log for as long as the writes take: its log is compacted too once
   * what was appended since passes the document's size before it (compaction then costs a
   * constant share of the bytes appended) and LOG_BYTES_FLOOR.
   */
  private logOutgrew (doc: LiveDocument): boolean {
    return doc.bytesSinceCompaction >= Math.max(LOG_BYTES_FLOOR, doc.sizeEstimate - doc.bytesSinceCompaction)
  }

  /** `loadedThrough`: a cursor memory is known to hold every entry up to (the load's). */
  private async compact (doc: LiveDocument, loadedThrough: string | null = null): Promise<void> {
    if (doc.state !== 'live') return
    doc.entriesSinceCompaction = 0
    doc.bytesSinceCompaction = 0
    try {
      // The only writer, or a cursor this node loaded through: memory holds every stored entry up
      // to it, so memory alone is the snapshot.
      const cursor = this.store.lastCursor(doc.id) ?? loadedThrough
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
