import type { Logger } from 'pino'
import type { Revocations } from '../auth/revocations.js'
import type { PeerCommands } from '../cluster/bridge.js'
import type { DocumentRegistry } from '../documents/registry.js'
import type { DocumentStore } from '../persistence/document-store.js'
import type { WriteBehind } from '../persistence/write-behind.js'
import { CloseCode } from '../protocol/close-codes.js'
import type { ConnectionTable } from './connection-table.js'

export interface Readiness {
  ready: boolean
  status: 'ready' | 'not-ready'
  problems: string[]
}

/** How operations reach the other nodes (cluster mode); the cluster's peer links implement it. */
export interface PeerNotices {
  publishDelete (docId: string): void
  publishRevoke (docId: string, userId: string): void
}

export interface NodeOperationsOptions {
  /** How long a deleted document refuses to load again (HTTP 410), so live clients cannot resurrect it. */
  deleteTombstoneSeconds: number
  /** A second deletion follows the first this much later, for peers' writes that were in flight. */
  deleteRepeatMs: number
  revocationTtlSeconds: number
}

export interface NodeOperationsDependencies {
  registry: DocumentRegistry
  connections: ConnectionTable
  store: DocumentStore
  writeBehind: WriteBehind
  revocations: Revocations
  /** Cluster mode: the other nodes, and whether Redis pub/sub is connected. Null on a single node. */
  peers: PeerNotices | null
  redisConnected: (() => boolean) | null
  /** Cluster mode: documents whose bridge channel has not worked for at least `forMs`. */
  brokenBridges: ((forMs: number) => number) | null
  log: Logger
}

/** How long a document's bridge may be broken before the node reports itself not ready. */
const BRIDGE_BROKEN_NOT_READY_MS = 10_000

/**
 * What an operator (the admin API, the readiness probe, shutdown) or another node can ask of this
 * node about its documents and connections. The admin routes and the cluster bridge both call
 * these, so a deletion or a revocation does the same here whichever node it started on.
 */
export class NodeOperations implements PeerCommands {
  private shuttingDown = false
  /** The problems last reported, so that the log says when readiness changes, not at every probe. */
  private lastProblems = ''

  constructor (private readonly options: NodeOperationsOptions, private readonly deps: NodeOperationsDependencies) {}

  /** True once shutdown began: upgrades are refused and readiness fails. */
  get closing (): boolean {
    return this.shuttingDown
  }

  beginShutdown (): void {
    this.shuttingDown = true
  }

  /** Deletes a document on every node and in the store. */
  async deleteDocument (docId: string): Promise<void> {
    const { store, peers, log } = this.deps
    peers?.publishDelete(docId)
    await this.dropDocument(docId)
    await store.delete(docId, this.options.deleteTombstoneSeconds)
    // A peer's write that was already in flight when it learned of the deletion may still land:
    // delete once more after it had time to finish.
    setTimeout(() => { void store.delete(docId, this.options.deleteTombstoneSeconds).catch(() => {}) }, this.options.deleteRepeatMs).unref()
    log.info({ docId }, 'document deleted')
  }

  /** Revokes a user's access to a document and closes their connections on every node. */
  async revoke (docId: string, userId: string): Promise<number> {
    const { revocations, peers, log } = this.deps
    await revocations.revoke(docId, userId, this.options.revocationTtlSeconds)
    peers?.publishRevoke(docId, userId)
    const closed = this.closeUserConnections(docId, userId)
    log.info({ docId, userId, closed }, 'access revoked')
    return closed
  }

  async restore (docId: string, userId: string): Promise<void> {
    await this.deps.revocations.restore(docId, userId)
  }

  documentDeletedByPeer (docId: string): void {
    void this.dropDocument(docId)
  }

  accessRevokedByPeer (docId: string, userId: string): void {
    this.closeUserConnections(docId, userId)
  }

  async readiness (): Promise<Readiness> {
    const { writeBehind, store, redisConnected } = this.deps
    const problems: string[] = []
    if (this.shuttingDown) problems.push('shutting down')
    if (!writeBehind.healthy) problems.push(`store writes failing: ${writeBehind.failure ?? 'unknown'}`)
    try {
      await store.ping()
    } catch (err) {
      problems.push(`store unreachable: ${(err as Error).message}`)
    }
    if (redisConnected !== null && !redisConnected()) problems.push('redis pub/sub disconnected')
    // A short break is repaired by the watchdog within seconds; one that lasts means edits do not
    // cross between this node and the others: take the node out of rotation until it works.
    const broken = this.deps.brokenBridges?.(BRIDGE_BROKEN_NOT_READY_MS) ?? 0
    if (broken > 0) problems.push(`${broken} document${broken === 1 ? '' : 's'} without a working bridge to the other nodes`)
    const summary = problems.join('; ')
    if (summary !== this.lastProblems) {
      if (problems.length > 0) this.deps.log.warn({ problems }, 'not ready')
      else this.deps.log.info('ready again')
      this.lastProblems = summary
    }
    return { ready: problems.length === 0, status: problems.length === 0 ? 'ready' : 'not-ready', problems }
  }

  /** Closes this node's connections of one user to one document. */
  private closeUserConnections (docId: string, userId: string): number {
    return this.deps.connections.closeDocument(docId, CloseCode.AccessRevoked, 'access revoked', userId)
  }

  /** Closes this node's connections to a deleted document and forgets it without storing it. */
  private async dropDocument (docId: string): Promise<void> {
    this.deps.connections.closeDocument(docId, CloseCode.DocumentDeleted, 'document deleted')
    await this.deps.registry.drop(docId)
  }
}
