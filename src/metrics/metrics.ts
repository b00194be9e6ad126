import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Message kinds as labelled in metrics; a fixed set so label children can be created up front. */
export const MESSAGE_KINDS = ['sync-step1', 'sync-step2', 'sync-update', 'awareness', 'query-awareness', 'offline-batch', 'auth', 'extension', 'invalid'] as const
export type MessageKind = typeof MESSAGE_KINDS[number]

interface Child { inc: (value?: number) => void }

/**
 * Every Prometheus metric of one server instance, in its own registry (tests run several servers
 * in one process). Hot-path counters are pre-bound label children, so counting a message is a
 * property lookup and an addition, not a label-hash lookup.
 */
export class Metrics {
  readonly registry = new Registry()

  readonly connections = new Gauge({ name: 'collab_connections', help: 'Open WebSocket connections', registers: [this.registry] })
  readonly documentsLoaded = new Gauge({ name: 'collab_documents_loaded', help: 'Documents loaded in memory on this node', registers: [this.registry] })
  readonly upgrades = new Counter({ name: 'collab_upgrades_total', help: 'WebSocket upgrade attempts by HTTP status answered (101 = upgraded)', labelNames: ['status'], registers: [this.registry] })
  readonly authFailures = new Counter({ name: 'collab_auth_failures_total', help: 'Refused tokens by reason (missing, invalid, expired, unavailable, forbidden)', labelNames: ['reason'], registers: [this.registry] })
  readonly closes = new Counter({ name: 'collab_closes_total', help: 'Closed connections by WebSocket close code', labelNames: ['code'], registers: [this.registry] })

  private readonly messagesInCounter = new Counter({ name: 'collab_messages_in_total', help: 'Messages received from clients, by kind', labelNames: ['kind'], registers: [this.registry] })
  private readonly bytesInCounter = new Counter({ name: 'collab_bytes_in_total', help: 'Bytes received from clients, by message kind', labelNames: ['kind'], registers: [this.registry] })
  private readonly messagesOutCounter = new Counter({ name: 'collab_messages_out_total', help: 'Messages sent: direct sends count once, topic publishes once per publish (not per recipient)', labelNames: ['kind'], registers: [this.registry] })
  private readonly bytesOutCounter = new Counter({ name: 'collab_bytes_out_total', help: 'Bytes of the messages counted in collab_messages_out_total', labelNames: ['kind'], registers: [this.registry] })
  readonly messagesIn: Record<MessageKind, Child>
  readonly bytesIn: Record<MessageKind, Child>
  readonly messagesOut: Record<MessageKind, Child>
  readonly bytesOut: Record<MessageKind, Child>

  readonly updateApplySeconds = new Histogram({ name: 'collab_update_apply_seconds', help: 'Time to apply one client update to the server document', buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05], registers: [this.registry] })
  readonly fanoutSeconds = new Histogram({ name: 'collab_fanout_seconds', help: 'Time to hand one update to uWS for every local subscriber (ws.publish)', buckets: [0.000005, 0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01], registers: [this.registry] })

  readonly bridgePublished = new Counter({ name: 'collab_bridge_published_total', help: 'Envelopes published to Redis for other nodes', registers: [this.registry] })
  readonly bridgePublishFailed = new Counter({ name: 'collab_bridge_publish_failed_total', help: 'Envelopes not published because Redis was unreachable (repaired by re-sync)', registers: [this.registry] })
  readonly bridgeReceived = new Counter({ name: 'collab_bridge_received_total', help: 'Envelopes received from other nodes for loaded documents', registers: [this.registry] })
  readonly bridgeGaps = new Counter({ name: 'collab_bridge_gaps_total', help: 'Lost bridge messages detected by sequence numbers or heartbeats', registers: [this.registry] })
  readonly bridgeSyncRequests = new Counter({ name: 'collab_bridge_sync_requests_total', help: 'State-vector re-sync requests sent to peers', registers: [this.registry] })
  readonly bridgeLagSeconds = new Histogram({ name: 'collab_bridge_lag_seconds', help: 'Time from a peer publishing an update to this node applying it (includes clock skew between hosts)', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] })

  readonly writeBehindPendingBytes = new Gauge({ name: 'collab_write_behind_pending_bytes', help: 'Update bytes applied but not yet in the store', registers: [this.registry] })
  readonly writeBehindPendingDocuments = new Gauge({ name: 'collab_write_behind_pending_documents', help: 'Documents with updates not yet in the store', registers: [this.registry] })
  readonly storeFlushSeconds = new Histogram({ name: 'collab_store_flush_seconds', help: 'Duration of one write-behind flush (one store write for all documents)', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] })
  readonly storeErrors = new Counter({ name: 'collab_store_errors_total', help: 'Failed store operations by operation (load, append, compact)', labelNames: ['operation'], registers: [this.registry] })
  readonly offlineBatches = new Counter({ name: 'collab_offline_batches_total', help: 'Offline batches by result (applied, already-applied, rejected, store-failed)', labelNames: ['result'], registers: [this.registry] })

  constructor (defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'collab_' })
    this.messagesIn = bind(this.messagesInCounter)
    this.bytesIn = bind(this.bytesInCounter)
    this.messagesOut = bind(this.messagesOutCounter)
    this.bytesOut = bind(this.bytesOutCounter)
  }

  /** Counts one outgoing message of `bytes` bytes. */
  sent (kind: MessageKind, bytes: number): void {
    this.messagesOut[kind].inc()
    this.bytesOut[kind].inc(bytes)
  }

  received (kind: MessageKind, bytes: number): void {
    this.messagesIn[kind].inc()
    this.bytesIn[kind].inc(bytes)
  }

  /** Current value of an unlabelled or labelled counter, summed over labels (for the inspector). */
  async total (name: string): Promise<number> {
    const metric = await this.registry.getSingleMetric(name)?.get()
    return metric?.values.reduce((sum, v) => sum + v.value, 0) ?? 0
  }
}

function bind (counter: Counter<'kind'>): Record<MessageKind, Child> {
  const children = {} as Record<MessageKind, Child>
  for (const kind of MESSAGE_KINDS) children[kind] = counter.labels(kind)
  return children
}
