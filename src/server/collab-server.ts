import type { Logger } from 'pino'
import uWS from 'uWebSockets.js'
import { join } from 'node:path'
import { createVerifier } from '../auth/create-verifier.js'
import { FileRevocations, RedisRevocations, type Revocations } from '../auth/revocations.js'
import type { ClusterBridge } from '../cluster/bridge.js'
import { NodeDirectory } from '../cluster/node-directory.js'
import type { PeerLinks } from '../cluster/peer-links.js'
import type { Config } from '../config/config.js'
import { Compactor } from '../documents/compactor.js'
import { DocumentChanges } from '../documents/document-changes.js'
import type { DocumentLifecycle } from '../documents/document-lifecycle.js'
import { LocalParticipants, type ParticipantDirectory } from '../documents/participants.js'
import { joinCacheBudget } from '../documents/join-cache-budget.js'
import { DocumentRegistry } from '../documents/registry.js'
import { Metrics } from '../metrics/metrics.js'
import type { DocumentStore, VersionMeta } from '../persistence/document-store.js'
import { LevelDbStore } from '../persistence/leveldb-store.js'
import { WriteBehind } from '../persistence/write-behind.js'
import { registerPlaygroundRoutes } from '../playground/routes.js'
import { CloseCode } from '../protocol/close-codes.js'
import { DOCUMENT_PATH_PREFIX } from '../protocol/endpoints.js'
import type { PubSub } from '../redis/connections.js'
import { ChangeWebhook } from '../webhooks/change-webhook.js'
import { AddressRateLimit } from './address-rate-limit.js'
import { registerAdminRoutes } from './admin-routes.js'
import { ClientMessages } from './client-messages.js'
import { ConnectionTable } from './connection-table.js'
import { Connection } from './connection.js'
import { ExpirySchedule } from './expiry-schedule.js'
import { registerHttpRoutes, registerNotFound } from './http-routes.js'
import { NodeOperations, type Readiness } from './node-operations.js'
import { clusterSnapshot, refreshNodeGauges, takeNodeSnapshot, type NodeSnapshot } from './node-snapshot.js'
import { OfflineBatches } from './offline-batch.js'
import { OversizeCooldown } from './oversize-cooldown.js'
import { chunkSizeFor, PacedLargeUpdates, PacedSends } from './paced-sends.js'
import { closeExpiredConnection, documentSocketBehavior } from './socket-handlers.js'
import { handleUpgrade } from './upgrade.js'
import { KeepAlive } from './keep-alive.js'
import { registerVersionRoutes } from './version-routes.js'
import { VersionHistory } from '../versions/version-history.js'
import { StateWorker } from '../versions/state-worker.js'
import { AutomaticVersionStates } from '../versions/state-snapshot.js'
import { singleNodeClaims } from '../versions/version-claims.js'
import { RedisVersionClaims } from '../cluster/redis-version-claims.js'

export interface CollabServer {
  readonly port: number
  readonly nodeId: string
  readonly registry: DocumentRegistry
  readonly writeBehind: WriteBehind
  readonly metrics: Metrics
  readonly connectionCount: number
  readiness (): Promise<Readiness>
  /** Stops accepting, closes every socket with 1001, flushes all documents, closes the store. */
  close (): Promise<void>
}

export interface ServerDependencies {
  /** Overrides the store chosen by the configuration (PostgreSQL with DATABASE_URL, else LevelDB, or Redis in cluster mode). */
  store?: DocumentStore
  /** Cluster mode: wraps the Redis pub/sub the bridge uses (tests lose messages with it). */
  wrapPubSub?: (pubsub: PubSub) => PubSub
}

/**
 * The composition root: builds every part of a node from the configuration, in the order in which
 * they depend on each other, registers the routes and listens. Behaviour lives in the parts.
 */
export async function startServer (config: Config, log: Logger, deps: ServerDependencies = {}): Promise<CollabServer> {
  log = log.child({ nodeId: config.nodeId })
  const startedAt = Date.now()
  const metrics = new Metrics()
  joinCacheBudget.limit = config.joinCacheMaxBytes
  metrics.watchJoinCache(joinCacheBudget)
  // Loaded only in cluster mode (see cluster-mode.ts).
  const cluster = config.cluster === null ? null : (await import('../cluster/cluster-mode.js')).createClusterResources(config.cluster, config.nodeId, log, deps.wrapPubSub)
  const store = deps.store ?? (config.database !== null
    ? await openPostgresStore(config.database, metrics)
    : cluster?.store ?? new LevelDbStore(config.dataDir))
  const participants: ParticipantDirectory = cluster?.participants ?? new LocalParticipants(config.nodeId)
  await store.open()
  const verifier = await createVerifier(config)
  const revocations: Revocations = cluster !== null
    ? new RedisRevocations(cluster.connections.commands, cluster.config.keyPrefix)
    : new FileRevocations(join(config.dataDir, 'revocations.json'))
  const webhook = config.webhook === null ? null : new ChangeWebhook({ ...config.webhook, nodeId: config.nodeId }, log)
  const app = config.tls === null
    ? uWS.App()
    : uWS.SSLApp({ cert_file_name: config.tls.certFile, key_file_name: config.tls.keyFile, ...(config.tls.passphrase === undefined ? {} : { passphrase: config.tls.passphrase }) })

  // Documents: store queue, the commit path, the registry.
  const compactor = new Compactor(store, { compactAfterEntries: config.compactAfterEntries }, log, metrics)
  const writeBehind: WriteBehind = new WriteBehind(store, {
    intervalMs: config.flushIntervalMs,
    retryMaxMs: config.storeRetryMaxMs,
    // Called only after a write, when the registry below exists.
    fullState: (docId: string): Uint8Array | null => registry.get(docId)?.encodeFullState() ?? null
  }, log, metrics, compactor)
  const peerLinks: PeerLinks | null = cluster === null
    ? null
    : new cluster.PeerLinks(cluster.pubsub, { nodeId: config.nodeId, keyPrefix: cluster.config.keyPrefix, heartbeatMs: cluster.config.heartbeatMs }, log, metrics)
  // This node's connections, and large content sent to them a chunk at a time.
  const connections = new ConnectionTable()
  const chunkSize = chunkSizeFor(config.maxBackpressureBytes)
  const paced = new PacedSends(chunkSize.chunkBytes, metrics)
  const changes = new DocumentChanges({
    localFanout: app,
    peers: peerLinks,
    store: writeBehind,
    largeUpdates: new PacedLargeUpdates(chunkSize, connections, paced),
    metrics,
    presenceLimits: config.limits.presence,
    presenceGraceMs: config.limits.presenceGraceMs,
    onPresenceError: (doc, err) => { log.error({ err, docId: doc.id }, 'presence of a closed connection could not be removed') },
    onLocalChange: (docId, transaction) => {
      webhook?.noteChange(docId)
      // Authors are the verified users of the connections whose edits changed the document.
      const origin = transaction?.origin
      versions.noteChange(docId, origin instanceof Connection ? origin.userId : null, transaction)
    },
    onPeerChange: (docId, transaction) => { versions.notePeerChange(docId, transaction) }
  })
  const stateWorker = new StateWorker()
  const automaticStates = new AutomaticVersionStates(chunkSize, stateWorker)
  const versions: VersionHistory = new VersionHistory(store, {
    idleMs: config.versions.idleMs,
    maxIntervalMs: config.versions.maxIntervalMs,
    retention: { keepAllMs: config.versions.keepAllMs, hourlyUntilMs: VERSION_HOURLY_FOR_MS, retentionMs: config.versions.retentionMs, maxBytesPerDocument: config.versions.maxBytesPerDocument },
    ...(webhook === null ? {} : { onCreated: (docId: string, meta: VersionMeta) => { webhook.noteVersion(docId, meta) } })
  }, async docId => await automaticStates.of(registry.get(docId)), log, metrics, cluster === null
    ? singleNodeClaims()
    : new RedisVersionClaims(cluster.connections.commands, cluster.config.keyPrefix, config.nodeId, Math.max(3600, 2 * config.versions.maxIntervalMs / 1000)))
  const lifecycle: DocumentLifecycle[] = peerLinks === null ? [changes, versions] : [peerLinks, changes, versions]
  const registry: DocumentRegistry = new DocumentRegistry(store, writeBehind, compactor, {
    idleUnloadMs: config.docIdleUnloadMs,
    unloadRetryMs: config.storeRetryMaxMs
  }, log, lifecycle, metrics)

  // What can be done to this node's connections.
  const operations = new NodeOperations({
    deleteTombstoneSeconds: DELETE_TOMBSTONE_SECONDS,
    deleteRepeatMs: Math.max(2_000, config.flushIntervalMs * 4),
    revocationTtlSeconds: config.limits.revocationTtlSeconds
  }, {
    registry,
    connections,
    store,
    writeBehind,
    revocations,
    peers: peerLinks,
    redisConnected: cluster === null ? null : () => cluster.pubsub.connected,
    brokenBridges: peerLinks === null ? null : forMs => peerLinks.brokenDocuments(forMs),
    log
  })

  const bridge: ClusterBridge | null = peerLinks === null || cluster === null
    ? null
    : new cluster.ClusterBridge({ nodeId: config.nodeId, keyPrefix: cluster.config.keyPrefix, maxEnvelopeBytes: 2 * config.maxMessageBytes + config.limits.presence.maxBytesPerDocument }, cluster.pubsub, peerLinks, changes, writeBehind, operations, log, metrics)
  peerLinks?.startWatchdog()
  try {
    await bridge?.start()
  } catch (err) {
    // Redis may be down at start: the subscriber retries; readiness reports the outage.
    log.warn({ err: (err as Error).message }, 'bridge could not subscribe yet; will retry when redis is reachable')
  }

  // The WebSocket endpoint.
  const expiries = new ExpirySchedule<Connection>(closeExpiredConnection)
  const offlineBatches = new OfflineBatches(changes, writeBehind, {
    maxUpdates: config.offlineBatchMaxUpdates,
    maxBytes: config.offlineBatchMaxBytes,
    maxDocumentBytes: config.limits.maxDocumentBytes
  }, metrics, versions)
  const clientMessages = new ClientMessages(changes, offlineBatches, paced, { maxDocumentBytes: config.limits.maxDocumentBytes, chunks: chunkSize }, metrics, versions)
  const upgradesPerAddress = new AddressRateLimit({
    perSecond: config.limits.upgradesPerSecondPerAddress,
    burst: config.limits.upgradeBurstPerAddress,
    maxPending: config.auth.kind === 'remote' ? config.auth.maxPendingPerAddress : 0
  })
  const oversize = new OversizeCooldown()
  const upgradeContext = { verifier, registry, log, metrics, limits: config.limits, revocations, upgradesPerAddress, connections, node: operations, oversize }
  const behavior = documentSocketBehavior({
    maxMessageBytes: config.maxMessageBytes,
    maxBackpressureBytes: config.maxBackpressureBytes,
    idleTimeoutSec: config.idleTimeoutSec,
    rateLimits: { messagesPerSecond: config.limits.messagesPerSecond, bytesPerSecond: config.limits.bytesPerSecond }
  }, {
    upgrade: (res, req, context) => handleUpgrade(upgradeContext, res, req, context),
    messages: clientMessages,
    paced,
    oversize,
    connections,
    participants,
    registry,
    expiries,
    metrics,
    debugLogging: log.isLevelEnabled('debug')
  })
  const keepAlive = new KeepAlive(app, registry, config.limits.keepAliveIntervalMs, metrics)
  app.ws(`${DOCUMENT_PATH_PREFIX}*`, behavior)
  // A missing or empty document id still deserves a precise answer, not a 404.
  app.ws(DOCUMENT_PATH_PREFIX.slice(0, -1), behavior)

  // The inspector's view of this node and of the cluster.
  const snapshotSelf = async (): Promise<NodeSnapshot> => await takeNodeSnapshot({
    nodeId: config.nodeId,
    startedAt,
    registry,
    writeBehind,
    metrics,
    connections,
    readiness: async () => await operations.readiness(),
    redisConnected: cluster === null ? null : () => cluster.pubsub.connected,
    ...(peerLinks === null ? {} : { bridgeBroken: (docId: string) => peerLinks.isBroken(docId) })
  })
  const directory = cluster === null
    ? null
    : new NodeDirectory<NodeSnapshot>(cluster.connections.commands, cluster.config.keyPrefix, config.nodeId, snapshotSelf, log)
  directory?.start()

  // HTTP routes.
  registerHttpRoutes(app, {
    readiness: async () => await operations.readiness(),
    verifier,
    participants,
    revocations,
    requestsPerAddress: upgradesPerAddress,
    metrics,
    metricsToken: config.metricsToken,
    refreshGauges: () => { refreshNodeGauges(metrics, registry, writeBehind) }
  })
  registerAdminRoutes(app, {
    verifier,
    registry,
    participants,
    changes,
    writeBehind,
    operations,
    maxBodyBytes: config.maxMessageBytes,
    snapshot: async () => await clusterSnapshot(snapshotSelf, directory)
  })
  registerVersionRoutes(app, {
    verifier,
    revocations,
    registry,
    store,
    versions,
    changes,
    writeBehind,
    stateWorker,
    chunks: chunkSize,
    requestsPerAddress: upgradesPerAddress,
    log,
    maxDocumentBytes: config.limits.maxDocumentBytes,
    maxDiffBytes: config.versions.maxDiffBytes,
    awaitPeers: peerLinks === null ? null : async doc => { await peerLinks.awaitPeers(doc) }
  })
  registerPlaygroundRoutes(app, {
    playground: config.playground,
    devSecret: config.devMode && config.auth.kind === 'jwt-secret' && config.auth.generated ? config.auth.secret : null,
    devMode: config.devMode,
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
  keepAlive.start()
  versions.start()

  let closed: Promise<void> | null = null
  return {
    port,
    nodeId: config.nodeId,
    registry,
    writeBehind,
    metrics,
    get connectionCount () { return connections.size },
    readiness: async () => await operations.readiness(),
    // Takes the node apart in the reverse order of its construction.
    close: () => {
      closed ??= (async () => {
        operations.beginShutdown()
        uWS.us_listen_socket_close(listenSocket)
        connections.closeAll(CloseCode.GoingAway, 'server shutting down')
        keepAlive.stop()
        versions.stop()
        writeBehind.stop()
        try {
          await registry.closeAll(Date.now() + config.shutdownTimeoutMs)
        } finally {
          app.close()
          expiries.clear()
          await stateWorker.close()
          await webhook?.close()
          await directory?.stop()
          await bridge?.close()
          await peerLinks?.close()
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

/** How long a deleted document refuses to load again (HTTP 410), so live clients cannot resurrect it. */
/** The PostgreSQL driver is loaded only by nodes that use it (about 15 MB of RSS otherwise). */
async function openPostgresStore (database: NonNullable<Config['database']>, metrics: Metrics): Promise<DocumentStore> {
  const [{ DatabasePool }, { PostgresStore }] = await Promise.all([import('../persistence/postgres-pool.js'), import('../persistence/postgres-store.js')])
  return new PostgresStore(new DatabasePool(database, metrics), database.schema)
}

const DELETE_TOMBSTONE_SECONDS = 60
/** After VERSION_KEEP_ALL_HOURS, one version per hour is kept for this long, then one per day. */
const VERSION_HOURLY_FOR_MS = 7 * 24 * 3600_000
