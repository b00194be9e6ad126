import type { Logger } from 'pino'
import type { DocumentChanges, UpdateQueue } from '../documents/document-changes.js'
import type { AwarenessOwner } from '../documents/presence.js'
import type { Metrics } from '../metrics/metrics.js'
import type { AwarenessEntry } from '../protocol/awareness-entries.js'
import { decodeClientMessage, isEmptyUpdate } from '../protocol/messages.js'
import type { PubSub } from '../redis/connections.js'
import { decodeEnvelope, EnvelopeKind, isSentBy, senderMarker, type Envelope } from './envelope.js'
import { PartAssembly } from './envelope-parts.js'
import { wallClockMs, type DocumentLink, type PeerLinks } from './peer-links.js'

/** What a peer can ask of this node besides document changes; the node's operations implement it. */
export interface PeerCommands {
  /** Another node deleted the document: drop it here and close its connections. */
  documentDeletedByPeer (docId: string): void
  /** Another node revoked a user's access to the document: close that user's connections here. */
  accessRevokedByPeer (docId: string, userId: string): void
}

export interface BridgeOptions {
  nodeId: string
  keyPrefix: string
  /** The largest envelope put back together from parts (a sync reply of the largest document). */
  maxEnvelopeBytes: number
}

/**
 * The receiving side of the cluster: what other nodes publish about the documents this node holds.
 *
 * Redis pub/sub delivers at most once, so delivery alone cannot be trusted: every message a node
 * publishes on a document's channel carries a sequence number, a heartbeat follows its last one,
 * and any skipped number, any reconnect to Redis, and every fresh load of a document makes the
 * node exchange state vectors with its peers. Peers answer on the asking node's own channel with
 * exactly the updates it lacks, and it answers back with what they lack. Yjs merges updates
 * idempotently, so repairs are always safe to apply twice.
 */
export class ClusterBridge {
  private readonly ownChannel: string
  /** How this node's own envelopes start (isSentBy). */
  private readonly ownMarker: Buffer
  private readonly parts: PartAssembly
  private resyncRetry: NodeJS.Timeout | null = null

  constructor (
    private readonly options: BridgeOptions,
    private readonly pubsub: PubSub,
    private readonly links: PeerLinks,
    private readonly changes: DocumentChanges,
    private readonly store: UpdateQueue,
    private readonly commands: PeerCommands,
    private readonly log: Logger,
    private readonly metrics: Metrics
  ) {
    this.ownChannel = links.ownChannel
    this.ownMarker = senderMarker(options.nodeId)
    this.parts = new PartAssembly(options.maxEnvelopeBytes)
  }

  async start (): Promise<void> {
    this.pubsub.onMessage((channel, message) => {
      try {
        this.receive(channel, message)
      } catch (err) {
        this.log.error({ err, channel }, 'bridge message handling failed')
      }
    })
    this.pubsub.onReconnect(reason => { this.resyncAll(reason) })
    await this.pubsub.subscribe(this.ownChannel)
  }

  async close (): Promise<void> {
    if (this.resyncRetry !== null) clearTimeout(this.resyncRetry)
    await this.pubsub.unsubscribe(this.ownChannel).catch(() => {})
  }

  private receive (channel: string, message: Buffer): void {
    // Our own message back (recognised by its first bytes, or decoded): the channel works.
    const own = isSentBy(message, this.ownMarker)
    let envelope = own ? null : decodeEnvelope(message)
    if (own || envelope?.n === this.options.nodeId) {
      if (channel === this.ownChannel) this.links.noteOwnChannelEcho()
      else this.links.noteOwnEchoOn(channel)
      return
    }
    if (envelope !== null && envelope.t === EnvelopeKind.Part) {
      if (channel === this.ownChannel) this.links.noteAnswerUnderway(envelope.d)
      const whole = this.parts.add(envelope)
      if (whole === null) return
      envelope = decodeEnvelope(Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength))
      if (envelope?.t === EnvelopeKind.Part) envelope = null
    }
    if (envelope === null) {
      this.log.warn({ channel }, 'bridge: ignoring malformed envelope')
      return
    }
    if (envelope.n === this.options.nodeId) return
    const link = this.links.get(envelope.d)
    if (link === undefined || link.doc.state === 'unloaded') return
    this.metrics.bridgeReceived.inc()
    // Another node holds the document: this node's edits must reach it. If this node thought it
    // alone, the peer may lack what it did not publish; a sync request from the peer is answered
    // with that anyway, anything else gets a sync from here.
    const wasAlone = link.peers === 'none'
    this.links.notePeer(link)
    if (wasAlone && envelope.t !== EnvelopeKind.SyncRequest) this.links.requestSync(link.doc)
    switch (envelope.t) {
      case EnvelopeKind.Update: {
        if (envelope.w !== undefined) this.metrics.bridgeLagSeconds.observe(Math.max(0, wallClockMs() - envelope.w) / 1000)
        this.track(link, envelope.n, envelope.s, false)
        const update = decodeClientMessage(envelope.f)
        if (update.kind === 'sync-update') this.applyPeerUpdate(link, update.update, envelope.f)
        return
      }
      case EnvelopeKind.Awareness: {
        this.track(link, envelope.n, envelope.s, false)
        const message = decodeClientMessage(envelope.f)
        if (message.kind === 'awareness') this.applyPeerAwareness(link, envelope.n, message.update, envelope.u ?? null)
        return
      }
      case EnvelopeKind.Heartbeat:
        this.track(link, envelope.n, envelope.s, true)
        return
      case EnvelopeKind.SyncRequest:
        this.answerSyncRequest(link, envelope.n, envelope.v)
        return
      case EnvelopeKind.SyncReply:
        this.log.debug({ docId: link.doc.id, peer: envelope.n, bytes: envelope.p?.length ?? 0 }, 'bridge: sync reply received')
        if (envelope.p != null) this.applyPeerUpdate(link, envelope.p, null)
        if (envelope.a != null) this.applyPeerAwareness(link, envelope.n, envelope.a, envelope.au ?? [])
        if (envelope.v != null) {
          const missing = link.doc.encodeStateAsUpdate(envelope.v)
          if (!isEmptyUpdate(missing)) this.links.sendToNode(envelope.n, { t: EnvelopeKind.SyncPush, n: this.options.nodeId, d: link.doc.id, p: missing })
        }
        this.links.noteSyncReply(link.doc.id)
        return
      case EnvelopeKind.SyncPush:
        this.log.debug({ docId: link.doc.id, peer: envelope.n, bytes: envelope.p.length }, 'bridge: sync push received')
        this.applyPeerUpdate(link, envelope.p, null)
        return
      case EnvelopeKind.Deleted:
        this.commands.documentDeletedByPeer(link.doc.id)
        return
      case EnvelopeKind.Revoked:
        this.commands.accessRevokedByPeer(link.doc.id, envelope.u)
    }
  }

  /** Sequence bookkeeping; a skipped number (or a heartbeat ahead of us) means a lost message. */
  private track (link: DocumentLink, peer: string, seq: number, heartbeat: boolean): void {
    const last = link.peerSeqs.get(peer)
    link.peerSeqs.set(peer, Math.max(seq, last ?? 0))
    if (last === undefined) return
    const expected = heartbeat ? last : last + 1
    if (seq > expected) {
      this.metrics.bridgeGaps.inc()
      this.log.warn({ docId: link.doc.id, peer, expected, got: seq }, 'bridge: message gap detected, re-syncing')
      this.links.beWatchful()
      this.links.requestSync(link.doc)
    }
  }

  private applyPeerUpdate (link: DocumentLink, update: Uint8Array, frame: Uint8Array | null): void {
    if (isEmptyUpdate(update)) return
    try {
      this.changes.commitFromPeer(link.doc, update, frame, this)
    } catch (err) {
      this.log.error({ docId: link.doc.id, err }, 'bridge: peer update failed to apply, re-syncing')
      this.links.requestSync(link.doc)
    }
    if (link.doc.hasPending) this.repairIfStillWaiting(link)
  }

  /**
   * An update Yjs keeps pending depends on one this node never received. Sequence numbers catch
   * most losses, but not one just before a re-sync reset them, nor an update that depends on
   * another node's lost message. If the wait outlasts a heartbeat (enough for the dependency to
   * arrive through another node's channel), the node asks its peers for what it lacks.
   */
  private repairIfStillWaiting (link: DocumentLink, delayMs = this.links.heartbeatMs): void {
    if (link.pendingCheck !== null) return
    link.pendingCheck = setTimeout(() => {
      link.pendingCheck = null
      if (this.links.get(link.doc.id) !== link || link.doc.state !== 'live' || !link.doc.hasPending) return
      this.metrics.bridgeGaps.inc()
      this.log.warn({ docId: link.doc.id, waitedMs: delayMs }, 'bridge: a peer\'s update waits for one this node never received; re-syncing')
      this.links.requestSync(link.doc)
      // A dependency nobody has (a client may send one) must not cost a request every second.
      this.repairIfStillWaiting(link, Math.min(delayMs * 2, 60_000))
    }, delayMs)
    link.pendingCheck.unref()
  }

  /**
   * A peer's awareness: an update on behalf of one of its users (`users` a user id, null when
   * unknown), or a sync reply's entries of several, with the user of each entry.
   */
  private applyPeerAwareness (link: DocumentLink, peer: string, update: Uint8Array, users: string | null | Array<string | null> | undefined): void {
    try {
      const entries = this.changes.readPeerAwareness(update)
      if (!Array.isArray(users)) {
        this.changes.commitAwarenessFromPeer(link.doc, entries, this.remoteOwner(link, peer, users ?? null), update)
        return
      }
      const byUser = new Map<string | null, AwarenessEntry[]>()
      entries.forEach((entry, i) => {
        const user = users[i] ?? null
        const group = byUser.get(user)
        if (group === undefined) byUser.set(user, [entry])
        else group.push(entry)
      })
      for (const [user, group] of byUser) this.changes.commitAwarenessFromPeer(link.doc, group, this.remoteOwner(link, peer, user), null)
    } catch (err) {
      this.log.warn({ docId: link.doc.id, peer, err: (err as Error).message }, 'bridge: peer awareness refused')
    }
  }

  /** The awareness origin standing for one user of a peer node (null: a peer that does not say). */
  private remoteOwner (link: DocumentLink, peer: string, userId: string | null): AwarenessOwner {
    const key = userId === null ? `${peer}\0` : `${peer}\0u:${userId}`
    let owner = link.remoteOwners.get(key)
    if (owner === undefined) {
      owner = { awarenessClients: new Set(), userId, remote: true }
      link.remoteOwners.set(key, owner)
    }
    return owner
  }

  private answerSyncRequest (link: DocumentLink, requester: string, theirStateVector: Uint8Array): void {
    const doc = link.doc
    if (doc.state !== 'live') return
    const missing = doc.encodeStateAsUpdate(theirStateVector)
    const reply: Envelope = { t: EnvelopeKind.SyncReply, n: this.options.nodeId, d: doc.id }
    if (!isEmptyUpdate(missing)) reply.p = missing
    // Always ask back: state vectors do not show deletions, so only the requester's own full
    // delete set (which encodeStateAsUpdate always includes) can tell what this node lacks.
    reply.v = doc.encodeStateVector()
    const local = doc.presence.localStates()
    if (local !== null) {
      reply.a = local.update
      reply.au = local.users
    }
    this.log.debug({ docId: doc.id, peer: requester, bytes: reply.p?.length ?? 0 }, 'bridge: sync request answered')
    this.links.sendToNode(requester, reply)
  }

  private resyncAll (reason: string): void {
    // Both connections must be up: a request published while the publisher is still reconnecting
    // would be lost, and one received while the subscriber is would go unanswered.
    if (!this.pubsub.connected) {
      this.resyncRetry ??= setTimeout(() => {
        this.resyncRetry = null
        this.resyncAll(reason)
      }, 100)
      return
    }
    this.log.info({ reason, documents: this.links.size }, 'bridge: re-syncing every document with peers')
    this.links.forgetPeers()
    this.links.beWatchful()
    for (const link of this.links.values()) {
      link.peerSeqs.clear()
      if (link.doc.state !== 'live') continue
      this.links.requestSync(link.doc)
      // Redis may have come back without the data (restart without persistence, failover to a
      // lagging replica): store the full state again; Yjs merges the duplicate away. An empty
      // document has nothing to write back.
      const state = link.doc.encodeFullState()
      if (state !== null && !isEmptyUpdate(state)) this.store.enqueue(link.doc.id, state)
    }
  }
}
