import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'

export type RedisTarget =
  | { kind: 'single'; url: string }
  | { kind: 'cluster'; nodes: ClusterNode[] }
  | { kind: 'sentinel'; sentinels: Array<{ host: string; port: number }>; name: string; username?: string; password?: string }

/**
 * Publish/subscribe over either plain Redis pub/sub or, on Redis Cluster, sharded pub/sub
 * (SPUBLISH/SSUBSCRIBE), where a channel lives on the shard of its hash slot instead of being
 * broadcast to every node of the cluster.
 */
export interface PubSub {
  subscribe (channel: string): Promise<void>
  unsubscribe (channel: string): Promise<void>
  /**
   * Fire and forget; false when the connection is down and the message was not sent.
   * `onReceivers` is told how many subscribers Redis delivered the message to (the publisher's
   * own subscription included), if Redis answers.
   */
  publish (channel: string, message: Buffer, onReceivers?: (count: number) => void): boolean
  onMessage (handler: (channel: string, message: Buffer) => void): void
  /**
   * Called each time a connection (publisher or subscriber) is ready again after losing it, and on
   * Redis Cluster each time a refreshed slot map shows other masters than before (a failover, in
   * which the promoted replica may lack the last writes its master acknowledged, or a new shard):
   * a Cluster client stays ready through a failover of one shard, so no reconnect would tell.
   * The handler is told which of the two happened.
   */
  onReconnect (handler: (reason: string) => void): void
  /**
   * Subscribes to a channel again from scratch, for one found not to deliver: the old
   * subscription is dropped whatever state its connection is in, and on Redis Cluster the slot map
   * is read again first, so that the subscription goes to the shard that owns the slot now.
   */
  resubscribe (channel: string): Promise<void>
  readonly connected: boolean
}

export interface RedisConnections {
  commands: Redis | Cluster
  pubsub: PubSub
  close (): Promise<void>
}

// Commands fail fast while Redis is unreachable instead of queueing without bound: the
// write-behind keeps updates and retries, and the bridge re-syncs after reconnecting.
const COMMON: RedisOptions = {
  // No auto-pipelining: it batches a turn's commands into one write, but builds an ioredis
  // Pipeline (promises, closures) per turn that stays alive until Redis answers; with a publish per
  // edit those outlive young-generation GCs and are promoted, which costs more than a write per
  // command (docs/performance.md).
  enableAutoPipelining: false,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  retryStrategy: attempt => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
  lazyConnect: false
}

export function connectRedis (target: RedisTarget, log: Logger): RedisConnections {
  if (target.kind === 'single' || target.kind === 'sentinel') {
    // With Sentinel, ioredis asks the sentinels for the current master and follows failovers.
    const open = (options: RedisOptions): Redis => target.kind === 'single'
      ? new Redis(target.url, options)
      : new Redis({ ...options, sentinels: target.sentinels, name: target.name, username: target.username, password: target.password })
    const commands = open({ ...COMMON, connectionName: 'collab-commands' })
    // The subscriber queues its (re)subscriptions while offline; ioredis replays them on reconnect.
    const subscriber = open({ ...COMMON, enableOfflineQueue: true, maxRetriesPerRequest: null, connectionName: 'collab-subscriber' })
    watch(commands, 'commands', log)
    watch(subscriber, 'subscriber', log)
    return {
      commands,
      pubsub: classicPubSub(commands, subscriber),
      close: async () => { await quit(commands); await quit(subscriber) }
    }
  }
  const clusterOptions = { enableAutoPipelining: true, enableOfflineQueue: false, redisOptions: COMMON, clusterRetryStrategy: (attempt: number) => Math.min(100 * attempt, 2_000) }
  const commands = new Cluster(target.nodes, clusterOptions)
  const subscriber = new Cluster(target.nodes, { ...clusterOptions, enableOfflineQueue: true, shardedSubscribers: true })
  watch(commands, 'commands', log)
  watch(subscriber, 'subscriber', log)
  traceTopology(commands, 'commands', log)
  traceTopology(subscriber, 'subscriber', log)
  return {
    commands,
    pubsub: shardedPubSub(commands, subscriber),
    close: async () => { await quit(commands); await quit(subscriber) }
  }
}

/** Classic pub/sub on one Redis (or through Sentinel). */
function classicPubSub (commands: Redis, subscriber: Redis): PubSub {
  return pubSubOver(commands, subscriber, {
    subscribe: async channel => { await subscriber.subscribe(channel) },
    unsubscribe: async channel => { await subscriber.unsubscribe(channel) },
    publish: async (channel, message) => await commands.publish(channel, message),
    refreshTopology: async () => {},
    messageEvent: 'messageBuffer'
  })
}

/** Sharded pub/sub on Redis Cluster: a channel lives on the shard of its hash slot. */
function shardedPubSub (commands: Cluster, subscriber: Cluster): PubSub {
  return pubSubOver(commands, subscriber, {
    subscribe: async channel => { await subscriber.ssubscribe(channel) },
    unsubscribe: async channel => { await subscriber.sunsubscribe(channel) },
    publish: async (channel, message) => await commands.spublish(channel, message),
    // After a failover ioredis may keep a sharded subscription on the dead master's connection
    // until it happens to refresh its slot map: refresh both clients' maps now.
    refreshTopology: async () => {
      await Promise.all([subscriber, commands].map(async client => { await new Promise<void>(resolve => { client.refreshSlotsCache(() => { resolve() }) }) }))
    },
    onMastersChanged: handler => { onMastersChanged(commands, handler) },
    messageEvent: 'smessageBuffer'
  })
}

/**
 * Calls `handler` after a slot-map refresh that shows a different set of masters than the last
 * one. ioredis refreshes the map when a command meets a dead master or a MOVED reply, and when the
 * bridge's watchdog finds a channel silent (refreshTopology), so a failover is seen soon after the
 * promotion, by the first write or the first probe that goes to the shard.
 */
function onMastersChanged (cluster: Cluster, handler: () => void): void {
  const masters = (): string => cluster.nodes('master').map(node => `${node.options.host ?? ''}:${node.options.port ?? ''}`).sort().join(',')
  let known: string | null = null
  cluster.on('refresh', () => {
    const now = masters()
    if (known !== null && now !== known) handler()
    known = now
  })
}

interface PubSubCommands {
  subscribe: (channel: string) => Promise<void>
  unsubscribe: (channel: string) => Promise<void>
  publish: (channel: string, message: Buffer) => Promise<unknown>
  refreshTopology: () => Promise<void>
  /** Redis Cluster: calls the handler when a failover (or a new shard) changed the masters. */
  onMastersChanged?: (handler: () => void) => void
  messageEvent: 'messageBuffer' | 'smessageBuffer'
}

function pubSubOver (commands: Redis | Cluster, subscriber: Redis | Cluster, ops: PubSubCommands): PubSub {
  return {
    subscribe: ops.subscribe,
    unsubscribe: ops.unsubscribe,
    resubscribe: async channel => {
      await ops.refreshTopology()
      // The old subscription's connection may be closed: its unsubscribe failing changes nothing.
      await ops.unsubscribe(channel).catch(() => {})
      await ops.subscribe(channel)
    },
    publish: (channel, message, onReceivers) => {
      if (commands.status !== 'ready') return false
      const sent = ops.publish(channel, message)
      if (onReceivers === undefined) sent.catch(() => {})
      else sent.then(count => { if (typeof count === 'number') onReceivers(count) }, () => {})
      return true
    },
    onMessage: handler => { subscriber.on(ops.messageEvent, (channel: Buffer, message: Buffer) => handler(channel.toString(), message)) },
    onReconnect: handler => {
      onReadyAgain(subscriber, () => { handler('redis reconnected') })
      onReadyAgain(commands, () => { handler('redis reconnected') })
      ops.onMastersChanged?.(() => { handler('redis cluster masters changed') })
    },
    get connected () { return commands.status === 'ready' && subscriber.status === 'ready' }
  }
}

function onReadyAgain (client: Redis | Cluster, handler: () => void): void {
  let wasReady = client.status === 'ready'
  let lost = false
  client.on('ready', () => {
    if (wasReady && lost) handler()
    wasReady = true
    lost = false
  })
  client.on('close', () => { if (wasReady) lost = true })
  client.on('end', () => { if (wasReady) lost = true })
}

function watch (client: Redis | Cluster, role: string, log: Logger): void {
  let down = false
  client.on('error', (err: Error) => {
    if (!down) log.warn({ role, err: err.message }, 'redis connection error')
    down = true
  })
  client.on('ready', () => {
    if (down) log.info({ role }, 'redis connection restored')
    down = false
  })
}

/** Debug lines that let a failover be followed: slot-map refreshes and sharded subscribers. */
function traceTopology (cluster: Cluster, role: string, log: Logger): void {
  if (!log.isLevelEnabled('debug')) return
  cluster.on('refresh', () => { log.debug({ role, masters: cluster.nodes('master').map(node => `${node.options.host ?? ''}:${node.options.port ?? ''}`).sort() }, 'redis cluster slot map refreshed') })
  for (const event of ['+subscriber', '-subscriber', 'subscribersReady'] as const) cluster.on(event, () => { log.debug({ role, event }, 'redis cluster sharded subscribers changed') })
  cluster.on('nodeError', (err: Error, node: string) => { log.debug({ role, node, err: err.message }, 'redis cluster node error') })
}

async function quit (client: Redis | Cluster): Promise<void> {
  try {
    await client.quit()
  } catch {
    client.disconnect()
  }
}
