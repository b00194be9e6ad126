import type { Transaction } from 'yjs'
import type { Metrics } from '../metrics/metrics.js'
import { awarenessEntryCount, encodeAwarenessFrame, readAwarenessEntries, type AwarenessEntry } from '../protocol/awareness-entries.js'
import { encodeAwareness, encodeSyncUpdate } from '../protocol/messages.js'
import type { DocumentLifecycle } from './document-lifecycle.js'
import { changedNothing, pendingMark, UpdateRejectedError, type LiveDocument } from './live-document.js'
import type { AwarenessOwner, PresenceLimits } from './presence.js'

/**
 * What uWS publishes through: the app reaches every local subscriber of a topic, a socket every
 * subscriber but itself.
 */
export interface TopicPublisher {
  publish (topic: Uint8Array, message: Uint8Array, isBinary: boolean): boolean
}

/** How changes reach the other nodes of a cluster; the cluster's peer links implement it. */
export interface PeerPublisher {
  publishUpdate (doc: LiveDocument, frame: Uint8Array): void
  /** `userId`: the verified user whose presence the frame carries (null: several or unknown). */
  publishAwareness (doc: LiveDocument, frame: Uint8Array, userId: string | null): void
}

/**
 * Local fan-out of an update too large to publish as one frame: each local client receives what
 * the transaction added and deleted in chunks, paced by its socket (the server's PacedSends).
 */
export interface LargeUpdateFanout {
  /** Updates whose frame is larger than this go through fanOut(). */
  readonly thresholdBytes: number
  /**
   * `update`: the bytes applied in `transaction` (valid only during the call); `except`: the socket
   * that sent the update (null: nobody is skipped).
   */
  fanOut (doc: LiveDocument, update: Uint8Array, transaction: Transaction, except: TopicPublisher | null): void
}

/** Where applied updates wait for the store; the write-behind implements it. */
export interface UpdateQueue {
  /**
   * Copies `update`: the caller may hand in a view into a buffer it does not own. With
   * `serverMade`, the caller gives up an update this server encoded, which may be kept as it is.
   */
  enqueue (docId: string, update: Uint8Array, serverMade?: boolean): void
}

/**
 * Whether a change that turned out to change nothing is still handed on. A client's update always
 * is (y-websocket relays what it receives; an update Yjs keeps pending for missing dependencies
 * may complete another replica); an offline batch or an admin write is only when it changed the
 * document or left something pending, so a resend costs no fan-out and no store write.
 */
export type Relay = 'always' | 'if-changed'

export interface DocumentChangesOptions {
  /** The uWS app: local fan-out to every subscriber of a document's topic. */
  localFanout: TopicPublisher
  /** Cluster mode: the other nodes. Null on a single node. */
  peers: PeerPublisher | null
  store: UpdateQueue
  /** Large updates' local fan-out; null: every update is published as one frame. */
  largeUpdates?: LargeUpdateFanout | null
  metrics: Metrics
  presenceLimits: PresenceLimits
  /**
   * A closed connection's presence is removed this much later (0: at once), unless the same user
   * announces the same client id again meanwhile: a dropped connection whose provider reconnects
   * shows no gap to anyone. A client that leaves cleanly removes its own state at once.
   */
  presenceGraceMs?: number
  /** Told of an error while removing presence after its grace period (nothing else can be). */
  onPresenceError?: (doc: LiveDocument, err: unknown) => void
  /**
   * Called after each change committed on this node (not for peers' changes) with the transaction
   * it was applied in (null when Yjs reported none); webhooks and version history use it.
   */
  onLocalChange: ((docId: string, transaction: Transaction | null) => void) | null
  /** The same for each change a peer node made (version history keeps the same timing on every node). */
  onPeerChange?: ((docId: string, transaction: Transaction | null) => void) | null
}

/**
 * The one path every change to a document takes: apply to the server's Y.Doc, then (also for the
 * part Yjs integrated before rejecting an update) local fan-out, the other nodes, the write-behind
 * and the change notice. Client messages, offline batches, the admin API and the cluster bridge
 * all commit through here; presence (awareness) goes through here too.
 *
 * Everything is synchronous and forwards the bytes it was given: nothing is awaited and nothing
 * re-encoded between receiving an update and publishing it.
 */
export class DocumentChanges implements DocumentLifecycle {
  private readonly fanout: TopicPublisher
  private readonly peers: PeerPublisher | null
  private readonly store: UpdateQueue
  private readonly largeUpdates: LargeUpdateFanout | null
  private readonly metrics: Metrics
  private readonly presenceLimits: PresenceLimits
  private readonly presenceGraceMs: number
  private readonly onPresenceError: (doc: LiveDocument, err: unknown) => void
  private readonly onLocalChange: ((docId: string, transaction: Transaction | null) => void) | null
  private readonly onPeerChange: ((docId: string, transaction: Transaction | null) => void) | null

  constructor (options: DocumentChangesOptions) {
    this.fanout = options.localFanout
    this.peers = options.peers
    this.store = options.store
    this.largeUpdates = options.largeUpdates ?? null
    this.metrics = options.metrics
    this.presenceLimits = options.presenceLimits
    this.presenceGraceMs = options.presenceGraceMs ?? 0
    this.onPresenceError = options.onPresenceError ?? (() => {})
    this.onLocalChange = options.onLocalChange
    this.onPeerChange = options.onPeerChange ?? null
  }

  /**
   * A change made on this node. `frame` is the sync-update frame to forward as is (null: encoded
   * here when needed); `sender`, the socket that sent it, is skipped by the local fan-out (null
   * reaches every local subscriber). Returns whether the change was handed on: always with relay
   * 'always', only when it changed the document with 'if-changed'. Throws UpdateRejectedError,
   * after handing on whatever part of the update did integrate.
   */
  commit (doc: LiveDocument, update: Uint8Array, frame: Uint8Array | null, origin: unknown, sender: TopicPublisher | null, relay: Relay, serverMade = false): boolean {
    // Clients' updates (the only ones relayed always) are the ones the timing metrics describe.
    const sampled = relay === 'always' && this.metrics.sampleThis()
    const started = sampled ? performance.now() : 0
    // Only a relay 'if-changed' asks what changed: a client's update, the hot path, skips it.
    const pending = relay === 'if-changed' ? pendingMark(doc) : null
    let transaction
    try {
      transaction = doc.apply(update, origin)
    } catch (err) {
      if (err instanceof UpdateRejectedError && err.partial !== null) this.distributeLocal(doc, err.partial, null, null, null)
      throw err
    }
    // An update Yjs kept pending changed nothing yet, but it must reach the store and the other
    // replicas all the same: the update that completes it later carries none of its structs.
    if (pending !== null && changedNothing(doc, transaction, pending)) return false
    const applied = sampled ? performance.now() : 0
    this.distributeLocal(doc, update, frame, sender, transaction, serverMade)
    if (sampled) {
      this.metrics.fanoutSeconds.observe((performance.now() - applied) / 1000)
      this.metrics.updateApplySeconds.observe((applied - started) / 1000)
    }
    return true
  }

  /**
   * A change another node made and published. It goes to this node's clients and to this node's
   * store too (if the peer crashes before its own write-behind ran, this write still lands it;
   * duplicates merge away at compaction), never back to the peers. One that changed nothing here
   * (a repair's reply, an update that reached this node twice) goes nowhere: this node's clients
   * and store already have it. Throws UpdateRejectedError like commit().
   */
  commitFromPeer (doc: LiveDocument, update: Uint8Array, frame: Uint8Array | null, origin: unknown): void {
    const pending = pendingMark(doc)
    let transaction
    try {
      transaction = doc.apply(update, origin)
    } catch (err) {
      if (err instanceof UpdateRejectedError && err.partial !== null) this.distributeFromPeer(doc, err.partial, null, null)
      throw err
    }
    if (changedNothing(doc, transaction, pending)) return
    this.distributeFromPeer(doc, update, frame, transaction)
  }

  /**
   * A local client's awareness update, read whole first (MalformedMessageError or
   * PresenceLimitError otherwise, with nothing applied). Entries for ids another user owns are
   * dropped; the rest is applied and relayed to the document's other local clients and to the
   * peers, as the bytes received when nothing was dropped.
   */
  commitAwareness (doc: LiveDocument, update: Uint8Array, frame: Uint8Array, owner: AwarenessOwner, sender: TopicPublisher): void {
    const entries = readAwarenessEntries(update, this.presenceLimits, doc.presence.staleFor(owner))
    const accepted = doc.presence.apply(entries, owner, this.presenceLimits)
    if (accepted.length === 0) return
    const whole = accepted.length === entries.length && entries.length === awarenessEntryCount(update)
    const acceptedFrame = whole ? frame : encodeAwarenessFrame(accepted)
    sender.publish(doc.topic, acceptedFrame, true)
    this.metrics.sent('awareness', acceptedFrame.length)
    this.peers?.publishAwareness(doc, acceptedFrame, owner.userId)
  }

  /**
   * Reads a peer's awareness update whole, with the limits a client's has (throws like
   * commitAwareness()), for commitAwarenessFromPeer().
   */
  readPeerAwareness (update: Uint8Array): AwarenessEntry[] {
    return readAwarenessEntries(update, this.presenceLimits)
  }

  /**
   * A peer's awareness entries, on behalf of one of its users (`owner`): admitted like a client's,
   * applied and relayed to this node's clients. Ids the peer removes are its no longer. `update`,
   * the bytes the entries were read from when they are all of them, is applied as it is.
   */
  commitAwarenessFromPeer (doc: LiveDocument, entries: AwarenessEntry[], owner: AwarenessOwner, update: Uint8Array | null): void {
    const accepted = doc.presence.apply(entries, owner, this.presenceLimits)
    if (accepted.length === 0) return
    this.publishToAll(doc, 'awareness', update !== null && accepted.length === entries.length ? encodeAwareness(update) : encodeAwarenessFrame(accepted))
    doc.presence.releaseRemoved(accepted)
  }

  /**
   * Removes the presence of a connection that closed, for everyone here and on other nodes, after
   * the grace period: ids its user took over meanwhile (a reconnect, here or on another node) stay.
   */
  removePresence (doc: LiveDocument, owner: AwarenessOwner): void {
    if ((owner.awarenessClients?.size ?? 0) === 0) return
    if (this.presenceGraceMs === 0) {
      this.removeNow(doc, owner)
      return
    }
    setTimeout(() => {
      // A timer's throw would reach the process: contain it.
      try {
        if (doc.state !== 'unloaded') this.removeNow(doc, owner)
      } catch (err) {
        this.onPresenceError(doc, err)
      }
    }, this.presenceGraceMs).unref()
  }

  private removeNow (doc: LiveDocument, owner: AwarenessOwner): void {
    const frame = doc.presence.removeOwner(owner)
    if (frame === null) return
    this.publishToAll(doc, 'awareness', frame)
    this.peers?.publishAwareness(doc, frame, owner.userId)
  }

  /**
   * Presence not renewed for 30 s (a client or a whole node that vanished without a close) is
   * dropped by the node's presence sweep; this node's clients are told. Every node times out on
   * its own, so nothing goes to the peers.
   */
  afterLoad (doc: LiveDocument): void {
    doc.presence.onExpired = removals => {
      // Called from the node's sweep timer, which goes on to other documents: contain a throw.
      try {
        if (doc.state !== 'unloaded') this.publishToAll(doc, 'awareness', removals)
      } catch (err) {
        this.onPresenceError(doc, err)
      }
    }
  }

  private distributeLocal (doc: LiveDocument, update: Uint8Array, frame: Uint8Array | null, sender: TopicPublisher | null, transaction: Transaction | null, serverMade = false): void {
    // Framed only when a frame is sent whole: a large update's copy would cost megabytes.
    let message = frame
    if (!this.fannedOutLarge(doc, update, frame, transaction, sender)) {
      message ??= encodeSyncUpdate(update)
      // Two call sites, so that each stays monomorphic (a uWS socket, the uWS app).
      if (sender !== null) sender.publish(doc.topic, message, true)
      else this.fanout.publish(doc.topic, message, true)
      this.metrics.sent('sync-update', message.length)
    }
    if (this.peers !== null) this.peers.publishUpdate(doc, message ?? encodeSyncUpdate(update))
    this.store.enqueue(doc.id, update, serverMade)
    this.onLocalChange?.(doc.id, transaction)
  }

  private distributeFromPeer (doc: LiveDocument, update: Uint8Array, frame: Uint8Array | null, transaction: Transaction | null): void {
    if (!this.fannedOutLarge(doc, update, frame, transaction, null)) this.publishToAll(doc, 'sync-update', frame ?? encodeSyncUpdate(update))
    this.store.enqueue(doc.id, update)
    this.onPeerChange?.(doc.id, transaction)
  }

  /**
   * A frame too large to publish whole goes out in paced chunks instead: published, it would sit
   * whole in every subscriber's buffer and trip the backpressure limit of all of them. Only an
   * ended transaction says what it changed (one that an enclosing transaction will end later,
   * such as an offline batch's, is published whole).
   */
  private fannedOutLarge (doc: LiveDocument, update: Uint8Array, frame: Uint8Array | null, transaction: Transaction | null, sender: TopicPublisher | null): boolean {
    const large = this.largeUpdates
    // A frame is the update and at most 7 bytes of header.
    const frameBytes = frame?.length ?? update.length + 7
    if (large === null || frameBytes <= large.thresholdBytes || transaction === null || doc.ydoc._transaction !== null) return false
    large.fanOut(doc, update, transaction, sender)
    return true
  }

  private publishToAll (doc: LiveDocument, kind: 'sync-update' | 'awareness', frame: Uint8Array): void {
    this.fanout.publish(doc.topic, frame, true)
    this.metrics.sent(kind, frame.length)
  }
}
