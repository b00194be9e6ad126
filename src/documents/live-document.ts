import { createHash } from 'node:crypto'
import * as Y from 'yjs'
import type { BatchAck } from '../protocol/extensions.js'
import { emptyUpdate, isEmptyUpdate } from '../protocol/messages.js'
import { SharedEmptyMap } from '../shared/shared-empty-map.js'
import { DocumentPresence } from './presence.js'
import { joinCacheBudget, type JoinCacheHolder } from './join-cache-budget.js'
import { RecordedChunks, ReplayedChunks, StateChunks, type ChunkSequence, type ChunkSize } from './state-chunks.js'

export type { AwarenessOwner } from './presence.js'

/** An update that failed to apply; `partial` holds whatever did integrate before the failure. */
export class UpdateRejectedError extends Error {
  constructor (message: string, readonly partial: Uint8Array | null) {
    super(message)
  }
}

/** The listeners of every ServerYDoc that has none. */
const NO_LISTENERS = new SharedEmptyMap<string, Set<any>>('listener map')

/**
 * A Y.Doc whose events cost nothing when nobody listens. Yjs emits six document events per
 * transaction, and lib0's emit allocates a Map, an iterator, an array and a closure for each even
 * with no listener, while the server listens to one of them. Listeners are still copied before
 * they are called, as lib0 does, so one added while emitting waits for the next event.
 */
class ServerYDoc extends Y.Doc {
  /**
   * The transaction that ended last, handed to whoever applied it (see LiveDocument.apply): read
   * from here it needs no wrapping transaction and closure per update.
   */
  endedTransaction: Y.Transaction | null = null
  /** Called after every transaction, before listeners: the server's own hook costs no emit. */
  afterTransaction: () => void = () => {}

  constructor (options: ConstructorParameters<typeof Y.Doc>[0]) {
    super(options)
    // A Y.Doc makes two promises and listens for 'load' and 'sync' for providers and subdocuments,
    // which a server document never has. Until its first listener the document shares one empty
    // map with the others (`on`, wrapped below the class, gives it its own): most loaded documents
    // never get a listener.
    this._observers = NO_LISTENERS
    this.whenLoaded = LOADED
    this.whenSynced = LOADED
  }

  override emit (...[name, args]: Parameters<Y.Doc['emit']>): void {
    if (name === 'afterTransaction') {
      this.endedTransaction = args[0] as Y.Transaction
      this.afterTransaction()
    }
    const observers = this._observers.get(name)
    if (observers === undefined) return
    for (const listener of Array.from(observers)) listener(...args)
  }
}

// Yjs gives every document a set of its subdocuments, which a server document almost never has:
// made on first use instead (Yjs's own, assigned in its constructor, is dropped).
const subdocsOf = new WeakMap<ServerYDoc, Set<Y.Doc>>()
Object.defineProperty(ServerYDoc.prototype, 'subdocs', {
  get (this: ServerYDoc): Set<Y.Doc> {
    let subdocs = subdocsOf.get(this)
    if (subdocs === undefined) subdocsOf.set(this, subdocs = new Set())
    return subdocs
  },
  set (this: ServerYDoc, _ignored: Set<Y.Doc>) {}
})

// The first listener gives a document a map of its own (Y.Doc's `on` is generic over its event
// map, which yjs does not export, so this wraps it on the prototype instead of overriding it).
const listenOnYDoc = Y.Doc.prototype.on
ServerYDoc.prototype.on = function (this: ServerYDoc, ...args: Parameters<Y.Doc['on']>) {
  if (this._observers === NO_LISTENERS) this._observers = new Map()
  return listenOnYDoc.apply(this, args)
} as Y.Doc['on']

const LOADED: Promise<any> = Promise.resolve()

const DIFF_CACHE_ENTRIES = 16
/** Cached diffs per document, in bytes; a diff larger than this is never cached. */
const DIFF_CACHE_MAX_BYTES = 4 * 1024 * 1024
const EMPTY_STATE_VECTOR_LENGTH = 1 // Y.encodeStateVector(new Y.Doc()) is [0]
/** A recording of chunks older than this no longer keeps others from starting one. */
const RECORDING_MAX_MS = 60_000

/** The state vector of a client that has nothing yet: every fresh client's. */
function isEmptyStateVector (stateVector: Uint8Array): boolean {
  return stateVector.length === EMPTY_STATE_VECTOR_LENGTH && stateVector[0] === 0
}

/** Bytes of cached diffs in every document of this process, bounded by `limit`. */
export const diffCacheBudget = { used: 0, limit: 64 * 1024 * 1024 }

/**
 * One loaded document: its Y.Doc, its presence, and the bookkeeping the registry needs.
 * The document is shared by every connection to it on this node.
 */
export class LiveDocument implements JoinCacheHolder {
  /** Null until something is applied: see `ydoc`. */
  private yjsDoc: ServerYDoc | null = null
  /**
   * uWS topic for local fan-out, as UTF-8 bytes: uWS.js converts a string topic to UTF-8 (length,
   * allocation, copy, free) on every publish, and takes bytes as they are.
   */
  readonly topic: Uint8Array
  /** Connections using the document plus joins still being upgraded. */
  refs = 0
  /** Times the registry handed it out: unchanged between two reads, nobody on this node used it. */
  acquisitions = 0
  state: 'loading' | 'live' | 'unloading' | 'unloaded' = 'loading'
  ready: Promise<void> = Promise.resolve()
  unloadTimer: NodeJS.Timeout | null = null
  /** Store entries loaded or written since the last compaction. */
  entriesSinceCompaction = 0
  /** Bytes appended to the store since the last compaction. */
  bytesSinceCompaction = 0
  /**
   * Encoded size of the document, estimated from above: the stored bytes at load, or the exact size
   * after a precise check, plus every update applied since (deletions are not subtracted).
   */
  sizeEstimate = 0
  private sizeCheckedAt = 0
  private sizeMeasured = false
  private batchAcks: Map<string, Promise<BatchAck>> | null = null
  /** Offline batches acknowledged (or being made durable), by user and batch id; bounded. Made on first use. */
  get batches (): Map<string, Promise<BatchAck>> {
    return (this.batchAcks ??= new Map())
  }

  /** Who is present (awareness), and who announced each awareness client id. */
  readonly presence = new DocumentPresence()

  /** The full state, until the next change or until the join cache's budget drops it. */
  private fullStateCache: Uint8Array | null = null
  /** A large document's full state in chunks, likewise. */
  private fullStateChunks: Uint8Array[] | null = null
  /** Counts transactions: chunks made while the document changed are not kept. */
  private version = 0

  /** Yjs holds updates of this document that wait for others it has not received. */
  get hasPending (): boolean {
    if (this.yjsDoc === null) return false
    const store = this.yjsDoc.store
    return store.pendingStructs !== null || store.pendingDs !== null
  }

  /**
   * When the chunks of a fresh client began to be recorded (null: none is): one copy of the
   * document at a time, however many fresh clients join at once. A recording whose connection
   * closed is dropped with it; after a minute another may start.
   */
  private recordingSince: number | null = null
  private diffCache: Map<string, Uint8Array> | null = null
  private diffCacheBytes = 0

  constructor (readonly id: string) {
    // A view into Node's shared pool for short strings: no ArrayBuffer of its own per document.
    this.topic = Buffer.from(`doc/${id}`)
  }

  /**
   * The document's Y.Doc, made on first use. A document that loaded empty answers joins (its state
   * vector, its empty state) without one until something is applied to it: a Y.Doc costs about
   * 1 KB of heap even when empty, a large share of what a document opened by one idle client costs.
   */
  get ydoc (): ServerYDoc {
    return (this.yjsDoc ??= this.createYDoc())
  }

  /** Whether the Y.Doc was made (something was applied, or `ydoc` was read): for tests and diagnostics. */
  get hasYDoc (): boolean {
    return this.yjsDoc !== null
  }

  private createYDoc (): ServerYDoc {
    // The document's id is its guid: Yjs would make a random one (a string per document) that
    // only subdocuments use.
    const ydoc = new ServerYDoc({ gc: true, guid: this.id })
    ydoc.afterTransaction = () => {
      this.version++
      if (this.fullStateCache !== null || this.fullStateChunks !== null) this.dropJoinCache()
      this.dropDiffCache()
    }
    return ydoc
  }

  /**
   * Applies stored updates while loading, in one transaction. Empty updates change nothing (a node
   * once wrote one back for every loaded document after a Redis reconnect): a document holding only
   * those still loads without a Y.Doc.
   */
  applyStored (updates: Uint8Array[]): void {
    const changes = updates.filter(update => !isEmptyUpdate(update))
    if (changes.length === 0) return
    const ydoc = this.ydoc
    Y.transact(ydoc, () => {
      for (const update of changes) Y.applyUpdate(ydoc, update)
    }, 'store')
    ydoc.endedTransaction = null
  }

  /**
   * Applies an update (from a client, an offline batch, the admin API or another node) and returns
   * the transaction it was applied in, for changedBy() (null if Yjs reported none). Throws
   * UpdateRejectedError if Yjs cannot decode or integrate it; whatever integrated before the
   * failure is in `partial`, so the caller can still hand it on and every replica stays equal to
   * the server's.
   *
   * The transaction is read from the document's hook, handed back and not kept: a transaction held
   * until the next edit outlives a young-generation GC and is promoted.
   */
  apply (update: Uint8Array, origin: unknown): Y.Transaction | null {
    // Yjs cleans its transaction up (afterState computed, afterTransaction emitted) even when the
    // update fails halfway, so the document's hook has it either way. Inside an enclosing
    // transaction the update joins that one, which ends later.
    const ydoc = this.ydoc
    const enclosing = ydoc._transaction
    ydoc.endedTransaction = null
    try {
      Y.applyUpdate(ydoc, update, origin)
      this.sizeEstimate += update.length
    } catch (err) {
      throw new UpdateRejectedError((err as Error).message, this.partialChangesOf(enclosing ?? takeEndedTransaction(ydoc)))
    }
    return enclosing ?? takeEndedTransaction(ydoc)
  }

  /**
   * Would applying `updateBytes` more grow the document past `maxBytes`? Uses the running estimate
   * and encodes the document for an exact answer only when the estimate crosses the limit (and then
   * at most once per 5 % of the limit of growth), so the check costs nothing on the hot path.
   */
  wouldExceed (updateBytes: number, maxBytes: number): boolean {
    if (maxBytes === 0 || this.sizeEstimate + updateBytes <= maxBytes) return false
    if (!this.sizeMeasured || this.sizeEstimate - this.sizeCheckedAt >= maxBytes / 20) {
      this.measureSize()
      if (this.sizeEstimate + updateBytes <= maxBytes) return false
    }
    return true
  }

  /** Sets the estimate to the exact encoded size (from the join cache if it holds the state). */
  private measureSize (): void {
    this.sizeEstimate = this.currentState().length
    this.sizeCheckedAt = this.sizeEstimate
    this.sizeMeasured = true
  }

  /**
   * Answers a sync step 1. The full state (empty state vector: every fresh client) is cached until
   * the next change, so a storm of joins encodes the document once instead of once per join.
   */
  encodeStateAsUpdate (stateVector: Uint8Array): Uint8Array {
    if (isEmptyStateVector(stateVector)) return this.fullState()
    if (this.yjsDoc === null) {
      // Nothing to send whatever the client has; a vector that does not decode still throws.
      Y.decodeStateVector(stateVector)
      return emptyUpdate()
    }
    // Clients that were in sync before a restart or a network blip come back with the same state
    // vector; answer them from one encoding, which matters most when the document holds pending
    // updates that every answer would otherwise merge again.
    // The key is the vector as it bears on this document (clients it knows, clocks no further than
    // its own), so vectors that differ only in what cannot change the answer share one entry.
    // Pending structs are diffed against the vector as sent: then a digest of it is the key (the
    // vector itself may be megabytes).
    const key = !this.hasPending
      ? this.diffKey(Y.decodeStateVector(stateVector))
      : createHash('sha256').update(stateVector).digest('base64')
    const cached = this.diffCache?.get(key)
    if (cached !== undefined) return cached
    const diff = Y.encodeStateAsUpdate(this.ydoc, stateVector)
    if (diff.length > DIFF_CACHE_MAX_BYTES) return diff
    if ((this.diffCache?.size ?? 0) >= DIFF_CACHE_ENTRIES || this.diffCacheBytes + diff.length > DIFF_CACHE_MAX_BYTES) this.dropDiffCache()
    if (diffCacheBudget.used + diff.length > diffCacheBudget.limit) return diff
    this.diffCache ??= new Map()
    this.diffCache.set(key, diff)
    this.diffCacheBytes += diff.length
    diffCacheBudget.used += diff.length
    return diff
  }

  private diffKey (vector: Map<number, number>): string {
    let key = ''
    const store = this.ydoc.store
    for (const client of [...store.clients.keys()].sort((a, b) => a - b)) {
      const theirs = Math.min(vector.get(client) ?? 0, Y.getState(store, client))
      if (theirs > 0) key += `${client}:${theirs},`
    }
    return key
  }

  private dropDiffCache (): void {
    diffCacheBudget.used -= this.diffCacheBytes
    this.diffCacheBytes = 0
    this.diffCache = null
  }

  /**
   * Answers a sync step 1 of a document larger than one chunk in chunks (see StateChunks); null
   * for a smaller one, which encodeStateAsUpdate() answers in one message.
   * Throws for a state vector that does not decode.
   */
  stateChunks (stateVector: Uint8Array, size: ChunkSize): ChunkSequence | null {
    if (this.sizeEstimate <= size.chunkBytes) return null
    const fresh = isEmptyStateVector(stateVector)
    if (fresh && this.fullStateChunks !== null) {
      joinCacheBudget.touch(this)
      return new ReplayedChunks(this.fullStateChunks, this.ydoc)
    }
    const chunks = StateChunks.forStateVector(this.ydoc, stateVector, size)
    const now = performance.now()
    if (!fresh || (this.recordingSince !== null && now - this.recordingSince < RECORDING_MAX_MS)) return chunks
    // Every fresh client gets the same chunks: kept, if the document did not change meanwhile.
    const version = this.version
    this.recordingSince = now
    return new RecordedChunks(chunks, recorded => {
      this.recordingSince = null
      if (this.version !== version || this.state === 'unloaded') return
      // When both do not fit, the chunks stay: they answer this document's fresh joins.
      if (!this.keepForJoins(this.fullStateCache, recorded)) this.keepForJoins(null, recorded)
    })
  }

  /**
   * The whole document as one update, or null once unloaded: from the join cache if it holds it,
   * encoded otherwise without filling it (versions, the store's repairs: not joins).
   */
  encodeFullState (): Uint8Array | null {
    return this.state === 'unloaded' ? null : this.currentState()
  }

  /**
   * encodeFullState(), but always a buffer of its own (the join cache's copy is copied): for a
   * caller that hands it to a worker thread, which detaches it.
   */
  copyFullState (): Uint8Array | null {
    if (this.state === 'unloaded') return null
    return this.fullStateCache?.slice() ?? this.encodeState()
  }

  private currentState (): Uint8Array {
    return this.fullStateCache ?? this.encodeState()
  }

  private encodeState (): Uint8Array {
    return this.yjsDoc === null ? emptyUpdate() : Y.encodeStateAsUpdate(this.yjsDoc)
  }

  /** The whole document as one update for a fresh join, encoded once per change while the join cache has room. */
  private fullState (): Uint8Array {
    if (this.fullStateCache !== null) {
      joinCacheBudget.touch(this)
      return this.fullStateCache
    }
    // Two bytes need no cache (nor the budget's bookkeeping for one).
    if (this.yjsDoc === null) return emptyUpdate()
    const state = Y.encodeStateAsUpdate(this.yjsDoc)
    this.keepForJoins(state, this.fullStateChunks)
    return state
  }

  /** Keeps `state` and `chunks` as this document's join cache if the budget takes them both. */
  private keepForJoins (state: Uint8Array | null, chunks: Uint8Array[] | null): boolean {
    const bytes = (state?.length ?? 0) + (chunks?.reduce((sum, chunk) => sum + chunk.length, 0) ?? 0)
    if (!joinCacheBudget.admit(this, bytes)) return false
    this.fullStateCache = state
    this.fullStateChunks = chunks
    return true
  }

  /** The join cache's budget dropped this document's cached state (it has forgotten its bytes). */
  evictJoinCache (): void {
    this.fullStateCache = null
    this.fullStateChunks = null
  }

  private dropJoinCache (): void {
    this.evictJoinCache()
    joinCacheBudget.release(this)
  }

  encodeStateVector (): Uint8Array {
    return this.yjsDoc === null ? Uint8Array.of(0) : Y.encodeStateVector(this.yjsDoc)
  }

  destroy (): void {
    this.state = 'unloaded'
    this.presence.destroy()
    this.yjsDoc?.destroy()
    this.dropJoinCache()
    this.dropDiffCache()
  }

  private partialChangesOf (transaction: Y.Transaction | null): Uint8Array | null {
    if (transaction === null || !changedBy(transaction)) return null
    return Y.encodeStateAsUpdate(this.ydoc, Y.encodeStateVector(transaction.beforeState))
  }
}

function takeEndedTransaction (ydoc: ServerYDoc): Y.Transaction | null {
  const transaction = ydoc.endedTransaction
  ydoc.endedTransaction = null
  return transaction
}

/** What Yjs holds pending (updates waiting for their dependencies) at one moment: see changedNothing. */
export interface PendingMark {
  structs: Uint8Array | null
  ds: Uint8Array | null
}

/**
 * The pending updates' bytes: Yjs replaces them with a merged copy whenever they change. Not the
 * pendingStructs object, which Yjs keeps and merges a second pending update into in place.
 */
export function pendingMark (doc: LiveDocument): PendingMark {
  const store = doc.ydoc.store
  return { structs: store.pendingStructs?.update ?? null, ds: store.pendingDs }
}

/**
 * Whether a transaction changed nothing in the document and left what Yjs holds pending as it was
 * at `before` (pendingMark taken before applying).
 */
export function changedNothing (doc: LiveDocument, transaction: Y.Transaction | null, before: PendingMark): boolean {
  const store = doc.ydoc.store
  return !changedBy(transaction) && (store.pendingStructs?.update ?? null) === before.structs && store.pendingDs === before.ds
}

/**
 * True when the transaction added structs or deleted something. An update Yjs keeps pending (its
 * dependencies are missing) changes nothing yet. Costs a pass over every client the document has
 * seen, so the hot path (which relays every update) does not ask.
 */
export function changedBy (transaction: Y.Transaction | null): boolean {
  if (transaction === null) return false
  if (transaction.deleteSet.clients.size > 0) return true
  const before = transaction.beforeState
  for (const [client, clock] of transaction.afterState) {
    if (before.get(client) !== clock) return true
  }
  return false
}
