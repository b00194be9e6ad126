import type { DocumentRegistry } from '../documents/registry.js'
import type { Metrics } from '../metrics/metrics.js'
import type { WriteBehind } from '../persistence/write-behind.js'

/** What the inspector shows about one node. Cheap to build: no document is encoded. */
export interface NodeSnapshot {
  nodeId: string
  mode: 'single' | 'cluster'
  startedAt: number
  takenAt: number
  ready: boolean
  /** Why the node is not ready (empty when it is): for admins only, /readyz says only the word. */
  problems: string[]
  connections: number
  /**
   * bytes: the document's encoded size, estimated (exact at load, plus every update since);
   * bridgeBroken: its channel to the other nodes does not work right now (cluster mode).
   */
  documents: Array<{ docId: string, connections: number, awareness: number, bytes: number, pendingWrite: boolean, bridgeBroken: boolean }>
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  writeBehind: { pendingDocuments: number, pendingBytes: number, healthy: boolean, failure: string | null }
  redis: { connected: boolean } | null
  memory: { rssBytes: number, heapUsedBytes: number }
}

export interface SnapshotSources {
  nodeId: string
  startedAt: number
  registry: DocumentRegistry
  writeBehind: WriteBehind
  metrics: Metrics
  connections: { readonly size: number }
  readiness: () => Promise<{ ready: boolean, problems: string[] }>
  redisConnected: (() => boolean) | null
  /** Cluster mode: whether a document's bridge channel is broken now. */
  bridgeBroken?: (docId: string) => boolean
}

export async function takeNodeSnapshot (sources: SnapshotSources): Promise<NodeSnapshot> {
  const documents = [...sources.registry.values()].map(doc => ({
    docId: doc.id,
    connections: doc.refs,
    awareness: doc.presence.presentCount,
    bytes: doc.sizeEstimate,
    pendingWrite: sources.writeBehind.hasPending(doc.id),
    bridgeBroken: sources.bridgeBroken?.(doc.id) ?? false
  }))
  const memory = process.memoryUsage()
  const readiness = await sources.readiness()
  return {
    nodeId: sources.nodeId,
    mode: sources.redisConnected === null ? 'single' : 'cluster',
    startedAt: sources.startedAt,
    takenAt: Date.now(),
    ready: readiness.ready,
    problems: readiness.problems,
    connections: sources.connections.size,
    documents,
    messagesIn: await sources.metrics.total('collab_messages_in_total'),
    messagesOut: await sources.metrics.total('collab_messages_out_total'),
    bytesIn: await sources.metrics.total('collab_bytes_in_total'),
    bytesOut: await sources.metrics.total('collab_bytes_out_total'),
    writeBehind: {
      pendingDocuments: sources.writeBehind.pendingDocuments,
      pendingBytes: sources.writeBehind.pendingBytes,
      healthy: sources.writeBehind.healthy,
      failure: sources.writeBehind.failure
    },
    redis: sources.redisConnected === null ? null : { connected: sources.redisConnected() },
    memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed }
  }
}

/** What the inspector shows: this node, and every live node of the cluster (this one first). */
export async function clusterSnapshot (self: () => Promise<NodeSnapshot>, directory: { list: () => Promise<NodeSnapshot[]> } | null): Promise<{ self: NodeSnapshot, nodes: NodeSnapshot[] }> {
  const mine = await self()
  const others = directory === null ? [] : (await directory.list().catch(() => [])).filter(n => n.nodeId !== mine.nodeId)
  return { self: mine, nodes: [mine, ...others] }
}

/** Sets the gauges that are read from live state just before a scrape. */
export function refreshNodeGauges (metrics: Metrics, registry: DocumentRegistry, writeBehind: WriteBehind): void {
  metrics.documentsLoaded.set(registry.size)
  metrics.writeBehindPendingBytes.set(writeBehind.pendingBytes)
  metrics.writeBehindPendingDocuments.set(writeBehind.pendingDocuments)
}
