/**
 * Every Redis key and channel name the server uses. All of one document's names carry the hash tag
 * {docId}, so in Redis Cluster they share one slot (and one shard for sharded pub/sub).
 * Document ids cannot contain braces (documents/document-id.ts), so the tag is exact.
 */
export function documentKeys (prefix: string, docId: string): {
  log: string
  snapshot: string
  tombstone: string
  /** Version ids (a sorted set, all scores 0, read by lexicographic range) */
  versions: string
  /** Version id to metadata JSON (a hash). */
  versionMeta: string
  /** Version id to state (a hash). */
  versionState: string
  /** The node taking the document's next automatic version (a string with an expiry). */
  versionClaim: string
  /** Authors of changes not yet in a version, from every node (a set). */
  versionAuthors: string
  /** Held by the node restoring the document (a string with an expiry). */
  restoreLock: string
  channel: string
  participantNodes: string
  participants: (nodeId: string) => string
  revoked: (userId: string) => string
} {
  const base = `${prefix}{${docId}}`
  return {
    log: `${base}:log`,
    snapshot: `${base}:snap`,
    tombstone: `${base}:deleted`,
    versions: `${base}:versions`,
    versionMeta: `${base}:version-meta`,
    versionState: `${base}:version-state`,
    versionClaim: `${base}:version-claim`,
    versionAuthors: `${base}:version-authors`,
    restoreLock: `${base}:restore-lock`,
    channel: `${base}:bridge`,
    participantNodes: `${base}:participant-nodes`,
    participants: nodeId => `${base}:participants:${nodeId}`,
    revoked: userId => `${base}:revoked:${encodeURIComponent(userId)}`
  }
}

/** Present while the node lives (it renews the key's expiry): its participant entries count only then. */
export function nodeAliveKey (prefix: string, nodeId: string): string {
  return `${prefix}node-alive:{${nodeId}}`
}

/** The channel on which a node receives replies meant for it alone. */
export function nodeChannel (prefix: string, nodeId: string): string {
  return `${prefix}node:{${nodeId}}`
}

/** The inspector's directory of live nodes: a sorted set of node ids and one snapshot per node. */
export function nodeDirectoryKeys (prefix: string): { nodes: string, node: (nodeId: string) => string } {
  return {
    nodes: `${prefix}nodes`,
    node: nodeId => `${prefix}nodes:${nodeId}`
  }
}
