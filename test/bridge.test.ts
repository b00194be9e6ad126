import t, { type Test } from 'tap'
import * as Y from 'yjs'
import { ClusterBridge } from '../src/cluster/bridge.js'
import { decodeEnvelope, EnvelopeKind } from '../src/cluster/envelope.js'
import { PeerLinks } from '../src/cluster/peer-links.js'
import { DocumentChanges } from '../src/documents/document-changes.js'
import { LiveDocument } from '../src/documents/live-document.js'
import { createLogger } from '../src/log/logger.js'
import { Metrics } from '../src/metrics/metrics.js'
import { PRESENCE_LIMITS } from './helpers/presence.js'
import { MemoryPubSubHub, type MemoryPubSub } from './helpers/memory-pubsub.js'
import { sleep, waitFor } from './helpers/wait.js'

// The bridge's repair logic on its own: two nodes over an in-memory pub/sub that loses what a test
// tells it to. End to end, over a real redis-server, test/cluster.test.ts covers the same.

const HEARTBEAT_MS = 30

interface Node {
  nodeId: string
  doc: LiveDocument
  pubsub: MemoryPubSub
  links: PeerLinks
  changes: DocumentChanges
  metrics: Metrics
  stored: Uint8Array[]
  deleted: string[]
  revoked: string[]
  /** Makes an edit as a client of this node would (committed through DocumentChanges). */
  edit: (text: string) => void
  text: () => string
  close: () => Promise<void>
}

async function startNode (t: Test, hub: MemoryPubSubHub, nodeId: string, docId = 'doc'): Promise<Node> {
  const log = createLogger('silent')
  const metrics = new Metrics(false)
  const pubsub = hub.connect()
  const stored: Uint8Array[] = []
  const store = { enqueue: (_docId: string, update: Uint8Array) => { stored.push(update.slice()) } }
  const localFanout = { publish: () => true }
  const links = new PeerLinks(pubsub, { nodeId, keyPrefix: 'test:', heartbeatMs: HEARTBEAT_MS, echoTimeoutMs: 100, echoProbeMs: 200 }, log, metrics)
  links.startWatchdog()
  const changes = new DocumentChanges({ localFanout, peers: links, store, metrics, presenceLimits: PRESENCE_LIMITS, onLocalChange: null })
  const deleted: string[] = []
  const revoked: string[] = []
  const commands = {
    documentDeletedByPeer: (id: string) => { deleted.push(id) },
    accessRevokedByPeer: (id: string, userId: string) => { revoked.push(`${id}/${userId}`) }
  }
  const bridge = new ClusterBridge({ nodeId, keyPrefix: 'test:', maxEnvelopeBytes: 64 * 1024 * 1024 }, pubsub, links, changes, store, commands, log, metrics)
  await bridge.start()
  const doc = new LiveDocument(docId)
  await links.beforeLoad(doc)
  doc.state = 'live'
  links.afterLoad(doc)
  // A client of this node, whose edits the node commits.
  const client = new Y.Doc()
  const node: Node = {
    nodeId,
    doc,
    pubsub,
    links,
    changes,
    metrics,
    stored,
    deleted,
    revoked,
    edit: text => {
      const before = Y.encodeStateVector(client)
      client.getText('t').insert(client.getText('t').length, text)
      changes.commit(doc, Y.encodeStateAsUpdate(client, before), null, 'client', null, 'always')
    },
    text: () => doc.ydoc.getText('t').toString(),
    close: async () => {
      await bridge.close()
      await links.close()
      doc.destroy()
      metrics.stop()
    }
  }
  t.teardown(node.close)
  return node
}

/** Two nodes over one in-memory pub/sub, past the sync exchange their loads start with. */
async function twoNodes (t: Test): Promise<{ hub: MemoryPubSubHub, a: Node, b: Node }> {
  const hub = new MemoryPubSubHub()
  const a = await startNode(t, hub, 'a')
  const b = await startNode(t, hub, 'b')
  await settle()
  return { hub, a, b }
}

/** Lets the sync exchange every fresh load starts with run its course. */
async function settle (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 20))
}

async function counter (node: Node, name: string): Promise<number> {
  return await node.metrics.total(name)
}

/** Drops the next `count` update envelopes published by `from`. */
function loseUpdatesFrom (hub: MemoryPubSubHub, from: string, count: number): void {
  let left = count
  hub.drop = (_channel, message) => {
    const envelope = decodeEnvelope(message)
    if (left > 0 && envelope?.t === EnvelopeKind.Update && envelope.n === from) {
      left--
      return true
    }
    return false
  }
}

t.test('updates cross between nodes and land in both stores', async t => {
  const { a, b } = await twoNodes(t)
  a.edit('hello')
  await waitFor(() => b.text() === 'hello', 'b applied a\'s update')
  t.equal(a.stored.length, 1, 'a stored its own change')
  t.equal(b.stored.length, 1, 'b stored the peer\'s change too')
  t.equal(await counter(b, 'collab_bridge_gaps_total'), 0, 'no gap without a loss')
})

t.test('an update too large for one pub/sub message crosses in parts; a lost part is repaired', async t => {
  const { hub, a, b } = await twoNodes(t)
  const published: number[] = []
  hub.drop = (_channel, message) => {
    published.push(message.length)
    return false
  }
  const big = 'x'.repeat(3 * 1024 * 1024)
  a.edit(big)
  await waitFor(() => b.text() === big, 'b applied the large update')
  t.ok(published.length >= 6, `crossed as ${published.length} messages`)
  t.ok(Math.max(...published) < 600 * 1024, 'none larger than a part')

  // Lose the second part of the next large update: the series is dropped, the gap repaired.
  let parts = 0
  hub.drop = (_channel, message) => {
    const envelope = decodeEnvelope(message)
    return envelope?.t === EnvelopeKind.Part && envelope.n === 'a' && ++parts === 2
  }
  a.edit(big)
  a.edit('!')
  await waitFor(() => b.text() === big + big + '!', 'b caught up after the lost part')
  t.ok(await counter(b, 'collab_bridge_gaps_total') >= 1, 'the loss was seen as a gap')
})

t.test('a subscription that silently vanished is found by its missing echo, renewed, and re-synced', async t => {
  const { a, b } = await twoNodes(t)
  const channel = [...a.pubsub.channels].find(c => c.includes('{doc}'))!
  t.ok(channel !== undefined, 'a is subscribed to the document\'s channel')
  // What a Redis Cluster failover can do to a sharded subscription: gone, and nobody says so.
  a.pubsub.channels.delete(channel)
  b.edit('missed by a')
  await sleep(50)
  t.equal(a.text(), '', 'a missed it')
  // a makes no edit: the idle probe finds the break, then a subscribes again and re-syncs.
  await waitFor(async () => await counter(a, 'collab_bridge_broken_total') === 1, 'a noticed that its channel does not echo')
  await waitFor(() => a.text() === 'missed by a', 'a subscribed again and re-synced what it missed')
  t.ok(a.pubsub.channels.has(channel), 'subscribed again')
  await waitFor(() => a.links.brokenDocuments() === 0, 'the document counts as working again')
  a.edit(' and back')
  await waitFor(() => b.text().includes(' and back') && b.text() === a.text(), 'edits cross both ways again')
  t.equal(await counter(b, 'collab_bridge_broken_total'), 0, 'b\'s channel never broke')
})

t.test('a node whose own channel was lost (where repairs arrive) finds it, subscribes again, and gets what it missed', async t => {
  const { hub, a, b } = await twoNodes(t)
  b.edit('seen ')
  await waitFor(() => a.text() === 'seen ', 'a first update crossed')
  const own = a.links.ownChannel
  t.ok(a.pubsub.channels.has(own), 'a listens on its own channel')
  // A failover of the shard that held a's own channel: gone, and nobody says so.
  a.pubsub.channels.delete(own)
  // One of b's updates is lost: the next ones depend on it and stay pending at a until a repair.
  loseUpdatesFrom(hub, 'b', 1)
  b.edit('lost ')
  b.edit('pending')
  await waitFor(async () => await counter(a, 'collab_bridge_gaps_total') === 1, 'a saw the gap')
  t.equal(a.text(), 'seen ', 'the repair\'s answer could not reach a')
  await waitFor(async () => await counter(a, 'collab_bridge_broken_total') === 1, 'a noticed that its own channel does not echo')
  await waitFor(() => a.text() === 'seen lost pending', 'a subscribed again and re-synced what it missed')
  t.ok(a.pubsub.channels.has(own), 'subscribed again')
  await waitFor(() => a.links.brokenDocuments() === 0, 'the document counts as working again')
})

t.test('an update that waits for one never received is repaired even when no gap was seen', async t => {
  const { hub, a, b } = await twoNodes(t)
  b.edit('seen ')
  await waitFor(() => a.text() === 'seen ', 'the first update crossed')
  // A re-sync resets the numbers: the first message after it cannot show a gap.
  a.links.get('doc')!.peerSeqs.clear()
  loseUpdatesFrom(hub, 'b', 1)
  b.edit('lost ')
  b.edit('waiting')
  await waitFor(() => a.doc.ydoc.store.pendingStructs !== null, 'a holds b\'s last update pending')
  t.equal(a.text(), 'seen ', 'nothing integrated yet')
  await waitFor(() => a.text() === 'seen lost waiting', 'a asked for what it lacked')
  t.equal(a.doc.ydoc.store.pendingStructs, null, 'nothing waits any more')
})

t.test('a skipped sequence number makes the receiver ask for what it lacks', async t => {
  const { hub, a, b } = await twoNodes(t)
  a.edit('one ')
  await waitFor(() => b.text() === 'one ', 'first update crossed')
  const requestsBefore = await counter(b, 'collab_bridge_sync_requests_total')
  loseUpdatesFrom(hub, 'a', 1)
  a.edit('two ')
  a.edit('three')
  await waitFor(() => b.text() === 'one two three', 'the lost update was repaired')
  t.equal(await counter(b, 'collab_bridge_gaps_total'), 1, 'one gap detected')
  t.ok(await counter(b, 'collab_bridge_sync_requests_total') > requestsBefore, 'b sent a sync request')
})

t.test('a heartbeat ahead of the last number seen reveals a lost last message', async t => {
  const { hub, a, b } = await twoNodes(t)
  a.edit('seen ')
  await waitFor(() => b.text() === 'seen ', 'first update crossed')
  // Let the first heartbeat pass, so the next edit schedules a fresh one.
  await new Promise(resolve => setTimeout(resolve, HEARTBEAT_MS * 3))
  loseUpdatesFrom(hub, 'a', 1)
  a.edit('lost')
  await new Promise(resolve => setImmediate(resolve))
  t.equal(b.text(), 'seen ', 'the last update did not arrive by itself')
  await waitFor(() => b.text() === 'seen lost', 'the heartbeat made b re-sync')
  t.equal(await counter(b, 'collab_bridge_gaps_total'), 1)
})

t.test('a re-sync whose answer was lost is asked again until answered', async t => {
  const { hub, a, b } = await twoNodes(t)
  b.edit('seen ')
  await waitFor(() => a.text() === 'seen ', 'a first update crossed')
  // b's update is lost, then the answer to the re-sync that b's heartbeat makes a ask for: with
  // no pending update at a and no more edits, nothing else would ever ask again.
  const lost = { update: 1, reply: 1 }
  hub.drop = (_channel, message) => {
    const envelope = decodeEnvelope(message)
    if (envelope?.n !== 'b') return false
    if (envelope.t === EnvelopeKind.Update && lost.update > 0) return lost.update-- > 0
    if (envelope.t === EnvelopeKind.SyncReply && lost.reply > 0) return lost.reply-- > 0
    return false
  }
  b.edit('lost')
  await waitFor(() => lost.reply === 0, 'the answer to a\'s re-sync was lost')
  t.equal(a.text(), 'seen ', 'a lacks the edit')
  await waitFor(() => a.text() === 'seen lost', 'a asked again and got it')
  t.equal(await counter(a, 'collab_bridge_sync_unanswered_total'), 1, 'the unanswered re-sync is counted')
  t.equal(await counter(a, 'collab_bridge_broken_total'), 0, 'no channel was broken: only a message was lost')
  await sleep(400)
  t.equal(await counter(a, 'collab_bridge_sync_unanswered_total'), 1, 'answered requests are not asked again')
})

t.test('a sync reply carries back what the requester has and the replier lacks', async t => {
  const { hub, a, b } = await twoNodes(t)
  // Both edit while every update envelope is lost: each holds something the other lacks.
  hub.drop = (_channel, message) => decodeEnvelope(message)?.t === EnvelopeKind.Update
  a.edit('A')
  b.edit('B')
  await new Promise(resolve => setTimeout(resolve, 10))
  t.not(a.text(), b.text(), 'diverged while updates were lost')
  hub.drop = () => false
  // A reconnect to Redis re-syncs every document with the peers.
  b.pubsub.reconnect()
  await waitFor(() => a.text().length === 2 && a.text() === b.text(), 'both hold both edits')
})

t.test('after a reconnect the full state is queued for the store again', async t => {
  const hub = new MemoryPubSubHub()
  const a = await startNode(t, hub, 'a')
  a.edit('kept')
  const storedBefore = a.stored.length
  a.pubsub.reconnect()
  await waitFor(() => a.stored.length > storedBefore, 'full state re-queued')
  const restored = new Y.Doc()
  Y.applyUpdate(restored, a.stored.at(-1)!)
  t.equal(restored.getText('t').toString(), 'kept', 'the re-queued update is the whole document')
})

t.test('while pub/sub is down a reconnect waits for it before re-syncing', async t => {
  const { a, b } = await twoNodes(t)
  b.pubsub.connected = false
  a.edit('while b was away')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(b.text(), '', 'b missed it')
  b.pubsub.reconnect()
  await waitFor(() => b.text() === 'while b was away', 'b re-synced after reconnecting')
})

t.test('deletions and revocations from peers reach the node\'s operations', async t => {
  const hub = new MemoryPubSubHub()
  const links = new PeerLinks(hub.connect(), { nodeId: 'admin-node', keyPrefix: 'test:', heartbeatMs: HEARTBEAT_MS }, createLogger('silent'), new Metrics(false))
  const b = await startNode(t, hub, 'b')
  links.publishRevoke('doc', 'mallory')
  links.publishDelete('doc')
  await waitFor(() => b.deleted.length === 1 && b.revoked.length === 1, 'both notices arrived')
  t.same(b.revoked, ['doc/mallory'])
  t.same(b.deleted, ['doc'])
})

t.test('a node ignores its own envelopes and malformed ones', async t => {
  const hub = new MemoryPubSubHub()
  const a = await startNode(t, hub, 'a')
  a.edit('x')
  a.pubsub.publish('test:{doc}:bridge', Buffer.from([0xc1, 0x00]))
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(await counter(a, 'collab_bridge_received_total'), 0, 'nothing counted as received from a peer')
  t.equal(a.text(), 'x')
})

t.test('idle documents are probed within a budget per second, every one in turn', async t => {
  const hub = new MemoryPubSubHub()
  const pubsub = hub.connect()
  const probed: string[] = []
  const publish = pubsub.publish.bind(pubsub)
  pubsub.publish = (channel, message) => { probed.push(channel); return publish(channel, message) }
  const metrics = new Metrics(false)
  t.teardown(() => { metrics.stop() })
  // Checks every 100 ms with 50 probes a second: 5 per check.
  const links = new PeerLinks(pubsub, { nodeId: 'a', keyPrefix: 'test:', heartbeatMs: HEARTBEAT_MS, echoTimeoutMs: 100, echoProbeMs: 0, echoProbesPerSecond: 50 }, createLogger('silent'), metrics)
  const docs = Array.from({ length: 40 }, (_, i) => new LiveDocument(`idle-${i}`))
  for (const doc of docs) {
    await links.beforeLoad(doc)
    doc.state = 'live'
  }
  t.teardown(async () => { await links.close(); for (const doc of docs) doc.destroy() })
  // The echo, as the bridge would note it.
  await pubsub.subscribe(links.ownChannel)
  pubsub.onMessage(channel => {
    if (channel === links.ownChannel) links.noteOwnChannelEcho()
    else links.noteOwnEchoOn(channel)
  })
  const docProbes = (): string[] => probed.filter(c => c.includes('{idle-'))
  links.startWatchdog()
  await waitFor(() => docProbes().length > 0, 'the first check probed')
  links.stopWatchdog()
  t.ok(docProbes().length <= 10, `one or two checks probed at most 5 documents each (${docProbes().length})`)
  links.startWatchdog()
  await waitFor(() => new Set(docProbes()).size === docs.length, 'every document was probed in turn, though each is due again at once')
  links.stopWatchdog()
  t.equal(await metrics.total('collab_bridge_broken_total'), 0, 'every probe echoed')
})

t.test('after a failover signal, idle channels are checked every second for a while', async t => {
  const hub = new MemoryPubSubHub()
  const pubsub = hub.connect()
  const metrics = new Metrics(false)
  t.teardown(() => { metrics.stop() })
  // Idle channels are probed once a minute: a lost subscription would go unseen that long.
  const links = new PeerLinks(pubsub, { nodeId: 'a', keyPrefix: 'test:', heartbeatMs: HEARTBEAT_MS, echoTimeoutMs: 100, echoProbeMs: 60_000 }, createLogger('silent'), metrics)
  const doc = new LiveDocument('quiet')
  await links.beforeLoad(doc)
  doc.state = 'live'
  t.teardown(async () => { await links.close(); doc.destroy() })
  await pubsub.subscribe(links.ownChannel)
  pubsub.onMessage(channel => {
    if (channel === links.ownChannel) links.noteOwnChannelEcho()
    else links.noteOwnEchoOn(channel)
  })
  links.startWatchdog()
  const channel = [...pubsub.channels].find(c => c.includes('{quiet}'))!
  pubsub.channels.delete(channel)
  await sleep(1_500)
  t.equal(await metrics.total('collab_bridge_broken_total'), 0, 'not probed: the loss is not seen')
  // What the bridge does on a reconnect, a slot-map change, a gap or a broken channel.
  links.beWatchful()
  await waitFor(async () => await metrics.total('collab_bridge_broken_total') === 1, 'probed within seconds: the loss is found', 3_000)
  await waitFor(() => pubsub.channels.has(channel), 'and the channel subscribed again')
})

t.test('a node alone with a document publishes nothing; a node that loads it gets every edit through the sync, and edits cross again', async t => {
  const hub = new MemoryPubSubHub()
  const published: string[] = []
  hub.drop = (_channel, message) => {
    const envelope = decodeEnvelope(message)
    if (envelope?.t === EnvelopeKind.Update) published.push(envelope.n)
    return false
  }
  const a = await startNode(t, hub, 'a', 'solo')
  await waitFor(() => a.links.get('solo')?.peers === 'none', 'Redis answered the load\'s sync request: nobody else holds the document')
  a.edit('one ')
  await settle()
  a.edit('two ')
  a.edit('three ')
  await settle()
  t.same(published, [], 'nothing was published')
  t.equal(await counter(a, 'collab_bridge_publish_skipped_total'), 3, 'three edits kept from Redis')

  const b = await startNode(t, hub, 'b', 'solo')
  await waitFor(() => b.text() === 'one two three ', 'the node that loaded the document got every edit by the sync')
  a.edit('four')
  await waitFor(() => b.text() === 'one two three four', 'a\'s next edit crossed')
  t.same(published, ['a'], 'published once a peer held the document')
  // b's client starts empty: where its '!' lands among a's text depends on the client ids.
  b.edit('!')
  await waitFor(() => a.text().length === 'one two three four!'.length && a.text() === b.text(), 'and b\'s edits cross to a')

  // b unloads: the next answer to a's publish counts a alone again.
  await b.close()
  a.edit(' five')
  await waitFor(() => a.links.get('solo')?.peers === 'none', 'the answer to that publish counted a alone')
  a.edit(' six')
  await settle()
  t.same(published, ['a', 'b', 'a'], 'the edit after b left was the last one published')
  t.equal(await counter(a, 'collab_bridge_publish_skipped_total'), 4, 'then a kept them from Redis again')
})

t.test('a peer that subscribed without being heard of is found by the receiver count of a probe, and synced', async t => {
  const hub = new MemoryPubSubHub()
  const a = await startNode(t, hub, 'a', 'quiet')
  await waitFor(() => a.links.get('quiet')?.peers === 'none', 'a learned it is alone')
  a.edit('unpublished')
  await settle()
  t.equal(await counter(a, 'collab_bridge_publish_skipped_total'), 1, 'a believes itself alone')
  // b loads the document, but its sync request is lost: a never hears of it.
  let lost = 0
  hub.drop = (_channel, message) => {
    const envelope = decodeEnvelope(message)
    const drop = envelope?.t === EnvelopeKind.SyncRequest && envelope.n === 'b'
    if (drop) lost++
    return drop
  }
  const b = await startNode(t, hub, 'b', 'quiet')
  await waitFor(() => lost > 0, 'b\'s sync request was lost')
  hub.drop = () => false
  t.equal(b.text(), '', 'b lacks a\'s edit')
  t.equal(a.links.get('quiet')?.peers, 'none', 'a has not heard of b')
  // a's watchdog probes its idle channel: Redis answers with two receivers.
  await waitFor(() => b.text() === 'unpublished', 'the probe\'s receiver count revealed b; a re-synced with it')
})
