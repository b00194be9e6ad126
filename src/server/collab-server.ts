import type { Logger } from 'pino'
import uWS from 'uWebSockets.js'
import { createVerifier } from '../auth/create-verifier.js'
import { ClusterBridge } from '../cluster/bridge.js'
import { createClusterResources, type ClusterResources } from '../cluster/cluster-mode.js'
import type { Config } from '../config/config.js'
import { LocalParticipants, type ParticipantDirectory } from '../documents/participants.js'
import { DocumentRegistry } from '../documents/registry.js'
import type { DocumentStore } from '../persistence/document-store.js'
import { LevelDbStore } from '../persistence/leveldb-store.js'
import { WriteBehind } from '../persistence/write-behind.js'
import { CloseCode } from '../protocol/close-codes.js'
import { MalformedMessageError } from '../protocol/messages.js'
import type { Connection } from './connection.js'
import { registerHttpRoutes, type Readiness } from './http-routes.js'
import { dropPresence, greet, handleMessage, publishAwarenessTimeouts, type MessageContext } from './message-handler.js'
import { DOCUMENT_PATH_PREFIX, handleUpgrade, type UpgradeContext } from './upgrade.js'

export interface CollabServer {
  readonly port: number
  readonly nodeId: string
  readonly registry: DocumentRegistry
  readonly writeBehind: WriteBehind
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

const COMPACT_AFTER_ENTRIES = 200

export async function startServer (config: Config, log: Logger, deps: ServerDependencies = {}): Promise<CollabServer> {
  log = log.child({ nodeId: config.nodeId })
  const cluster: ClusterResources | null = config.cluster === null ? null : createClusterResources(config.cluster, config.nodeId, log)
  const store = deps.store ?? cluster?.store ?? new LevelDbStore(config.dataDir)
  const participants: ParticipantDirectory = cluster?.participants ?? new LocalParticipants(config.nodeId)
  await store.open()
  const verifier = await createVerifier(config)
  const writeBehind = new WriteBehind(store, { intervalMs: config.flushIntervalMs, retryMaxMs: config.storeRetryMaxMs }, log)
  const app = uWS.App()
  let bridge: ClusterBridge | null = null

  const registry = new DocumentRegistry(store, writeBehind, {
    idleUnloadMs: config.docIdleUnloadMs,
    compactAfterEntries: COMPACT_AFTER_ENTRIES,
    unloadRetryMs: config.storeRetryMaxMs
  }, log, {
    beforeLoad: async docId => { await bridge?.attach(docId) },
    afterLoad: doc => {
      publishAwarenessTimeouts(app, doc)
      bridge?.loaded(doc)
    },
    afterUnload: async docId => { await bridge?.detach(docId) }
  })

  if (cluster !== null && config.cluster !== null) {
    bridge = new ClusterBridge(
      { nodeId: config.nodeId, keyPrefix: config.cluster.keyPrefix, heartbeatMs: config.cluster.heartbeatMs },
      { pubsub: cluster.connections.pubsub, app, lookup: docId => registry.get(docId), writeBehind, log }
    )
    try {
      await bridge.start()
    } catch (err) {
      // Redis may be down at start: the subscriber retries; readiness reports the outage.
      log.warn({ err: (err as Error).message }, 'bridge could not subscribe yet; will retry when redis is reachable')
    }
  }

  const sockets = new Set<uWS.WebSocket<Connection>>()
  let closing = false
  const messageContext: MessageContext = {
    app,
    writeBehind,
    bridge,
    batchLimits: { maxUpdates: config.offlineBatchMaxUpdates, maxBytes: config.offlineBatchMaxBytes }
  }
  const upgradeContext: UpgradeContext = { verifier, registry, log, isClosing: () => closing }

  const behavior: uWS.WebSocketBehavior<Connection> = {
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
      const conn = ws.getUserData()
      sockets.add(ws)
      ws.subscribe(conn.doc.topic)
      participants.join(conn.docId, conn.userId)
      conn.log.debug({ readOnly: conn.readOnly }, 'connection opened')
      greet(ws, conn)
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData()
      if (!isBinary) {
        conn.log.info('closing: text frame')
        ws.end(CloseCode.UnsupportedData, 'binary frames only')
        return
      }
      try {
        handleMessage(messageContext, ws, conn, new Uint8Array(message))
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
      const conn = ws.getUserData()
      conn.closed = true
      sockets.delete(ws)
      if (code === CloseCode.Abnormal && message.byteLength > 0) {
        // uWS's own reasons: "Received too big message", backpressure limit, idle timeout.
        conn.log.info({ code, reason: Buffer.from(message).toString() }, 'connection dropped by the server')
      } else {
        conn.log.debug({ code }, 'connection closed')
      }
      try {
        dropPresence(messageContext, conn)
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
  registerHttpRoutes(app, { readiness, verifier, participants })

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
    bridge,
    get connectionCount () { return sockets.size },
    readiness,
    close: () => {
      closed ??= (async () => {
        closing = true
        uWS.us_listen_socket_close(listenSocket)
        for (const ws of [...sockets]) ws.end(CloseCode.GoingAway, 'server shutting down')
        writeBehind.stop()
        try {
          await registry.closeAll(Date.now() + config.shutdownTimeoutMs)
        } finally {
          app.close()
          await bridge?.close()
          await participants.close()
          await store.close()
          await cluster?.connections.close()
        }
      })()
      return closed
    }
  }
}
