/**
 * The shape of GET /inspect.json as the inspector reads it. It mirrors NodeSnapshot in
 * src/server/node-snapshot.ts (which cannot be imported here: it pulls in server modules);
 * test/playground.test.ts checks at compile time that a NodeSnapshot is assignable to it.
 */
export interface InspectedDocument {
  docId: string
  connections: number
  awareness: number
  pendingWrite: boolean
  /** Cluster mode: the document's channel to the other nodes does not work right now. */
  bridgeBroken?: boolean
  /** Encoded size, when the server reports it. */
  bytes?: number
}

export interface InspectedNode {
  nodeId: string
  mode: 'single' | 'cluster'
  startedAt: number
  takenAt: number
  ready: boolean
  /** Why the node is not ready, when the server reports it. */
  problems?: string[]
  connections: number
  documents: InspectedDocument[]
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  writeBehind: { pendingDocuments: number, pendingBytes: number, healthy: boolean, failure: string | null }
  redis: { connected: boolean } | null
  memory: { rssBytes: number, heapUsedBytes: number }
}

export interface InspectResponse {
  self: InspectedNode
  nodes: InspectedNode[]
}
