import type { Logger } from 'pino'
import uWS from 'uWebSockets.js'
import { join } from 'node:path'
import { createVerifier } from '../auth/create-verifier.js'
import { FileRevocations, RedisRevocations, type Revocations } from '../auth/revocations.js'
import { ClusterBridge } from '../cluster/bridge.js'
import { createClusterResources, type ClusterResources } from '../cluster/cluster-mode.js'
import { NodeDirectory } from '../cluster/node-directory.js'
import type { Config } from '../config/config.js'
import { LocalParticipants, type ParticipantDirectory } from '../documents/participants.js'
import { DocumentRegistry } from '../documents/registry.js'
import { Metrics } from '../metrics/metrics.js'
import type { DocumentStore } from '../persistence/document-store.js'
import { LevelDbStore } from '../persistence/leveldb-store.js'
import { WriteBehind } from '../persistence/write-behind.js'
import { registerPlaygroundRoutes } from '../playground/routes.js'
import { ChangeWebhook } from '../webhooks/change-webhook.js'
import { CloseCode } from '../protocol/close-codes.js'
import { MalformedMessageError } from '../protocol/messages.js'
import { registerAdminRoutes } from './admin-routes.js'
import type { Connection, SocketData } from './connection.js'
import { ExpirySchedule } from './expiry-schedule.js'
import { registerHttpRoutes, registerNotFound, type Readiness } from './http-routes.js'
import { dropPresence, greet, handleMessage, publishAwarenessTimeouts, type MessageContext } from './message-handler.js'
import { takeNodeSnapshot, type NodeSnapshot } from './node-snapshot.js'
import { DOCUMENT_PATH_PREFIX, handleUpgrade, type UpgradeContext } from './upgrade.js'

export interface CollabServer {
  readonly port: number
  readonly nodeId: string
  readonly registry: DocumentRegistry
  readonly writeBehind: WriteBehind
  readonly metrics: Metrics
  /** Cluster mode only. */
  readonly bridge: ClusterBridge | null
  readonly connectionCount: number
  readiness (): Promise<Readiness>
  /** Stops accepting, closes every socket with 1001, flushes all documents, closes the store. */
  close (): Promise<void>
}

export interface ServerDependencies {
  /** Overrides the store chosen by the configuration (LevelDB, or Redis in cluster mode). */
  store?: DocumentStore
}

/** How long a deleted document refuses to load again (HTTP 410), so live clients cannot resurrect it. */
const DELETE_TOMBSTONE_SECONDS = 60

export async function startServer (config: Config, log: Logger, deps: ServerDependencies = {}): Promise<CollabServer> {
  log = log.child({ nodeId: config.nodeId })
  const startedAt = Date.now()
  const metrics = new Metrics()
  const cluster: ClusterResources | null = config.cluster === null ? null : createClusterResources(config.cluster, config.nodeId, log)
  const store = deps.store ?? cluster?.store ?? new LevelDbStore(config.dataDir)
  const participants: ParticipantDirectory = cluster?.participants ?? new LocalParticipants(config.nodeId)
  await store.open()
  const verifier = await createVerifier(config)
  const writeBehind = new WriteBehind(store, { intervalMs: config.flushIntervalMs, retryMaxMs: config.storeRetryMaxMs }, log, metrics)
  const app = config.tls === null
    ? uWS.App()
    : uWS.SSLApp({ cert_file_name: config.tls.certFile, key_file_name: config.tls.keyFile, ...(config.tls.passphrase === undefined ? {} : { passphrase: config.tls.passphrase }) })
  const revocations: Revocations = cluster !== null && config.cluster !== null
    ? new RedisRevocations(cluster.connections.commands, config.cluster.keyPrefix)
    : new FileRevocations(join(config.dataDir, 'revocations.json'))
  /** Open connections; each reaches its socket through `conn.socket`. */
  const connections = new Set<Connection>()
  let closing = false
  const debugLogging = log.isLevelEnabled('debug')
  const webhook = config.webhook === null ? null : new ChangeWebhook({ ...config.webhook, nodeId: config.nodeId }, log)

  const messages: MessageContext = {
    app,
    writeBehind,
    bridge: null,
    batchLimits: { maxUpdates: config.offlineBatchMaxUpdates, maxBytes: config.offlineBatchMaxBytes },
    maxDocumentBytes: config.limits.maxDocumentBytes,
    metrics,
    onLocalChange: webhook === null ? null : docId => webhook.noteChange(docId)
  }

  const registry = new DocumentRegistry(store, writeBehind, {
    idleUnloadMs: config.docIdleUnloadMs,
    compactAfterEntries: config.compactAfterEntries,
    unloadRetryMs: config.storeRetryMaxMs
  }, log, {
    beforeLoad: async docId => { await messages.bridge?.attach(docId) },
    afterLoad: doc => {
      publishAwarenessTimeouts(messages, doc)
      messages.bridge?.loaded(doc)
    },
    afterUnload: async docId => { await messages.bridge?.detach(docId) }
  }, metrics)

  /** Closes this node's connections of one user to one document. */
  const closeUserConnections = (docId: string, userId: string): number => {
    let closed = 0
    for (const conn of [...connections]) {
      if (conn.docId === docId && conn.userId === userId) {
        conn.log.info('closing: access revoked')
        conn.socket?.end(CloseCode.AccessRevoked, 'access revoked')
        closed++
      }
    }
    return closed
  }

  /** Closes this node's connections to a deleted document and forgets it. */
  const dropDocument = async (docId: string): Promise<void> => {
    for (const conn of [...connections]) {
      if (conn.docId === docId) conn.socket?.end(CloseCode.DocumentDeleted, 'document deleted')
    }
    await registry.drop(docId)
  }

  if (cluster !== null && config.cluster !== null) {
    const bridge = new ClusterBridge(
      { nodeId: config.nodeId, keyPrefix: config.cluster.keyPrefix, heartbeatMs: config.cluster.heartbeatMs },
      { pubsub: cluster.connections.pubsub, app, lookup: docId => registry.get(docId), writeBehind, log, metrics, onRemoteDelete: docId => { void dropDocument(docId) }, onRemoteRevoke: (docId, userId) => { closeUserConnections(docId, userId) } }
    )
    messages.bridge = bridge
    try {
      await bridge.start()
    } catch (err) {
      // Redis may be down at start: the subscriber retries; readiness reports the outage.
      log.warn({ err: (err as Error).message }, 'bridge could not subscribe yet; will retry when redis is reachable')
    }
  }

  const upgradeContext: UpgradeContext = {
    verifier,
    registry,
    log,
    metrics,
    limits: config.limits,
    revocations,
    connectionCount: () => connections.size,
    isClosing: () => closing
  }

  // One timer for all token expiries; the socket is valid until its close handler unschedules it.
  const expiries = new ExpirySchedule<Connection>(conn => {
    if (conn.closed || conn.socket === null) return
    conn.log.info('closing: token expired')
    conn.socket.end(CloseCode.TokenExpired, 'token expired')
  })

  const behavior: uWS.WebSocketBehavior<SocketData> = {
    maxPayloadLength: config.maxMessageBytes,
    maxBackpressure: config.maxBackpressureBytes,
    // Skipping messages for a slow reader would leave its document silently diverged; closing it
    // makes the client reconnect and re-sync.
    closeOnBackpressureLimit: 1,
    idleTimeout: config.idleTimeoutSec,
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    upgrade: (res, req, context) => handleUpgrade(upgradeContext, res, req, context),
    open: ws => {
      const conn = ws.getUserData().conn
      conn.socket = ws
      connections.add(conn)
      metrics.connections.inc()
      ws.subscribe(conn.doc.topic)
      participants.join(conn.docId, conn.userId)
      // The guard keeps the per-connection logger (created lazily) from being built for nothing.
      if (debugLogging) conn.log.debug({ readOnly: conn.readOnly }, 'connection opened')
      expiries.add(conn)
      // A throw escaping a uWS handler would take the process down: contain it to this socket.
      try {
        greet(messages, ws, conn)
      } catch (err) {
        conn.log.error({ err }, 'closing: internal error while greeting')
        ws.end(CloseCode.InternalError, 'internal error')
      }
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData().conn
      if (!isBinary) {
        conn.log.info('closing: text frame')
        ws.end(CloseCode.UnsupportedData, 'binary frames only')
        return
      }
      if (!conn.allowMessage(message.byteLength)) {
        conn.log.warn({ limits: { messagesPerSecond: config.limits.messagesPerSecond, bytesPerSecond: config.limits.bytesPerSecond } }, 'closing: rate limit exceeded')
        ws.end(CloseCode.RateLimited, 'rate limit exceeded')
        return
      }
      try {
        handleMessage(messages, ws, conn, new Uint8Array(message))
      } catch (err) {
        if (conn.closed) return
        if (err instanceof MalformedMessageError) {
          conn.log.info({ reason: err.message }, 'closing: malformed message')
          ws.end(CloseCode.MalformedMessage, 'malformed message')
        } else {
          conn.log.error({ err }, 'closing: internal error while handling a message')
          ws.end(CloseCode.InternalError, 'internal error')
        }
      }
    },
    close: (ws, code, message) => {
      const conn = ws.getUserData().conn
      conn.closed = true
      conn.socket = null
      expiries.remove(conn)
      connections.delete(conn)
      metrics.connections.dec()
      metrics.closes.labels(String(code)).inc()
      if (code === CloseCode.Abnormal && message.byteLength > 0) {
        // uWS's own reasons: "Received too big message", backpressure limit, idle timeout.
        conn.log.info({ code, reason: Buffer.from(message).toString() }, 'connection dropped by the server')
      } else if (debugLogging) {
        conn.log.debug({ code }, 'connection closed')
      }
      try {
        dropPresence(messages, conn)
      } catch (err) {
        conn.log.error({ err }, 'failed to remove presence of closed connection')
      }
      participants.leave(conn.docId, conn.userId)
      registry.release(conn.doc)
    }
  }

  app.ws(`${DOCUMENT_PATH_PREFIX}*`, behavior)
  // A missing or empty document id still deserves a precise answer, not a 404.
  app.ws(DOCUMENT_PATH_PREFIX.slice(0, -1), behavior)

  const readiness = async (): Promise<Readiness> => {
    const problems: string[] = []
    if (closing) problems.push('shutting down')
    if (!writeBehind.healthy) problems.push(`store writes failing: ${writeBehind.failure ?? 'unknown'}`)
    try {
      await store.ping()
    } catch (err) {
      problems.push(`store unreachable: ${(err as Error).message}`)
    }
    if (cluster !== null && !cluster.connections.pubsub.connected) problems.push('redis pub/sub disconnected')
    return { ready: problems.length === 0, status: problems.length === 0 ? 'ready' : 'not-ready', problems }
  }

  const snapshotSelf = async (): Promise<NodeSnapshot> => await takeNodeSnapshot({
    nodeId: config.nodeId,
    startedAt,
    registry,
    writeBehind,
    metrics,
    connectionCount: () => connections.size,
    ready: async () => (await readiness()).ready,
    redisConnected: cluster === null ? null : () => cluster.connections.pubsub.connected
  })
  const directory = cluster === null || config.cluster === null
    ? null
    : new NodeDirectory(cluster.connections.commands, config.cluster.keyPrefix, config.nodeId, snapshotSelf, log)
  directory?.start()

  const deleteDocument = async (docId: string): Promise<void> => {
    messages.bridge?.publishDelete(docId)
    await dropDocument(docId)
    await store.delete(docId, DELETE_TOMBSTONE_SECONDS)
    // A peer's write that was already in flight when it learned of the deletion may still land:
    // delete once more after it had time to finish.
    setTimeout(() => { void store.delete(docId, DELETE_TOMBSTONE_SECONDS).catch(() => {}) }, Math.max(2_000, config.flushIntervalMs * 4)).unref()
    log.info({ docId }, 'document deleted')
  }

  registerHttpRoutes(app, { readiness, verifier, participants, metrics, metricsToken: config.metricsToken, refreshGauges: () => {
    metrics.documentsLoaded.set(registry.size)
    metrics.writeBehindPendingBytes.set(writeBehind.pendingBytes)
    metrics.writeBehindPendingDocuments.set(writeBehind.pendingDocuments)
  } })
  registerAdminRoutes(app, {
    verifier,
    registry,
    participants,
    messages,
    maxBodyBytes: config.maxMessageBytes,
    deleteDocument,
    revoke: async (docId, userId) => {
      await revocations.revoke(docId, userId, config.limits.revocationTtlSeconds)
      messages.bridge?.publishRevoke(docId, userId)
      const closed = closeUserConnections(docId, userId)
      log.info({ docId, userId, closed }, 'access revoked')
      return closed
    },
    restore: async (docId, userId) => { await revocations.restore(docId, userId) },
    snapshot: async () => {
      const self = await snapshotSelf()
      const others = directory === null ? [] : (await directory.list().catch(() => [])).filter(n => n.nodeId !== self.nodeId)
      return { self, nodes: [self, ...others] }
    }
  })
  registerPlaygroundRoutes(app, {
    playground: config.playground,
    devSecret: config.devMode && config.auth.kind === 'jwt-secret' ? config.auth.secret : null,
    nodeId: config.nodeId,
    log
  })
  registerNotFound(app)

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.host, config.port, socket => {
      if (socket === false) reject(new Error(`cannot listen on ${config.host}:${config.port}`))
      else resolve(socket)
    })
  })
  const port = uWS.us_socket_local_port(listenSocket as unknown as uWS.us_socket)
  writeBehind.start()

  let closed: Promise<void> | null = null
  return {
    port,
    nodeId: config.nodeId,
    registry,
    writeBehind,
    metrics,
    get bridge () { return messages.bridge },
    get connectionCount () { return connections.size },
    readiness,
    close: () => {
      closed ??= (async () => {
        closing = true
        uWS.us_listen_socket_close(listenSocket)
        for (const conn of [...connections]) conn.socket?.end(CloseCode.GoingAway, 'server shutting down')
        writeBehind.stop()
        try {
          await registry.closeAll(Date.now() + config.shutdownTimeoutMs)
        } finally {
          app.close()
          expiries.clear()
          await webhook?.close()
          await directory?.stop()
          await messages.bridge?.close()
          await participants.close()
          await store.close()
          await cluster?.connections.close()
          metrics.stop()
        }
      })()
      return closed
    }
  }
}
