import type { Logger } from 'pino'
import type { PeerPublisher } from '../documents/document-changes.js'
import type { DocumentLifecycle } from '../documents/document-lifecycle.js'
import type { AwarenessOwner, LiveDocument } from '../documents/live-document.js'
import type { Metrics } from '../metrics/metrics.js'
import type { PubSub } from '../redis/connections.js'
import { documentKeys, nodeChannel } from '../redis/keys.js'
import { encodeEnvelope, EnvelopeKind, type Envelope } from './envelope.js'
import { PART_BYTES, splitEnvelope } from './envelope-parts.js'

export interface PeerLinkOptions {
  nodeId: string
  keyPrefix: string
  /** A heartbeat follows a node's last message on a document this much later. */
  heartbeatMs: number
  /**
   * A document whose channel has not echoed this node's own message back for this long has no
   * working bridge (default 3 s); one without traffic is probed every `echoProbeMs` (default 10 s).
   */
  echoTimeoutMs?: number
  echoProbeMs?: number
  /**
   * At most this many idle documents are probed per second (default 200): with 20,000 idle
   * documents loaded, the node sends 200 commands a second to Redis for them, not 2,000, and each
   * is checked every 100 s instead of 10 s. A failover or reconnect re-checks every document at
   * once through the re-sync, whatever this says; documents with traffic are checked by it.
   */
  echoProbesPerSecond?: number
}

/** A channel this node subscribes to and checks by the echo of its own messages (the watchdog). */
export interface WatchedChannel {
  readonly channel: string
  /** Since when a message this node published on the channel has not come back to it (null: none). */
  awaitingEchoSince: number | null
  /** When the channel last echoed this node's own message. */
  lastEchoAt: number
  /** Since when the channel has been found not to work (null: it works). */
  brokenSince: number | null
}

/** The peers' answers to a document's sync request, counted until all arrive. */
interface AwaitedAnswers {
  /** Peers that received the request (Redis's receiver count, without this node). */
  expected: number
  received: number
  /** Requests in a row that were not answered in full; the next wait doubles with each. */
  unanswered: number
  timer: NodeJS.Timeout
}

/** One loaded document's link to the same document on the other nodes. */
export interface DocumentLink extends WatchedChannel {
  readonly doc: LiveDocument
  /** Sequence number of this node's last message on the channel. */
  outSeq: number
  heartbeat: NodeJS.Timeout | null
  /** A check that the document no longer waits for a missing dependency (kept by the bridge). */
  pendingCheck: NodeJS.Timeout | null
  /** A sync request is queued for the end of this turn of the event loop. */
  syncRequested: boolean
  /** Answers expected to the last sync request (null: none awaited), and its retry (see awaitAnswers). */
  answers: AwaitedAnswers | null
  /** Last sequence number seen from each peer node (kept by the bridge). */
  readonly peerSeqs: Map<string, number>
  /** Awareness origin per peer node and user, standing for that user's clients there (kept by the bridge). */
  readonly remoteOwners: Map<string, AwarenessOwner>
  /**
   * Whether another node holds the document, as far as this node knows: 'unknown' until Redis
   * answers a publish with its number of receivers (see notePeers). While 'none', edits and
   * presence are not published.
   */
  peers: 'unknown' | 'none' | 'some'
  /** Counts the times a peer made itself known; a publish's answer older than that is stale. */
  peerEpoch: number
}

/**
 * The sending side of the cluster: a document's Redis channel is subscribed before the document
 * is loaded and left after it is unloaded, and everything this node tells its peers leaves here,
 * numbered per document so that a receiver notices what pub/sub lost (cluster/bridge.ts receives).
 */
export class PeerLinks implements PeerPublisher, DocumentLifecycle {
  private readonly links = new Map<string, DocumentLink>()
  /** The same links by their channel, where this node's own messages come back. */
  private readonly byChannel = new Map<string, DocumentLink>()
  /** Numbers the series of parts of large envelopes (envelope-parts.ts). */
  private partSeries = 0
  private watchdog: NodeJS.Timeout | null = null
  /** Until when idle channels are probed every second instead of every `echoProbeMs` (watchful). */
  private watchfulUntil = 0
  /** Called with a document's id whenever a peer's sync reply for it arrives (awaitPeers). */
  private readonly replyListeners = new Map<string, Set<() => void>>()
  /**
   * The node's own channel, where peers answer its sync requests: when it is lost, every repair
   * this node asks for goes unanswered, and an update that depends on a lost one stays pending.
   */
  private readonly own: WatchedChannel

  constructor (
    private readonly pubsub: PubSub,
    private readonly options: PeerLinkOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics
  ) {
    this.own = { channel: nodeChannel(options.keyPrefix, options.nodeId), awaitingEchoSince: null, lastEchoAt: performance.now(), brokenSince: null }
  }

  /** The channel the peers answer this node on (the bridge subscribes to it). */
  get ownChannel (): string {
    return this.own.channel
  }

  /** How long after a peer's message a heartbeat follows. */
  get heartbeatMs (): number {
    return this.options.heartbeatMs
  }

  get nodeId (): string {
    return this.options.nodeId
  }

  get size (): number {
    return this.links.size
  }

  get (docId: string): DocumentLink | undefined {
    return this.links.get(docId)
  }

  values (): IterableIterator<DocumentLink> {
    return this.links.values()
  }

  /** Subscribes to the document's channel: nothing a peer publishes after the load is missed. */
  async beforeLoad (doc: LiveDocument): Promise<void> {
    if (this.links.get(doc.id)?.doc === doc) return
    const channel = documentKeys(this.options.keyPrefix, doc.id).channel
    const link: DocumentLink = { doc, channel, outSeq: 0, heartbeat: null, pendingCheck: null, syncRequested: false, answers: null, peerSeqs: new Map(), remoteOwners: new Map(), awaitingEchoSince: null, lastEchoAt: performance.now(), brokenSince: null, peers: 'unknown', peerEpoch: 0 }
    this.links.set(doc.id, link)
    this.byChannel.set(channel, link)
    try {
      await this.pubsub.subscribe(channel)
    } catch (err) {
      this.forget(link)
      throw err
    }
  }

  /** After the load: ask peers for whatever they hold that the store did not have yet. */
  afterLoad (doc: LiveDocument): void {
    this.requestSync(doc)
  }

  async afterUnload (docId: string): Promise<void> {
    const link = this.links.get(docId)
    if (link === undefined) return
    this.forget(link)
    if (link.heartbeat !== null) clearTimeout(link.heartbeat)
    if (link.pendingCheck !== null) clearTimeout(link.pendingCheck)
    if (link.answers !== null) clearTimeout(link.answers.timer)
    await this.pubsub.unsubscribe(link.channel).catch(() => {})
  }

  private forget (link: DocumentLink): void {
    if (this.links.get(link.doc.id) === link) this.links.delete(link.doc.id)
    if (this.byChannel.get(link.channel) === link) this.byChannel.delete(link.channel)
  }

  /**
   * Forwards a local change's update frame (already applied here) to the other nodes; nothing
   * when none of them holds the document (a node that loads it asks for a sync, and the answer
   * carries everything it lacks).
   */
  publishUpdate (doc: LiveDocument, frame: Uint8Array): void {
    const link = this.publishingLink(doc)
    if (link === null) return
    this.sendWatched(link, { t: EnvelopeKind.Update, n: this.nodeId, d: doc.id, s: ++link.outSeq, f: frame, w: wallClockMs() })
    this.scheduleHeartbeat(link)
  }

  publishAwareness (doc: LiveDocument, frame: Uint8Array, userId: string | null): void {
    const link = this.publishingLink(doc)
    if (link === null) return
    this.sendWatched(link, { t: EnvelopeKind.Awareness, n: this.nodeId, d: doc.id, s: ++link.outSeq, f: frame, ...(userId === null ? {} : { u: userId }) })
    this.scheduleHeartbeat(link)
  }

  /** The document's link, if its changes are to be published (not while no other node holds it). */
  private publishingLink (doc: LiveDocument): DocumentLink | null {
    const link = this.links.get(doc.id)
    if (link === undefined) return null
    if (link.peers === 'none') {
      this.metrics.bridgePublishSkipped.inc()
      return null
    }
    return link
  }

  /**
   * The bridge received a peer's envelope about the document: another node holds it. From now on
   * this node publishes again; any answer to a publish sent before this is stale.
   */
  notePeer (link: DocumentLink): void {
    link.peerEpoch++
    link.peers = 'some'
  }

  /** After a reconnect nothing is known of the peers until Redis answers again: publish meanwhile. */
  forgetPeers (): void {
    for (const link of this.links.values()) this.unsureOfPeers(link)
  }

  /** Receiver counts say nothing reliable now: publish until Redis answers again. */
  private unsureOfPeers (link: DocumentLink): void {
    link.peerEpoch++
    link.peers = 'unknown'
  }

  /**
   * Redis delivered a publish on the document's channel to `receivers` subscribers, this node
   * included. One means no other node holds the document, unless one made itself known since the
   * publish was sent (`epoch`), or this node's own subscription is the one missing: then the one
   * receiver may be a peer. Each time the node finds itself alone it checks its own echo; while
   * the channel is found broken, and with no receiver at all, it publishes until the watchdog has
   * repaired the channel and re-synced. More than one while this node thought it alone: a node
   * loaded the document and its sync request was lost; a sync from here gives it what was not
   * published.
   */
  private notePeers (link: DocumentLink, epoch: number, receivers: number): void {
    if (this.links.get(link.doc.id) !== link) return
    if (receivers >= 2) {
      const wasAlone = link.peers === 'none'
      link.peers = 'some'
      if (wasAlone) {
        link.peerEpoch++
        this.requestSync(link.doc)
      }
    } else if (receivers === 1 && epoch === link.peerEpoch && link.brokenSince === null) {
      // The one receiver should be this node: a probe's echo proves it. If this node's own
      // subscription was lost instead (a failover), the echo stays away and the watchdog
      // subscribes again and re-syncs, as it would have for an edit it published.
      if (link.peers !== 'none' && link.awaitingEchoSince === null) this.probe(link)
      link.peers = 'none'
    }
  }

  /** Tells every node holding the document to close the user's connections to it. */
  publishRevoke (docId: string, userId: string): void {
    this.send(documentKeys(this.options.keyPrefix, docId).channel, { t: EnvelopeKind.Revoked, n: this.nodeId, d: docId, u: userId })
  }

  /** Tells every node holding the document that it was deleted (no subscription needed to publish). */
  publishDelete (docId: string): void {
    this.send(documentKeys(this.options.keyPrefix, docId).channel, { t: EnvelopeKind.Deleted, n: this.nodeId, d: docId })
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
      this.metrics.bridgeSyncRequests.inc()
      this.log.debug({ docId: doc.id, peers: link.peers }, 'bridge: sync requested')
      this.sendWatched(link, { t: EnvelopeKind.SyncRequest, n: this.nodeId, d: doc.id, v: doc.encodeStateVector() }, receivers => { this.awaitAnswers(link, receivers - 1) })
      // The answers come on the node's own channel: make sure it still works.
      if (this.own.awaitingEchoSince === null) this.probeOwn()
    })
  }

  /**
   * Resolves once the peers that hold the document have answered the sync request its load sent
   * (no reply for `quietMs` after the last one), or after `maxMs` when none does (no peer holds
   * it). What a route computes from a document it just loaded (a restore) then includes the
   * edits other nodes have not stored yet.
   */
  async awaitPeers (doc: LiveDocument, quietMs = 100, maxMs = 1_000): Promise<void> {
    if (!this.links.has(doc.id)) return
    await new Promise<void>(resolve => {
      let quiet: NodeJS.Timeout | null = null
      const listeners = this.replyListeners.get(doc.id) ?? new Set()
      this.replyListeners.set(doc.id, listeners)
      const done = (): void => {
        clearTimeout(max)
        if (quiet !== null) clearTimeout(quiet)
        listeners.delete(onReply)
        if (listeners.size === 0) this.replyListeners.delete(doc.id)
        resolve()
      }
      const onReply = (): void => {
        if (quiet !== null) clearTimeout(quiet)
        quiet = setTimeout(done, quietMs)
      }
      const max = setTimeout(done, maxMs)
      listeners.add(onReply)
    })
  }

  /** The bridge applied a peer's sync reply for the document. */
  noteSyncReply (docId: string): void {
    const link = this.links.get(docId)
    const answers = link?.answers ?? null
    if (answers !== null && ++answers.received >= answers.expected) {
      clearTimeout(answers.timer)
      link!.answers = null
    }
    const listeners = this.replyListeners.get(docId)
    if (listeners !== undefined) for (const listener of [...listeners]) listener()
  }

  /**
   * `peers` other nodes received a sync request: each answers on this node's own channel. An
   * answer can be lost without anyone noticing (published while the peer's Redis client still sent
   * the shard's commands to a master that had died), and with the edits stopped nothing else would
   * ever ask again: the two nodes would stay apart. So a request not answered by every peer within
   * the echo timeout is sent again, waiting twice as long each time (at most 30 s), until answered.
   */
  private awaitAnswers (link: DocumentLink, peers: number): void {
    if (this.links.get(link.doc.id) !== link) return
    // A request sent again after an unanswered one keeps its count: the wait goes on doubling.
    const unanswered = link.answers?.unanswered ?? 0
    if (link.answers !== null) clearTimeout(link.answers.timer)
    link.answers = peers <= 0 ? null : { expected: peers, received: 0, unanswered, timer: this.answerTimer(link, unanswered) }
  }

  private answerTimer (link: DocumentLink, unanswered: number): NodeJS.Timeout {
    const waitMs = Math.min(this.echoTimeoutMs * 2 ** unanswered, 30_000)
    const timer = setTimeout(() => {
      const answers = link.answers
      if (answers === null || this.links.get(link.doc.id) !== link || link.doc.state === 'unloaded') return
      this.metrics.bridgeSyncUnanswered.inc()
      this.log.warn({ docId: link.doc.id, expected: answers.expected, received: answers.received, waitedMs: waitMs }, 'bridge: peers did not answer a re-sync; asking again')
      answers.unanswered++
      this.requestSync(link.doc)
    }, waitMs)
    timer.unref()
    return timer
  }

  /**
   * A part of a large envelope about the document arrived on this node's own channel: an answer is
   * on its way (a large document's takes seconds to cross); the wait for answers starts again.
   */
  noteAnswerUnderway (docId: string): void {
    const link = this.links.get(docId)
    const answers = link?.answers ?? null
    if (answers === null) return
    clearTimeout(answers.timer)
    answers.timer = this.answerTimer(link!, answers.unanswered)
  }

  /** Sends on one node's own channel (replies meant for it alone). */
  sendToNode (nodeId: string, envelope: Envelope): void {
    this.send(nodeChannel(this.options.keyPrefix, nodeId), envelope)
  }

  async close (): Promise<void> {
    this.stopWatchdog()
    for (const docId of [...this.links.keys()]) await this.afterUnload(docId)
  }

  /**
   * Redis echoes every message back to its publisher when it is subscribed to the channel: a
   * channel that stops echoing has lost its subscription (a Redis Cluster failover or slot move
   * can leave a sharded subscription on a shard that no longer owns the slot) or drops messages.
   * The watchdog checks every document this way, subscribes again, and re-syncs once the echo is
   * back; the client library's own resubscription is not taken on trust.
   */
  startWatchdog (): void {
    if (this.watchdog !== null) return
    this.watchdog = setInterval(() => { this.checkEchoes() }, this.watchdogIntervalMs)
    this.watchdog.unref()
  }

  stopWatchdog (): void {
    if (this.watchdog !== null) clearInterval(this.watchdog)
    this.watchdog = null
  }

  /** The bridge received this node's own envelope on a document's channel. */
  noteOwnEchoOn (channel: string): void {
    const link = this.byChannel.get(channel)
    if (link === undefined) return
    if (this.echoed(link)) {
      this.log.info({ docId: link.doc.id, brokenForMs: Math.round(link.lastEchoAt - (link.brokenSince ?? 0)) }, 'bridge: the document\'s channel works again; re-syncing')
      link.brokenSince = null
      this.requestSync(link.doc)
    }
  }

  /** The bridge received this node's own probe on the node's own channel. */
  noteOwnChannelEcho (): void {
    const own = this.own
    if (this.echoed(own)) {
      this.log.info({ channel: own.channel, brokenForMs: Math.round(own.lastEchoAt - (own.brokenSince ?? 0)), documents: this.links.size }, 'bridge: the node\'s own channel works again; re-syncing every document')
      own.brokenSince = null
      // Answers to repairs asked for meanwhile were lost: ask again.
      for (const link of this.links.values()) this.requestSync(link.doc)
    }
  }

  /** Notes an echo; whether the channel had been counted as broken until now. */
  private echoed (watched: WatchedChannel): boolean {
    watched.awaitingEchoSince = null
    watched.lastEchoAt = performance.now()
    return watched.brokenSince !== null
  }

  /** Whether the document's bridge does not work right now (its channel, or the node's own). */
  isBroken (docId: string): boolean {
    const link = this.links.get(docId)
    return link !== undefined && (link.brokenSince !== null || this.own.brokenSince !== null)
  }

  /**
   * Documents whose bridge has not worked for at least `forMs`: their channel is broken, or the
   * node's own channel is, which leaves every document without repairs.
   */
  brokenDocuments (forMs = 0): number {
    const now = performance.now()
    if (this.own.brokenSince !== null && now - this.own.brokenSince >= forMs) return this.links.size
    let broken = 0
    for (const link of this.links.values()) if (link.brokenSince !== null && now - link.brokenSince >= forMs) broken++
    return broken
  }

  private get watchdogIntervalMs (): number {
    return Math.min(1_000, this.echoTimeoutMs)
  }

  private get echoTimeoutMs (): number {
    return this.options.echoTimeoutMs ?? 3_000
  }

  private checkEchoes (): void {
    // While pub/sub is down, nothing echoes; its reconnect re-syncs everything (the bridge).
    if (!this.pubsub.connected) return
    const now = performance.now()
    if (this.markBrokenIfOverdue(this.own, now)) {
      this.log.warn({ channel: this.own.channel }, 'bridge: this node does not receive its own messages on its own channel (peers\' repairs cannot reach it); subscribing again')
      void this.resubscribeOwn()
    } else if (this.needsProbe(this.own, now)) {
      this.probeOwn()
    }
    let probes = Math.max(1, Math.round((this.options.echoProbesPerSecond ?? 200) * this.watchdogIntervalMs / 1000))
    for (const link of this.links.values()) {
      if (this.markBrokenIfOverdue(link, now)) {
        this.log.warn({ docId: link.doc.id, channel: link.channel }, 'bridge: this node does not receive its own messages on the document\'s channel; subscribing again')
        void this.resubscribe(link)
      } else if (probes > 0 && this.needsProbe(link, now)) {
        probes--
        this.probe(link)
        // To the back of the line: with more idle documents than the budget covers, each waits
        // its turn instead of the first ones being probed again and again.
        this.links.delete(link.doc.id)
        this.links.set(link.doc.id, link)
      }
    }
    this.metrics.bridgeBrokenDocuments.set(this.brokenDocuments())
  }

  /** Whether the channel's echo is overdue; marks it broken (once) when it is. */
  private markBrokenIfOverdue (watched: WatchedChannel | DocumentLink, now: number): boolean {
    if (watched.awaitingEchoSince === null || now - watched.awaitingEchoSince < this.echoTimeoutMs) return false
    if (watched.brokenSince === null) {
      watched.brokenSince = now
      this.metrics.bridgeBrokenDetected.inc()
    }
    this.beWatchful()
    // Receiver counts said nothing reliable while the channel was broken.
    if ('doc' in watched) this.unsureOfPeers(watched)
    watched.awaitingEchoSince = null
    return true
  }

  private needsProbe (watched: WatchedChannel, now: number): boolean {
    const every = now < this.watchfulUntil ? Math.min(1_000, this.echoProbeMs) : this.echoProbeMs
    return watched.awaitingEchoSince === null && now - watched.lastEchoAt >= every
  }

  private get echoProbeMs (): number {
    return this.options.echoProbeMs ?? 10_000
  }

  /**
   * For a while, checks idle channels every second. After a failover, a reconnect, a lost message
   * or a channel found broken, subscriptions can be lost again while the client library settles on
   * the new topology, and a document nobody edits shows it only when probed: a peer's repairs sent
   * to a channel lost meanwhile would otherwise wait for the next probe, up to `echoProbeMs`.
   */
  beWatchful (forMs = 30_000): void {
    this.watchfulUntil = Math.max(this.watchfulUntil, performance.now() + forMs)
  }

  private async resubscribe (link: DocumentLink): Promise<void> {
    await this.subscribeAgain(link)
    this.log.debug({ docId: link.doc.id }, 'bridge: subscribed to the document\'s channel again')
    // Unloaded meanwhile: its subscription must not outlive it.
    if (this.links.get(link.doc.id) !== link) await this.pubsub.unsubscribe(link.channel).catch(() => {})
    else this.probe(link)
  }

  private async resubscribeOwn (): Promise<void> {
    await this.subscribeAgain(this.own)
    this.log.debug({ channel: this.own.channel }, 'bridge: subscribed to the node\'s own channel again')
    this.probeOwn()
  }

  private async subscribeAgain (watched: WatchedChannel): Promise<void> {
    try {
      await this.pubsub.resubscribe(watched.channel)
    } catch (err) {
      this.log.warn({ channel: watched.channel, err: (err as Error).message }, 'bridge: subscribing again failed; will retry')
    }
  }

  /** A heartbeat with the current number: harmless to peers, and its echo proves the channel. */
  private probe (link: DocumentLink): void {
    this.sendWatched(link, { t: EnvelopeKind.Heartbeat, n: this.nodeId, d: link.doc.id, s: link.outSeq })
  }

  /** Only this node listens on its own channel: the probe is addressed to no document. */
  private probeOwn (): void {
    this.sendWatched(this.own, { t: EnvelopeKind.Heartbeat, n: this.nodeId, d: '', s: 0 })
  }

  /**
   * Sends on a channel this node subscribes to, which echoes it back to this node if it works; on
   * a document's channel, Redis's count of receivers tells whether other nodes hold it.
   */
  private sendWatched (watched: WatchedChannel | DocumentLink, envelope: Envelope, onReceivers?: (count: number) => void): void {
    watched.awaitingEchoSince ??= performance.now()
    if (!('doc' in watched)) {
      this.send(watched.channel, envelope)
      return
    }
    const link = watched
    const epoch = link.peerEpoch
    this.send(link.channel, envelope, receivers => {
      this.notePeers(link, epoch, receivers)
      onReceivers?.(receivers)
    })
  }

  private send (channel: string, envelope: Envelope, onReceivers?: (count: number) => void): void {
    const encoded = encodeEnvelope(envelope)
    const parts = encoded.length > PART_BYTES ? splitEnvelope(encoded, envelope, ++this.partSeries) : null
    if (parts === null) {
      this.publish(channel, encoded, onReceivers)
      return
    }
    // The last part's answer: every part went to the same subscribers.
    parts.forEach((part, i) => { this.publish(channel, encodeEnvelope(part), i === parts.length - 1 ? onReceivers : undefined) })
  }

  private publish (channel: string, message: Buffer, onReceivers?: (count: number) => void): void {
    if (this.pubsub.publish(channel, message, onReceivers)) {
      this.metrics.bridgePublished.inc()
    } else {
      this.metrics.bridgePublishFailed.inc()
    }
  }

  private scheduleHeartbeat (link: DocumentLink): void {
    if (link.heartbeat !== null) return
    link.heartbeat = setTimeout(() => {
      link.heartbeat = null
      if (this.links.get(link.doc.id) !== link) return
      this.sendWatched(link, { t: EnvelopeKind.Heartbeat, n: this.nodeId, d: link.doc.id, s: link.outSeq })
    }, this.options.heartbeatMs)
    link.heartbeat.unref()
  }
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one host. */
export function wallClockMs (): number {
  return performance.timeOrigin + performance.now()
}
