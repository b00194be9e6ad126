import type { Logger } from 'pino'
import * as Y from 'yjs'
import type { DocumentLifecycle } from '../documents/document-lifecycle.js'
import { changedBy, type LiveDocument } from '../documents/live-document.js'
import type { Metrics } from '../metrics/metrics.js'
import type { VersionMeta, VersionReason, VersionStore } from '../persistence/document-store.js'
import { versionsToDrop, type RetentionPolicy } from './retention.js'
import { TASK_DEADLINE_MS } from './state-worker.js'
import { singleNodeClaims, type VersionClaims } from './version-claims.js'
import { newVersionId } from './version-id.js'

export interface VersionHistoryOptions {
  /** An automatic version is taken once a changed document has been quiet this long. */
  idleMs: number
  /** ... and at least this often while it keeps changing. */
  maxIntervalMs: number
  retention: RetentionPolicy
  /** Told of every version this node took (the change webhook). */
  onCreated?: (docId: string, meta: VersionMeta) => void
  /** How long a restore lock outlives a node that died holding it (tests shorten it). */
  restoreLockMs?: number
  /**
   * The longest a state may take to encode (default: the state worker's deadline): an automatic
   * version's claim lasts idleMs plus this.
   */
  encodeDeadlineMs?: number
}

/** Changes of a document since its last version. */
interface Unversioned {
  firstChangeAt: number
  lastChangeAt: number
  /** Verified user ids of the connections whose edits changed it. */
  authors: Set<string>
}

/** Whether a document with state vector `current` holds anything a client at `synced` has not seen. */
function gainedSince (current: Uint8Array, synced: Uint8Array): boolean {
  let seen: Map<number, number>
  try {
    seen = Y.decodeStateVector(synced)
  } catch {
    return true // unreadable: assume the worst, take the version
  }
  for (const [client, clock] of Y.decodeStateVector(current)) if ((seen.get(client) ?? 0) < clock) return true
  return false
}

/** A named version would take more than named versions may hold. */
export class VersionHistoryFullError extends Error {}

/** How much older than another node's version a change must be to count as in it. */
const CLOCK_MARGIN_MS = 1_000

/** A restore lock outlives a node that died holding it by at most this long. */
const RESTORE_LOCK_MS = 60_000

/**
 * The one restore of a document allowed at a time, cluster-wide. Renewed while held; `held` turns
 * false once a renewal found it taken or gone, or none succeeded for as long as the lock lives (the
 * store of locks unreachable): another node may then hold it, and the restore must not commit.
 */
export interface RestoreLock {
  readonly held: boolean
  release (): Promise<void>
}

/** Retention reads at most this many versions of a document (the policy keeps far fewer). */
const RETENTION_SCAN_LIMIT = 100_000

/**
 * Takes and keeps a document's versions: automatically when a changed document pauses (or keeps
 * changing for too long), on request, and before a restore; each one with the authors of the
 * changes since the previous one. One sweep timer for all documents, not one per document. A
 * document unloaded with changes not yet versioned gets its version before it leaves memory.
 */
export class VersionHistory implements DocumentLifecycle {
  private readonly unversioned = new Map<string, Unversioned>()
  /**
   * Each document's last before-offline-merge version, reused within VERSION_IDLE_SECONDS: its id
   * once written (it may still be being written).
   */
  private readonly lastMergeVersion = new Map<string, { id: Promise<string>, at: number }>()
  /** Documents whose automatic version is being decided, encoded or written. */
  private readonly taking = new Map<string, Promise<void>>()
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly store: VersionStore,
    private readonly options: VersionHistoryOptions,
    /**
     * A loaded document's full state (null when it is not loaded here); a large one is encoded a
     * piece per event-loop turn, so an automatic version does not hold every other client.
     */
    private readonly stateOf: (docId: string) => Promise<Uint8Array | null>,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    private readonly claims: VersionClaims = singleNodeClaims()
  ) {}

  /**
   * A change was committed on this node (by `author`, when a verified user made it). Whether it
   * changed anything is asked only when it would start a version period or add an author (a
   * reconnecting client's sync step 2 often brings nothing new): not once per keystroke.
   */
  noteChange (docId: string, author: string | null, transaction: Y.Transaction | null = null): void {
    const known = this.unversioned.get(docId)
    if ((known === undefined || (author !== null && !known.authors.has(author))) && transaction !== null && !changedBy(transaction)) return
    const entry = this.touch(docId)
    if (author !== null && !entry.authors.has(author)) {
      entry.authors.add(author)
      // Whichever node takes the version names this author too.
      this.claims.addAuthors(docId, [author]).catch(err => { this.log.debug({ docId, err }, 'version author not recorded for the other nodes') })
    }
  }

  /**
   * A peer's change reached this node: every node holding the document keeps the same timing, so
   * they decide together and the claim picks one of them.
   */
  notePeerChange (docId: string, transaction: Y.Transaction | null = null): void {
    if (!this.unversioned.has(docId) && transaction !== null && !changedBy(transaction)) return
    this.touch(docId)
  }

  start (): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => { this.sweep() }, Math.max(100, Math.min(1_000, this.options.idleMs / 2)))
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * Takes a version of the state `encode` gives (null: none taken). The changes noted until now
   * are this version's: detached before the state is encoded, since a large one is encoded over
   * several turns and changes made meanwhile may not be in it; they wait for the next version.
   */
  async createFrom (docId: string, reason: VersionReason, label: string | null, encode: () => Promise<Uint8Array | null>, covers = Date.now()): Promise<VersionMeta | null> {
    const local = this.detach(docId)
    // The other nodes' authors too: those recorded later are of changes this version may lack.
    const others = await this.othersAuthors(docId)
    const pending: Unversioned | undefined = local === undefined && others.length === 0
      ? undefined
      : { firstChangeAt: local?.firstChangeAt ?? covers, lastChangeAt: local?.lastChangeAt ?? covers, authors: new Set([...local?.authors ?? [], ...others]) }
    // Not taken: this node's changes wait here, the other nodes' authors in Redis again.
    const giveBack = (): void => {
      if (local !== undefined) this.restorePending(docId, local)
      if (others.length > 0) this.claims.addAuthors(docId, others).catch(err => { this.log.debug({ docId, err }, 'version authors not given back to the other nodes') })
    }
    let state: Uint8Array | null
    try {
      state = await encode()
    } catch (err) {
      giveBack()
      throw err
    }
    if (state === null) {
      giveBack()
      return null
    }
    try {
      // create() gives nothing back itself: `pending` is not this node's entry.
      return await this.create(docId, reason, label, state, pending, covers, true)
    } catch (err) {
      giveBack()
      throw err
    }
  }

  /**
   * Writes a version of `state` holding the changes `pending` noted until `covers`. `settled`: the
   * caller took the other nodes' authors and gives everything back if this fails (createFrom);
   * otherwise this takes them, and puts `pending` back on failure.
   */
  private async create (docId: string, reason: VersionReason, label: string | null, state: Uint8Array, pending: Unversioned | undefined, covers: number, settled: boolean): Promise<VersionMeta> {
    if (reason === 'named') {
      try {
        await this.checkNamedRoom(docId, state.length)
      } catch (err) {
        if (pending !== undefined && !settled) this.restorePending(docId, pending)
        throw err
      }
    }
    const authors = new Set(pending?.authors ?? [])
    if (!settled) for (const author of await this.othersAuthors(docId)) authors.add(author)
    try {
      // The others hold the same changes and skip their version of them; an automatic version's
      // claim, long enough to encode it, lasts idleMs from now.
      await this.claims.mark(docId, this.options.idleMs, covers)
    } catch (err) {
      this.log.debug({ docId, err }, 'version not marked for the other nodes')
    }
    const now = Date.now()
    const meta: VersionMeta = { id: newVersionId(now), createdAt: new Date(now).toISOString(), reason, label, bytes: state.length, authors: [...authors].sort() }
    try {
      await this.store.saveVersion(docId, meta, state)
    } catch (err) {
      // Not taken: the changes still wait for a version, with their authors.
      if (pending !== undefined && !settled) this.restorePending(docId, pending)
      throw err
    }
    this.metrics?.versionsCreated.labels(reason).inc()
    this.metrics?.versionBytesWritten.inc(meta.bytes)
    this.options.onCreated?.(docId, meta)
    this.log.debug({ docId, versionId: meta.id, reason, bytes: meta.bytes }, 'version taken')
    void this.applyRetention(docId, now, meta.id)
    return meta
  }

  /**
   * Called right before an offline batch is merged into `doc`. Returns what to call once the merge
   * is done: it takes a before-offline-merge version of the document as it was before (if the
   * merge changed it), or reuses the one taken for this document within VERSION_IDLE_SECONDS, and
   * resolves with its id, or '' when none was needed: the merge changed nothing (and none was
   * taken lately), or the client's `syncedStateVector` shows the document gained nothing from
   * others since the client left.
   */
  planOfflineMerge (doc: LiveDocument, syncedStateVector: Uint8Array | undefined): (changed: boolean) => Promise<string> {
    if (syncedStateVector !== undefined && !gainedSince(doc.encodeStateVector(), syncedStateVector)) return async () => ''
    const recent = this.lastMergeVersion.get(doc.id)
    // The batch usually follows the sync step 2 that already merged its edits: it gets that version.
    if (recent !== undefined && Date.now() - recent.at < this.options.idleMs) return async () => await recent.id.catch(() => '')
    // The state and the authors as they are before the merge; the batch's author is the next version's.
    const state = doc.encodeFullState()
    const covers = Date.now()
    const pending = this.detach(doc.id)
    return async changed => {
      if (!changed || state === null) {
        if (pending !== undefined) this.restorePending(doc.id, pending)
        return ''
      }
      // Noted before the write finishes: a batch that arrives meanwhile (it usually follows the
      // sync step 2 that merged the same edits) gets this version, not a second one.
      const entry = { id: this.create(doc.id, 'before-offline-merge', null, state, pending, covers, false).then(meta => meta.id), at: Date.now() }
      this.lastMergeVersion.set(doc.id, entry)
      try {
        return await entry.id
      } catch (err) {
        if (this.lastMergeVersion.get(doc.id) === entry) this.lastMergeVersion.delete(doc.id)
        throw err
      }
    }
  }

  /**
   * Named versions are never dropped by retention, so they alone may not fill the document's
   * share (or they would push out every other version, and fill the store at a writer's will).
   */
  private async checkNamedRoom (docId: string, bytes: number): Promise<void> {
    const versions = await this.store.listVersions(docId, { limit: RETENTION_SCAN_LIMIT })
    const named = versions.filter(v => v.reason === 'named').reduce((sum, v) => sum + v.bytes, 0)
    const room = this.options.retention.maxBytesPerDocument / 2
    if (named + bytes > room) throw new VersionHistoryFullError(`named versions of this document would hold ${named + bytes} bytes, more than half of VERSION_MAX_BYTES_PER_DOCUMENT (${this.options.retention.maxBytesPerDocument}); delete some first`)
  }

  /** The lock a restore runs under; null while another restore of this document runs, on any node. */
  async lockRestore (docId: string): Promise<RestoreLock | null> {
    const lockMs = this.options.restoreLockMs ?? RESTORE_LOCK_MS
    let confirmedAt = performance.now()
    const token = await this.claims.lockRestore(docId, lockMs)
    if (token === null) return null
    let lost = false
    let released = false
    // Four tries per lifetime: a restore may take longer than the lock lives, and one failed
    // renewal (a failover) does not lose it.
    const timer = setInterval(() => {
      const asked = performance.now()
      this.claims.renewRestore(docId, token, lockMs).then(renewed => {
        if (renewed) confirmedAt = Math.max(confirmedAt, asked)
        else if (!released) {
          lost = true
          this.log.warn({ docId }, 'restore lock lost while the restore ran: a restore not yet applied is given up')
        }
      }, (err: unknown) => { this.log.warn({ docId, err }, 'restore lock not renewed; retrying') })
    }, lockMs / 4)
    timer.unref()
    return {
      // From when the last successful renewal was asked for: the lock lives at least lockMs past it.
      get held () { return !lost && !released && performance.now() - confirmedAt < lockMs },
      release: async () => {
        if (released) return
        released = true
        clearInterval(timer)
        await this.claims.unlockRestore(docId, token).catch(err => { this.log.warn({ docId, err }, 'restore lock not released; it expires by itself') })
      }
    }
  }

  async delete (docId: string, versionId: string, bytes: number): Promise<void> {
    await this.store.deleteVersions(docId, [versionId])
    this.metrics?.versionsDeleted.inc()
    this.metrics?.versionBytesDeleted.inc(bytes)
  }

  /** Drops what the retention policy no longer keeps. */
  async applyRetention (docId: string, now = Date.now(), keep?: string): Promise<void> {
    try {
      const versions = await this.store.listVersions(docId, { limit: RETENTION_SCAN_LIMIT })
      // The version just taken stays whatever the cap says: its id was handed out.
      const drop = versionsToDrop(versions, now, this.options.retention).filter(id => id !== keep)
      if (drop.length === 0) return
      await this.store.deleteVersions(docId, drop)
      this.metrics?.versionsDeleted.inc(drop.length)
      this.metrics?.versionBytesDeleted.inc(versions.filter(v => drop.includes(v.id)).reduce((sum, v) => sum + v.bytes, 0))
    } catch (err) {
      this.log.warn({ docId, err }, 'version retention failed; will apply at the next version')
    }
  }

  async beforeUnload (doc: LiveDocument): Promise<void> {
    // One still being encoded finishes first: the document must stay loaded until it is.
    await this.taking.get(doc.id)
    if (this.unversioned.has(doc.id)) await this.takeAutomatic(doc.id)
  }

  async afterUnload (docId: string): Promise<void> {
    this.unversioned.delete(docId)
    this.lastMergeVersion.delete(docId)
    // Retention runs when a version is taken; a document opened and left without a new version
    // would otherwise keep versions past VERSION_RETENTION_DAYS until its next edit.
    void this.applyRetention(docId)
  }

  private sweep (): void {
    const now = Date.now()
    for (const [docId, entry] of this.unversioned) {
      if (now - entry.lastChangeAt >= this.options.idleMs || now - entry.firstChangeAt >= this.options.maxIntervalMs) void this.takeAutomatic(docId)
    }
  }

  private async takeAutomatic (docId: string): Promise<void> {
    const running = this.taking.get(docId)
    if (running !== undefined) return await running
    const taking = this.decideAndTake(docId).finally(() => { this.taking.delete(docId) })
    this.taking.set(docId, taking)
    await taking
  }

  private async decideAndTake (docId: string): Promise<void> {
    try {
      // Claimed for as long as the state may take to encode: another node must not take the same
      // version meanwhile. Once written, the claim is set to idleMs from then (create's mark).
      const covers = Date.now()
      const answer = await this.claims.claim(docId, this.options.idleMs + (this.options.encodeDeadlineMs ?? TASK_DEADLINE_MS), covers)
      if (!answer.taken) {
        // Another node takes this one (it holds the same changes). Changes made after its version
        // began are not in it: they wait for the next, counted from now, as on that node.
        const current = this.unversioned.get(docId)
        // Clocks of two nodes, and an edit still travelling to the other node: only changes
        // clearly older than its version are left to it; at worst a duplicate version.
        const margin = Math.min(CLOCK_MARGIN_MS, this.options.idleMs / 2)
        if (current !== undefined && current.lastChangeAt <= answer.covers - margin) this.unversioned.delete(docId)
        else if (current !== undefined) current.firstChangeAt = Date.now()
        return
      }
      const meta = await this.createFrom(docId, 'auto', null, async () => await this.stateOf(docId), covers)
      // Not loaded here any more: its changes were versioned before it left, or never will be here.
      if (meta === null) this.unversioned.delete(docId)
    } catch (err) {
      this.log.warn({ docId, err }, 'automatic version failed; will retry')
    }
  }

  /** The authors the other nodes recorded since the last version, taken (none when Redis fails). */
  private async othersAuthors (docId: string): Promise<string[]> {
    try {
      return await this.claims.takeAuthors(docId)
    } catch (err) {
      this.log.debug({ docId, err }, 'other nodes\' version authors unavailable')
      return []
    }
  }

  private detach (docId: string): Unversioned | undefined {
    const pending = this.unversioned.get(docId)
    this.unversioned.delete(docId)
    return pending
  }

  private touch (docId: string): Unversioned {
    const now = Date.now()
    let entry = this.unversioned.get(docId)
    if (entry === undefined) {
      entry = { firstChangeAt: now, lastChangeAt: now, authors: new Set() }
      this.unversioned.set(docId, entry)
    }
    entry.lastChangeAt = now
    return entry
  }

  private restorePending (docId: string, pending: Unversioned): void {
    const newer = this.unversioned.get(docId)
    if (newer === undefined) {
      this.unversioned.set(docId, pending)
      return
    }
    newer.firstChangeAt = Math.min(newer.firstChangeAt, pending.firstChangeAt)
    for (const author of pending.authors) newer.authors.add(author)
  }
}
