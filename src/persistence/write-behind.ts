import type { Logger } from 'pino'
import type { Metrics } from '../metrics/metrics.js'
import type { AppendEntry, DocumentStore } from './document-store.js'
import { encodeEntryValue, EntryBuilder } from './entry-value.js'

interface Pending {
  /** Entry values already complete (full ones, or put back after a failed write), in order. */
  values: Uint8Array[]
  /** The entry being filled. */
  current: EntryBuilder | null
  /** Bytes pending (updates, or whole entries put back after a failed write), for the metrics. */
  bytes: number
  /** Size of the full state that last replaced this document's pending updates (0: never). */
  collapsedBytes: number
}

/**
 * Told which documents had entries durably appended, and how many bytes each, once per write
 * however many entries a document had in it (compaction counts writes and bytes).
 */
export interface AppendListener {
  appended (written: ReadonlyMap<string, number>): void
}

export interface WriteBehindOptions {
  intervalMs: number
  retryMaxMs: number
  /**
   * A loaded document's full state, for a store that lost the document (see AppendOutcome); null
   * when the document is not loaded here.
   */
  fullState?: (docId: string) => Uint8Array | null
}

/** A document's pending updates fill entries of about this size (more during a bulk upload). */
const ENTRY_MAX_BYTES = 256 * 1024
/**
 * An update this large is an entry of its own, in a buffer of its exact size: appended to a
 * builder, it would make the builder double (and copy) its buffer on the way to ENTRY_MAX_BYTES,
 * which during a bulk write of large updates allocated more than twice the bytes written.
 */
const OWN_ENTRY_BYTES = 16 * 1024
/**
 * While the store fails, a document whose pending updates pass this (or twice its full state) has
 * them replaced by its full state, which contains them all: memory stays bounded by the documents'
 * size however long the outage lasts, and no edit is dropped.
 */
export const COLLAPSE_PENDING_ABOVE_BYTES = 8 * 1024 * 1024

/**
 * Collects each document's updates in memory and appends them to the store every `intervalMs`, in
 * one write for all documents: a document's small updates share entries of up to ENTRY_MAX_BYTES,
 * an update of OWN_ENTRY_BYTES or more is an entry of its own. Each update is
 * copied into its document's entry value as it arrives (entry-value.ts), not merged and not kept
 * as a list of copies: both cost more (re-encoding, garbage collection) than the store write. A
 * failed write puts the entries back (nothing is ever dropped), marks the store unhealthy and
 * retries with exponential backoff. Writes are serialized, so a flush that resolves means every
 * update enqueued before it was called is in the store.
 */
export class WriteBehind {
  private pending = new Map<string, Pending>()
  private inFlight: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private consecutiveFailures = 0
  private retryAt = 0
  private lastError: string | null = null

  constructor (
    private readonly store: DocumentStore,
    private readonly options: WriteBehindOptions,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    private readonly listener: AppendListener | null = null
  ) {}

  get healthy (): boolean {
    return this.consecutiveFailures === 0
  }

  get failure (): string | null {
    return this.lastError
  }

  /**
   * Copies `update` into the document's next entry: the caller keeps its buffer. A large update
   * the server encoded itself and gives up (`serverMade`, a restore) is kept as its own entry as it
   * is, saving a copy of megabytes: a value that is a bare Yjs update reads as one, and lib0 never
   * writes the entry header's bytes at its start.
   */
  enqueue (docId: string, update: Uint8Array, serverMade = false): void {
    let entry = this.pending.get(docId)
    if (entry === undefined) {
      entry = { values: [], current: null, bytes: 0, collapsedBytes: 0 }
      this.pending.set(docId, entry)
    }
    if (this.consecutiveFailures > 0 && entry.bytes + update.length > Math.max(COLLAPSE_PENDING_ABOVE_BYTES, 2 * entry.collapsedBytes) && this.collapse(docId, entry)) return
    entry.bytes += update.length
    const own = update.length >= OWN_ENTRY_BYTES
    if (entry.current !== null && (own || entry.current.byteLength + update.length > ENTRY_MAX_BYTES)) {
      entry.values.push(entry.current.finish())
      entry.current = null
    }
    if (own) {
      entry.values.push(serverMade ? update : encodeEntryValue([update]))
      return
    }
    entry.current ??= new EntryBuilder(update.length)
    entry.current.append(update)
  }

  /**
   * Replaces the document's pending updates by its full state (which holds `update` too: the
   * commit path applies an update before it queues it). False when the document is not loaded.
   */
  private collapse (docId: string, entry: Pending): boolean {
    const full = this.options.fullState?.(docId) ?? null
    if (full === null) return false
    entry.values = [encodeEntryValue([full])]
    entry.current = null
    entry.bytes = full.length
    entry.collapsedBytes = full.length
    this.log.debug({ docId, bytes: full.length }, 'store unavailable: pending updates replaced by the document\'s full state')
    return true
  }

  /** Drops a deleted document's unwritten updates. */
  discard (docId: string): void {
    this.pending.delete(docId)
  }

  hasPending (docId: string): boolean {
    return this.pending.has(docId)
  }

  get pendingDocuments (): number {
    return this.pending.size
  }

  get pendingBytes (): number {
    let bytes = 0
    for (const entry of this.pending.values()) bytes += entry.bytes
    return bytes
  }

  start (): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => { void this.tick() }, this.options.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * Writes everything pending now (or only the given documents) and resolves when it is in the
   * store; rejects if the store refuses it (the updates stay queued for the next attempt).
   */
  async flush (docIds?: Iterable<string>): Promise<void> {
    while (this.inFlight !== null) await this.inFlight.catch(() => {})
    const entries = this.take(docIds)
    if (entries.length === 0) return
    const write = this.write(entries)
    this.inFlight = write
    try {
      await write
    } finally {
      this.inFlight = null
    }
  }

  private async tick (): Promise<void> {
    if (this.inFlight !== null || this.pending.size === 0) return
    if (Date.now() < this.retryAt) return
    await this.flush().catch(() => {})
  }

  private take (docIds?: Iterable<string>): AppendEntry[] {
    const entries: AppendEntry[] = []
    const ids = docIds === undefined ? [...this.pending.keys()] : [...docIds]
    for (const docId of ids) {
      const entry = this.pending.get(docId)
      if (entry === undefined) continue
      this.pending.delete(docId)
      for (const value of entry.values) entries.push({ docId, value })
      if (entry.current !== null) entries.push({ docId, value: entry.current.finish() })
    }
    return entries
  }

  private async write (entries: AppendEntry[]): Promise<void> {
    const started = performance.now()
    try {
      const { lost } = await this.store.append(entries)
      if (lost.length > 0) await this.replaceLost(entries, lost)
      this.metrics?.storeFlushSeconds.observe((performance.now() - started) / 1000)
    } catch (err) {
      this.metrics?.storeErrors.labels('append').inc()
      this.requeue(entries)
      this.consecutiveFailures++
      this.lastError = (err as Error).message
      const delay = Math.min(this.options.retryMaxMs, this.options.intervalMs * 2 ** Math.min(this.consecutiveFailures, 16))
      this.retryAt = Date.now() + delay
      // Log the first failure in full, then a short line every 20 attempts: an outage must not
      // flood the log.
      if (this.consecutiveFailures === 1) {
        this.log.error({ err, documents: entries.length, retryInMs: delay }, 'store write failed; updates kept for retry')
      } else if (this.consecutiveFailures % 20 === 0) {
        this.log.error({ err: this.lastError, failures: this.consecutiveFailures, pendingDocuments: this.pending.size }, 'store writes still failing; updates kept')
      }
      throw err
    }
    if (this.consecutiveFailures > 0) {
      this.log.info({ failures: this.consecutiveFailures }, 'store writes recovered')
    }
    this.consecutiveFailures = 0
    this.lastError = null
    this.retryAt = 0
    if (this.listener !== null) {
      const written = new Map<string, number>()
      for (const { docId, value } of entries) written.set(docId, (written.get(docId) ?? 0) + value.length)
      this.listener.appended(written)
    }
  }

  /**
   * The store lost documents whose entries it was given: what is written instead is each one's
   * full state from memory, so that what is stored can be loaded on its own again. A document no
   * longer loaded here is written with the entries it had (all that is left of it on this node).
   * Within the same write: the flush that resolves has made its updates durable.
   */
  private async replaceLost (entries: AppendEntry[], lost: string[]): Promise<void> {
    const replacements: AppendEntry[] = []
    for (const docId of lost) {
      const full = this.options.fullState?.(docId) ?? null
      this.metrics?.storeErrors.labels('lost').inc()
      this.log.warn({ docId, fromMemory: full !== null }, 'the store lost this document; writing its full state again')
      if (full === null) {
        for (const entry of entries) if (entry.docId === docId) replacements.push(entry)
      } else {
        replacements.push({ docId, value: encodeEntryValue([full]) })
      }
    }
    const again = await this.store.append(replacements)
    if (again.lost.length > 0) throw new Error(`the store lost documents again while they were rewritten: ${again.lost.join(', ')}`)
  }

  /** Puts failed entries back in front of anything that arrived meanwhile. */
  private requeue (entries: AppendEntry[]): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const { docId, value } = entries[i]!
      const newer = this.pending.get(docId)
      if (newer === undefined) {
        this.pending.set(docId, { values: [value], current: null, bytes: value.length, collapsedBytes: 0 })
      } else {
        newer.values.unshift(value)
        newer.bytes += value.length
      }
    }
  }
}
