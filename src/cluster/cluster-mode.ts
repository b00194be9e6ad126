import type { Logger } from 'pino'
import type { ClusterConfig } from '../config/config.js'
import { RedisStore } from '../persistence/redis-store.js'
import { connectRedis, type PubSub, type RedisConnections } from '../redis/connections.js'
import { RedisParticipants } from './redis-participants.js'

// The cluster's runtime parts, for the composition root to load only in cluster mode: ioredis and
// msgpackr cost a single node about 12 MB of memory it would never use.
export { ClusterBridge } from './bridge.js'
export { PeerLinks } from './peer-links.js'

/** The Redis-backed pieces of a cluster node, created before the server wires them together. */
export interface ClusterResources {
  connections: RedisConnections
  /** The pub/sub the bridge uses: the connections' own, or what `wrapPubSub` made of it. */
  pubsub: PubSub
  store: RedisStore
  participants: RedisParticipants
}

export function createClusterResources (config: ClusterConfig, nodeId: string, log: Logger, wrapPubSub: (pubsub: PubSub) => PubSub = p => p): ClusterResources {
  const connections = connectRedis(config.redis, log)
  return {
    connections,
    pubsub: wrapPubSub(connections.pubsub),
    store: new RedisStore(connections.commands, config.keyPrefix, config.docTtlSeconds),
    participants: new RedisParticipants(nodeId, connections.commands, config.keyPrefix, config.participantTtlSeconds, log)
  }
}
