import { EventLoopMetrics, REPLACED_DEFAULT_METRICS } from './event-loop.js'
import { HotHistogram } from './hot-histogram.js'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Message kinds as labelled in metrics; a fixed set so label children can be created up front. */
export const MESSAGE_KINDS = ['sync-step1', 'sync-step2', 'sync-update', 'awareness', 'query-awareness', 'offline-batch', 'auth', 'extension', 'invalid'] as const
export type MessageKind = typeof MESSAGE_KINDS[number]

/**
 * Every Prometheus metric of one server instance, in its own registry (tests run several servers
 * in one process). Hot-path counters are pre-bound label children, so counting a message is a
 * property lookup and an addition, not a label-hash lookup.
 */
/** One update in this many is timed (a power of two): two clock reads per update add up. */
const SAMPLE_EVERY = 32

export class Metrics {
  readonly registry = new Registry()

  readonly connections = new Gauge({ name: 'collab_connections', help: 'Open WebSocket connections', registers: [this.registry] })
  readonly documentsLoaded = new Gauge({ name: 'collab_documents_loaded', help: 'Documents loaded in memory on this node', registers: [this.registry] })
  readonly upgrades = new Counter({ name: 'collab_upgrades_total', help: 'WebSocket upgrade attempts by HTTP status answered (101 = upgraded)', labelNames: ['status'], registers: [this.registry] })
  readonly authFailures = new Counter({ name: 'collab_auth_failures_total', help: 'Refused tokens by reason (missing, invalid, expired, unavailable, forbidden)', labelNames: ['reason'], registers: [this.registry] })
  readonly closes = new Counter({ name: 'collab_closes_total', help: 'Closed connections by WebSocket close code', labelNames: ['code'], registers: [this.registry] })
  readonly upgradeDrops = new Counter({ name: 'collab_upgrade_drops_total', help: 'Sockets the pinned uWS build closed as it upgraded them (uNetworking/uWebSockets#1928); also counted in collab_closes_total as 1006', registers: [this.registry] })

  // Message counters are plain numbers on the hot path (prom-client hashes labels on every inc);
  // they are copied into the registry only when it is scraped.
  private readonly counts = {
    messagesIn: new Float64Array(MESSAGE_KINDS.length),
    bytesIn: new Float64Array(MESSAGE_KINDS.length),
    messagesOut: new Float64Array(MESSAGE_KINDS.length),
    bytesOut: new Float64Array(MESSAGE_KINDS.length)
  }

  private readonly messagesInCounter = scrapedCounter(this.registry, 'collab_messages_in_total', 'Messages received from clients, by kind', this.counts.messagesIn)
  private readonly bytesInCounter = scrapedCounter(this.registry, 'collab_bytes_in_total', 'Bytes received from clients, by message kind', this.counts.bytesIn)
  private readonly messagesOutCounter = scrapedCounter(this.registry, 'collab_messages_out_total', 'Messages sent: direct sends count once, topic publishes once per publish (not per recipient)', this.counts.messagesOut)
  private readonly bytesOutCounter = scrapedCounter(this.registry, 'collab_bytes_out_total', 'Bytes of the messages counted in collab_messages_out_total', this.counts.bytesOut)

  /** Hot-path timings are sampled: one update in SAMPLE_EVERY is timed. */
  private sampleTick = 0

  readonly updateApplySeconds = new HotHistogram(this.registry, 'collab_update_apply_seconds', `Time to apply one client update to the server document (sampled: 1 update in ${SAMPLE_EVERY})`, [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05])
  readonly fanoutSeconds = new HotHistogram(this.registry, 'collab_fanout_seconds', `Time to distribute one applied update: local publish to every subscriber, bridge publish, store queue (sampled: 1 update in ${SAMPLE_EVERY})`, [0.000005, 0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01])

  readonly bridgePublished = new Counter({ name: 'collab_bridge_published_total', help: 'Envelopes published to Redis for other nodes', registers: [this.registry] })
  readonly bridgePublishSkipped = new Counter({ name: 'collab_bridge_publish_skipped_total', help: 'Updates and presence not published because no other node held the document', registers: [this.registry] })
  readonly bridgePublishFailed = new Counter({ name: 'collab_bridge_publish_failed_total', help: 'Envelopes not published because Redis was unreachable (repaired by re-sync)', registers: [this.registry] })
  readonly bridgeReceived = new Counter({ name: 'collab_bridge_received_total', help: 'Envelopes received from other nodes for loaded documents', registers: [this.registry] })
  readonly bridgeGaps = new Counter({ name: 'collab_bridge_gaps_total', help: 'Lost bridge messages detected by sequence numbers or heartbeats', registers: [this.registry] })
  readonly bridgeBrokenDetected = new Counter({ name: 'collab_bridge_broken_total', help: 'Times a document\'s bridge channel stopped echoing this node\'s own messages (subscription lost); it is subscribed again', registers: [this.registry] })
  readonly bridgeBrokenDocuments = new Gauge({ name: 'collab_bridge_broken_documents', help: 'Documents whose bridge channel does not work right now', registers: [this.registry] })
  readonly bridgeSyncRequests = new Counter({ name: 'collab_bridge_sync_requests_total', help: 'State-vector re-sync requests sent to peers', registers: [this.registry] })
  readonly bridgeSyncUnanswered = new Counter({ name: 'collab_bridge_sync_unanswered_total', help: 'Re-sync requests that peers received but did not answer in time (asked again)', registers: [this.registry] })
  // Observed for every update a peer sends: a HotHistogram like the update timings, not prom-client.
  readonly bridgeLagSeconds = new HotHistogram(this.registry, 'collab_bridge_lag_seconds', 'Time from a peer publishing an update to this node applying it (includes clock skew between hosts)', [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])

  readonly writeBehindPendingBytes = new Gauge({ name: 'collab_write_behind_pending_bytes', help: 'Update bytes applied but not yet in the store', registers: [this.registry] })
  readonly writeBehindPendingDocuments = new Gauge({ name: 'collab_write_behind_pending_documents', help: 'Documents with updates not yet in the store', registers: [this.registry] })
  readonly storeFlushSeconds = new Histogram({ name: 'collab_store_flush_seconds', help: 'Duration of one write-behind flush (one store write for all documents)', buckets: [0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] })
  readonly storeErrors = new Counter({ name: 'collab_store_errors_total', help: 'Failed store operations by operation (load, append, compact; lost: the store lost a loaded document, whose full state was written again)', labelNames: ['operation'], registers: [this.registry] })
  readonly databaseQuerySeconds = new Histogram({ name: 'collab_database_query_seconds', help: 'PostgreSQL store: duration of each query or transaction, by operation', labelNames: ['operation'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30], registers: [this.registry] })
  readonly databaseErrors = new Counter({ name: 'collab_database_errors_total', help: 'PostgreSQL store: failed queries by operation', labelNames: ['operation'], registers: [this.registry] })

  /** The join cache's gauges, read at scrape time (JoinCacheBudget: one per process). */
  watchJoinCache (budget: { used: number, holders: number }): void {
    new Gauge({ name: 'collab_join_cache_bytes', help: 'Bytes loaded documents keep to answer fresh joins (full states, recorded chunks), bounded by JOIN_CACHE_MAX_BYTES', registers: [this.registry], collect () { this.set(budget.used) } })
    new Gauge({ name: 'collab_join_cache_documents', help: 'Documents keeping a cached answer to fresh joins', registers: [this.registry], collect () { this.set(budget.holders) } })
  }

  /** Pool gauges read at scrape time (PostgreSQL store only). */
  watchDatabasePool (pool: { totalCount: number, idleCount: number, waitingCount: number }): void {
    new Gauge({ name: 'collab_database_connections_in_use', help: 'PostgreSQL store: pool connections running a query', registers: [this.registry], collect () { this.set(pool.totalCount - pool.idleCount) } })
    new Gauge({ name: 'collab_database_connections_idle', help: 'PostgreSQL store: open pool connections waiting for work', registers: [this.registry], collect () { this.set(pool.idleCount) } })
    new Gauge({ name: 'collab_database_waiting_queries', help: 'PostgreSQL store: queries waiting for a free pool connection', registers: [this.registry], collect () { this.set(pool.waitingCount) } })
  }

  readonly versionsCreated = new Counter({ name: 'collab_versions_created_total', help: 'Document versions taken, by reason (auto, named, before-restore, before-offline-merge)', labelNames: ['reason'], registers: [this.registry] })
  readonly versionsDeleted = new Counter({ name: 'collab_versions_deleted_total', help: 'Document versions deleted by retention or the API', registers: [this.registry] })
  readonly versionBytesWritten = new Counter({ name: 'collab_version_bytes_written_total', help: 'Bytes of version state this node wrote to the store', registers: [this.registry] })
  readonly versionBytesDeleted = new Counter({ name: 'collab_version_bytes_deleted_total', help: 'Bytes of version state this node deleted (retention, API); written minus deleted, summed over nodes, is what versions hold in the store', registers: [this.registry] })
  readonly offlineBatches = new Counter({ name: 'collab_offline_batches_total', help: 'Offline batches by result (applied, already-applied, rejected, store-failed)', labelNames: ['result'], registers: [this.registry] })

  private readonly eventLoop: EventLoopMetrics | null = null

  constructor (defaultMetrics = true) {
    if (defaultMetrics) {
      // prom-client's delay monitor cannot be left out on its own: its timer is slowed to once a
      // minute and its metrics replaced (see event-loop.ts).
      collectDefaultMetrics({ register: this.registry, prefix: PREFIX, eventLoopMonitoringPrecision: 60_000 })
      for (const name of REPLACED_DEFAULT_METRICS) this.registry.removeSingleMetric(PREFIX + name)
      this.eventLoop = new EventLoopMetrics(this.registry, PREFIX)
    }
    // Referenced so the scrape-time counters stay registered and visible to tsc as used.
    void [this.messagesInCounter, this.bytesInCounter, this.messagesOutCounter, this.bytesOutCounter]
  }

  /** Counts one outgoing message of `bytes` bytes. */
  sent (kind: MessageKind, bytes: number): void {
    const i = KIND_INDEX[kind]
    this.counts.messagesOut[i]!++
    this.counts.bytesOut[i]! += bytes
  }

  received (kind: MessageKind, bytes: number): void {
    const i = KIND_INDEX[kind]
    this.counts.messagesIn[i]!++
    this.counts.bytesIn[i]! += bytes
  }

  /** True for the updates whose apply and fan-out times are measured. */
  sampleThis (): boolean {
    return (++this.sampleTick & (SAMPLE_EVERY - 1)) === 0
  }

  /** Stops the event-loop delay sampler (the registry keeps answering). */
  stop (): void {
    this.eventLoop?.stop()
  }

  /** Current value of an unlabelled or labelled counter, summed over labels (for the inspector). */
  async total (name: string): Promise<number> {
    const metric = await this.registry.getSingleMetric(name)?.get()
    return metric?.values.reduce((sum, v) => sum + v.value, 0) ?? 0
  }
}

const PREFIX = 'collab_'

const KIND_INDEX = Object.fromEntries(MESSAGE_KINDS.map((kind, i) => [kind, i])) as Record<MessageKind, number>

/** A counter labelled by message kind whose values live in `values` and are read at scrape time. */
function scrapedCounter (registry: Registry, name: string, help: string, values: Float64Array): Counter<'kind'> {
  return new Counter({
    name,
    help,
    labelNames: ['kind'],
    registers: [registry],
    collect (this: Counter<'kind'>) {
      this.reset()
      MESSAGE_KINDS.forEach((kind, i) => { if (values[i]! > 0) this.labels(kind).inc(values[i]!) })
    }
  })
}
