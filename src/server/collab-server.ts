import type { Logger } from 'pino'
import uWS from 'uWebSockets.js'
import { createVerifier } from '../auth/create-verifier.js'
import type { Config } from '../config/config.js'
import { DocumentRegistry } from '../documents/registry.js'
import type { DocumentStore } from '../persistence/document-store.js'
import { LevelDbStore } from '../persistence/leveldb-store.js'
import { WriteBehind } from '../persistence/write-behind.js'
import { CloseCode } from '../protocol/close-codes.js'
import { MalformedMessageError } from '../protocol/messages.js'
import type { Connection } from './connection.js'
import { sendJson, trackAbort } from './http-util.js'
import { dropPresence, greet, handleMessage, type MessageContext } from './message-handler.js'
import { DOCUMENT_PATH_PREFIX, handleUpgrade, type UpgradeContext } from './upgrade.js'

export interface CollabServer {
  readonly port: number
  readonly registry: DocumentRegistry
  readonly writeBehind: WriteBehind
  readonly connectionCount: number
  /** Stops accepting, closes every socket with 1001, flushes all documents, closes the store. */
  close (): Promise<void>
}

export interface ServerDependencies {
  /** Defaults to the embedded LevelDB store in config.dataDir. */
  store?: DocumentStore
}

const COMPACT_AFTER_ENTRIES = 200

export async function startServer (config: Config, log: Logger, deps: ServerDependencies = {}): Promise<CollabServer> {
  const store = deps.store ?? new LevelDbStore(config.dataDir)
  await store.open()
  const verifier = await createVerifier(config)
  const writeBehind = new WriteBehind(store, { intervalMs: config.flushIntervalMs, retryMaxMs: config.storeRetryMaxMs }, log)
  const registry = new DocumentRegistry(store, writeBehind, {
    idleUnloadMs: config.docIdleUnloadMs,
    compactAfterEntries: COMPACT_AFTER_ENTRIES,
    unloadRetryMs: config.storeRetryMaxMs
  }, log)

  const app = uWS.App()
  const sockets = new Set<uWS.WebSocket<Connection>>()
  let closing = false
  const messageContext: MessageContext = { app, writeBehind }
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
        dropPresence(app, conn)
      } catch (err) {
        conn.log.error({ err }, 'failed to remove presence of closed connection')
      }
      registry.release(conn.doc)
    }
  }

  app.ws(`${DOCUMENT_PATH_PREFIX}*`, behavior)
  // A missing or empty document id still deserves a precise answer, not a 404.
  app.ws(DOCUMENT_PATH_PREFIX.slice(0, -1), behavior)

  app.get('/healthz', res => { sendJson(res, 200, { status: 'ok' }) })
  app.get('/readyz', res => {
    const abort = trackAbort(res)
    void readiness().then(result => {
      if (!abort.aborted) sendJson(res, result.ready ? 200 : 503, result)
    })
  })
  app.any('/*', res => { sendJson(res, 404, { error: 'not_found' }) })

  async function readiness (): Promise<{ ready: boolean; status: string; problems: string[] }> {
    const problems: string[] = []
    if (closing) problems.push('shutting down')
    if (!writeBehind.healthy) problems.push(`store writes failing: ${writeBehind.failure ?? 'unknown'}`)
    try {
      await store.ping()
    } catch (err) {
      problems.push(`store unreachable: ${(err as Error).message}`)
    }
    return { ready: problems.length === 0, status: problems.length === 0 ? 'ready' : 'not-ready', problems }
  }

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
    registry,
    writeBehind,
    get connectionCount () { return sockets.size },
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
          await store.close()
        }
      })()
      return closed
    }
  }
}
