import type { Logger } from 'pino'
import type { ClusterConfig } from '../config/config.js'
import { RedisStore } from '../persistence/redis-store.js'
import { connectRedis, type PubSub, type RedisConnections } from '../redis/connections.js'
import { ClusterBridge } from './bridge.js'
import { PeerLinks } from './peer-links.js'
import { RedisParticipants } from './redis-participants.js'

/**
 * The Redis-backed pieces of a cluster node, created before the server wires them together. The
 * composition root imports this module only in cluster mode (ioredis and msgpackr cost a single
 * node about 12 MB of memory it would never use), so the bridge's classes come with it, for the
 * root to build in its own order.
 */
export interface ClusterResources {
  config: ClusterConfig
  connections: RedisConnections
  /** The pub/sub the bridge uses: the connections' own, or what `wrapPubSub` made of it. */
  pubsub: PubSub
  store: RedisStore
  participants: RedisParticipants
  PeerLinks: typeof PeerLinks
  ClusterBridge: typeof ClusterBridge
}

export function createClusterResources (config: ClusterConfig, nodeId: string, log: Logger, wrapPubSub: (pubsub: PubSub) => PubSub = p => p): ClusterResources {
  const connections = connectRedis(config.redis, log)
  return {
    config,
    connections,
    pubsub: wrapPubSub(connections.pubsub),
    store: new RedisStore(connections.commands, config.keyPrefix, config.docTtlSeconds),
    participants: new RedisParticipants(nodeId, connections.commands, config.keyPrefix, config.participantTtlSeconds, log),
    PeerLinks,
    ClusterBridge
  }
}
