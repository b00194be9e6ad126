import type { Logger } from 'pino'
import type { TemplatedApp } from 'uWebSockets.js'
import { applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness'
import * as Y from 'yjs'
import type { AwarenessOwner, LiveDocument } from '../documents/live-document.js'
import type { Metrics } from '../metrics/metrics.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import { validateAwarenessUpdate } from '../protocol/awareness-validation.js'
import { decodeClientMessage, encodeAwareness, encodeSyncUpdate, isEmptyUpdate } from '../protocol/messages.js'
import type { PubSub } from '../redis/connections.js'
import { documentKeys, nodeChannel } from '../redis/keys.js'
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope.js'

export interface BridgeOptions {
  nodeId: string
  keyPrefix: string
  /** A heartbeat follows a node's last message on a document this much later. */
  heartbeatMs: number
}

export interface BridgeDependencies {
  pubsub: PubSub
  app: TemplatedApp
  lookup: (docId: string) => LiveDocument | undefined
  writeBehind: WriteBehind
  log: Logger
  metrics?: Metrics
  /** Another node deleted the document: drop it here and close its connections. */
  onRemoteDelete?: (docId: string) => void
  /** Another node revoked a user's access to the document: close that user's connections here. */
  onRemoteRevoke?: (docId: string, userId: string) => void
}


interface DocumentLink {
  channel: string
  outSeq: number
  heartbeat: NodeJS.Timeout | null
  /** Last sequence number seen from each peer node. */
  peers: Map<string, number>
  /** Awareness origin per peer node, standing for every client of that node. */
  remoteNodes: Map<string, AwarenessOwner>
  syncRequested: boolean
}

export interface BridgeCounters {
  published: number
  publishFailed: number
  received: number
  gaps: number
  syncRequests: number
  syncReplies: number
}

/**
 * Connects this node's live documents to the same documents on other nodes through Redis.
 *
 * Redis pub/sub delivers at most once, so delivery alone cannot be trusted: every message a node
 * publishes on a document's channel carries a sequence number, a heartbeat follows its last one,
 * and any skipped number, any reconnect to Redis, and every fresh load of a document makes the
 * node exchange state vectors with its peers. Peers answer on the asking node's own channel with
 * exactly the updates it lacks, and it answers back with what they lack. Yjs merges updates
 * idempotently, so repairs are always safe to apply twice.
 */
export class ClusterBridge {
  readonly counters: BridgeCounters = { published: 0, publishFailed: 0, received: 0, gaps: 0, syncRequests: 0, syncReplies: 0 }
  /** Test hook: drop the next outgoing update instead of publishing it (simulates a lost message). */
  dropNextOutgoingUpdate = false
  private readonly links = new Map<string, DocumentLink>()
  private readonly ownChannel: string
  private resyncRetry: NodeJS.Timeout | null = null

  constructor (private readonly options: BridgeOptions, private readonly deps: BridgeDependencies) {
    this.ownChannel = nodeChannel(options.keyPrefix, options.nodeId)
  }

  get nodeId (): string {
    return this.options.nodeId
  }

  async start (): Promise<void> {
    this.deps.pubsub.onMessage((channel, message) => {
      try {
        this.receive(channel, message)
      } catch (err) {
        this.deps.log.error({ err, channel }, 'bridge message handling failed')
      }
    })
    this.deps.pubsub.onReconnect(() => this.resyncAll('redis reconnected'))
    await this.deps.pubsub.subscribe(this.ownChannel)
  }

  /** Subscribes to the document's channel; must complete before the document is loaded. */
  async attach (docId: string): Promise<void> {
    if (this.links.has(docId)) return
    const channel = documentKeys(this.options.keyPrefix, docId).channel
    this.links.set(docId, { channel, outSeq: 0, heartbeat: null, peers: new Map(), remoteNodes: new Map(), syncRequested: false })
    try {
      await this.deps.pubsub.subscribe(channel)
    } catch (err) {
      this.links.delete(docId)
      throw err
    }
  }

  /** After the load: ask peers for whatever they hold that the store did not have yet. */
  loaded (doc: LiveDocument): void {
    this.requestSync(doc)
  }

  async detach (docId: string): Promise<void> {
    const link = this.links.get(docId)
    if (link === undefined) return
    this.links.delete(docId)
    if (link.heartbeat !== null) clearTimeout(link.heartbeat)
    await this.deps.pubsub.unsubscribe(link.channel).catch(() => {})
  }

  /** Forwards a local client's update frame (already applied locally) to the other nodes. */
  publishUpdate (doc: LiveDocument, frame: Uint8Array): void {
    const link = this.links.get(doc.id)
    if (link === undefined) return
    const seq = ++link.outSeq
    if (this.dropNextOutgoingUpdate) {
      this.dropNextOutgoingUpdate = false
    } else {
      this.send(link.channel, { t: 'u', n: this.nodeId, d: doc.id, s: seq, f: frame, w: wallClockMs() })
    }
    this.scheduleHeartbeat(doc.id, link)
  }

  publishAwareness (doc: LiveDocument, frame: Uint8Array): void {
    const link = this.links.get(doc.id)
    if (link === undefined) return
    this.send(link.channel, { t: 'a', n: this.nodeId, d: doc.id, s: ++link.outSeq, f: frame })
    this.scheduleHeartbeat(doc.id, link)
  }

  /** Tells every node holding the document to close the user's connections to it. */
  publishRevoke (docId: string, userId: string): void {
    this.send(documentKeys(this.options.keyPrefix, docId).channel, { t: 'v', n: this.nodeId, d: docId, u: userId })
  }

  /** Tells every node holding the document that it was deleted (no subscription needed to publish). */
  publishDelete (docId: string): void {
    this.send(documentKeys(this.options.keyPrefix, docId).channel, { t: 'k', n: this.nodeId, d: docId })
  }

  async close (): Promise<void> {
    if (this.resyncRetry !== null) clearTimeout(this.resyncRetry)
    for (const docId of [...this.links.keys()]) await this.detach(docId)
    await this.deps.pubsub.unsubscribe(this.ownChannel).catch(() => {})
  }

  private send (channel: string, envelope: Envelope): void {
    if (this.deps.pubsub.publish(channel, encodeEnvelope(envelope))) {
      this.counters.published++
      this.deps.metrics?.bridgePublished.inc()
    } else {
      this.counters.publishFailed++
      this.deps.metrics?.bridgePublishFailed.inc()
    }
  }

  private scheduleHeartbeat (docId: string, link: DocumentLink): void {
    if (link.heartbeat !== null) return
    link.heartbeat = setTimeout(() => {
      link.heartbeat = null
      if (this.links.get(docId) !== link) return
      this.send(link.channel, { t: 'h', n: this.nodeId, d: docId, s: link.outSeq })
    }, this.options.heartbeatMs)
    link.heartbeat.unref()
  }

  private receive (channel: string, message: Buffer): void {
    const envelope = decodeEnvelope(message)
    if (envelope === null) {
      this.deps.log.warn({ channel }, 'bridge: ignoring malformed envelope')
      return
    }
    if (envelope.n === this.nodeId) return
    const doc = this.deps.lookup(envelope.d)
    const link = this.links.get(envelope.d)
    if (doc === undefined || link === undefined || doc.state === 'unloaded') return
    this.counters.received++
    this.deps.metrics?.bridgeReceived.inc()
    switch (envelope.t) {
      case 'u':
        if (envelope.w !== undefined) this.deps.metrics?.bridgeLagSeconds.observe(Math.max(0, wallClockMs() - envelope.w) / 1000)
        this.track(doc, link, envelope.n, envelope.s, false)
        this.applyRemoteUpdateFrame(doc, envelope.f)
        return
      case 'a':
        this.track(doc, link, envelope.n, envelope.s, false)
        this.applyRemoteAwareness(doc, link, envelope.n, envelope.f)
        return
      case 'h':
        this.track(doc, link, envelope.n, envelope.s, true)
        return
      case 'q':
        this.answerSyncRequest(doc, envelope.n, envelope.v)
        return
      case 'r':
        this.counters.syncReplies++
        if (envelope.p != null) this.applyRemoteUpdate(doc, envelope.p)
        if (envelope.a != null) this.applyRemoteAwareness(doc, link, envelope.n, encodeAwareness(envelope.a))
        if (envelope.v != null) {
          const missing = Y.encodeStateAsUpdate(doc.ydoc, envelope.v)
          if (!isEmptyUpdate(missing)) this.send(nodeChannel(this.options.keyPrefix, envelope.n), { t: 'x', n: this.nodeId, d: doc.id, p: missing })
        }
        return
      case 'x':
        this.applyRemoteUpdate(doc, envelope.p)
        return
      case 'k':
        this.deps.onRemoteDelete?.(doc.id)
        return
      case 'v':
        this.deps.onRemoteRevoke?.(doc.id, envelope.u)
    }
  }

  /** Sequence bookkeeping; a skipped number (or a heartbeat ahead of us) means a lost message. */
  private track (doc: LiveDocument, link: DocumentLink, peer: string, seq: number, heartbeat: boolean): void {
    const last = link.peers.get(peer)
    link.peers.set(peer, Math.max(seq, last ?? 0))
    if (last === undefined) return
    const expected = heartbeat ? last : last + 1
    if (seq > expected) {
      this.counters.gaps++
      this.deps.metrics?.bridgeGaps.inc()
      this.deps.log.warn({ docId: doc.id, peer, expected, got: seq }, 'bridge: message gap detected, re-syncing')
      this.requestSync(doc)
    }
  }

  private applyRemoteUpdateFrame (doc: LiveDocument, frame: Uint8Array): void {
    const message = decodeClientMessage(frame)
    if (message.kind !== 'sync-update') return
    if (this.applyToDocument(doc, message.update)) {
      this.deps.app.publish(doc.topic, frame, true)
      this.deps.metrics?.sent('sync-update', frame.length)
    }
  }

  private applyRemoteUpdate (doc: LiveDocument, update: Uint8Array): void {
    if (isEmptyUpdate(update)) return
    if (this.applyToDocument(doc, update)) {
      const frame = encodeSyncUpdate(update)
      this.deps.app.publish(doc.topic, frame, true)
      this.deps.metrics?.sent('sync-update', frame.length)
    }
  }

  /**
   * Applies a peer's update and keeps it for the store too: if the peer crashes before its own
   * write-behind ran, this node's write still lands it (duplicates merge away at compaction).
   */
  private applyToDocument (doc: LiveDocument, update: Uint8Array): boolean {
    try {
      doc.applyClientUpdate(update, this)
    } catch (err) {
      this.deps.log.error({ docId: doc.id, err }, 'bridge: peer update failed to apply, re-syncing')
      this.requestSync(doc)
      return false
    }
    this.deps.writeBehind.enqueue(doc.id, update)
    return true
  }

  private applyRemoteAwareness (doc: LiveDocument, link: DocumentLink, peer: string, frame: Uint8Array): void {
    const message = decodeClientMessage(frame)
    if (message.kind !== 'awareness') return
    validateAwarenessUpdate(message.update)
    let origin = link.remoteNodes.get(peer)
    if (origin === undefined) {
      origin = { awarenessClients: new Set() }
      link.remoteNodes.set(peer, origin)
    }
    applyAwarenessUpdate(doc.awareness, message.update, origin)
    this.deps.app.publish(doc.topic, frame, true)
    this.deps.metrics?.sent('awareness', frame.length)
  }

  /**
   * Asks every peer holding the document for what this node lacks. Coalesced: several triggers
   * within one turn of the event loop send one request.
   */
  requestSync (doc: LiveDocument): void {
    const link = this.links.get(doc.id)
    if (link === undefined || link.syncRequested) return
    link.syncRequested = true
    setImmediate(() => {
      link.syncRequested = false
      if (this.links.get(doc.id) !== link || doc.state === 'unloaded') return
      this.counters.syncRequests++
      this.deps.metrics?.bridgeSyncRequests.inc()
      this.send(link.channel, { t: 'q', n: this.nodeId, d: doc.id, v: doc.encodeStateVector() })
    })
  }

  private answerSyncRequest (doc: LiveDocument, requester: string, theirStateVector: Uint8Array): void {
    if (doc.state !== 'live') return
    const missing = Y.encodeStateAsUpdate(doc.ydoc, theirStateVector)
    const reply: Envelope = { t: 'r', n: this.nodeId, d: doc.id }
    if (!isEmptyUpdate(missing)) reply.p = missing
    // Always ask back: state vectors do not show deletions, so only the requester's own full
    // delete set (which encodeStateAsUpdate always includes) can tell what this node lacks.
    reply.v = doc.encodeStateVector()
    const localClients = this.localAwarenessClients(doc)
    if (localClients.length > 0) reply.a = encodeAwarenessUpdate(doc.awareness, localClients)
    this.send(nodeChannel(this.options.keyPrefix, requester), reply)
  }

  /** Awareness clients connected to this node (not learned from peers). */
  private localAwarenessClients (doc: LiveDocument): number[] {
    const link = this.links.get(doc.id)
    const remote = new Set<number>()
    for (const node of link?.remoteNodes.values() ?? []) for (const id of node.awarenessClients ?? []) remote.add(id)
    return [...doc.awareness.getStates().keys()].filter(id => !remote.has(id))
  }

  private resyncAll (reason: string): void {
    // Both connections must be up: a request published while the publisher is still reconnecting
    // would be lost, and one received while the subscriber is would go unanswered.
    if (!this.deps.pubsub.connected) {
      this.resyncRetry ??= setTimeout(() => {
        this.resyncRetry = null
        this.resyncAll(reason)
      }, 100)
      return
    }
    this.deps.log.info({ reason, documents: this.links.size }, 'bridge: re-syncing every document with peers')
    for (const [docId, link] of this.links) {
      link.peers.clear()
      const doc = this.deps.lookup(docId)
      if (doc === undefined || doc.state !== 'live') continue
      this.requestSync(doc)
      // Redis may have come back without the data (restart without persistence, failover to a
      // lagging replica): store the full state again; Yjs merges the duplicate away.
      this.deps.writeBehind.enqueue(docId, Y.encodeStateAsUpdate(doc.ydoc))
    }
  }
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one host. */
function wallClockMs (): number {
  return performance.timeOrigin + performance.now()
}
