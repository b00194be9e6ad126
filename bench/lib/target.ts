/** A system under test: one server process, or several nodes of ours bridged by Redis. */
import { readMachineCpu, readRss, sumCpu, type MachineCpu, type ProcCpu } from './proc.js'
import {
  endpointFor, hocuspocusVersion, prepareOurs, referenceVersion, startHocuspocus, startOurs, startRedis, startRedisCluster, startReference,
  type OursBinary, type OursBuild, type RedisProcess, type ServerKind, type ServerProcess
} from './servers.js'
import type { Endpoint } from './wsraw.js'
import { createDatabase, startPostgres } from '../../scripts/postgres-server.js'

export interface Target {
  /** 'ours', 'reference', 'ours-2-nodes', ... */
  name: string
  kind: ServerKind
  nodes: ServerProcess[]
  redis: RedisProcess | null
  version: string
  endpoint: (node: number, docId: string, token: string) => Endpoint
  /** CPU seconds summed over the nodes (Redis not included; see redisCpu). */
  cpu: () => ProcCpu
  redisCpu: () => ProcCpu | null
  /** RSS summed over the nodes, bytes. */
  rss: () => number
  /**
   * Ours on one node: a graceful stop, then the same build started again on the same port and
   * store (a cold start; the store keeps everything). Null for the others.
   */
  restart: (() => Promise<void>) | null
  stop: () => Promise<void>
}

/**
 * Our per-connection rate limits (RATE_LIMIT_*, 100 messages/s and 1 MiB/s by default) are a policy
 * against abusive clients; a saturation ramp or a bulk upload exceeds them by design. Scenarios
 * that measure throughput lift them (the result file records the environment).
 */
export const LIFTED_RATE_LIMITS: Record<string, string> = {
  RATE_LIMIT_MESSAGES_PER_SECOND: '1000000',
  RATE_LIMIT_MESSAGES_BURST: '10000000',
  RATE_LIMIT_BYTES_PER_SECOND: '1073741824'
}

export interface TargetOptions {
  build: OursBuild
  /** --baseline REV: the commit measured as 'baseline' (rev:REV). */
  baselineBuild?: OursBuild
  /** Environment for our server (from --env). */
  env: Record<string, string>
  nodeFlags?: string[]
  /** Masters of the Redis Cluster a 'redis-cluster' target runs on (3). */
  redisClusterMasters?: number
}

const binaries = new Map<OursBuild, OursBinary>()

export function ourBinary (build: OursBuild): OursBinary {
  let binary = binaries.get(build)
  if (binary === undefined) {
    binary = prepareOurs(build)
    binaries.set(build, binary)
  }
  return binary
}

function makeTarget (name: string, kind: ServerKind, nodes: ServerProcess[], redis: RedisProcess | null, version: string, restart: Target['restart'] = null): Target {
  return {
    restart,
    name,
    kind,
    nodes,
    redis,
    version,
    endpoint: (node, docId, token) => endpointFor(kind, nodes[node % nodes.length]!.port, docId, token),
    cpu: () => sumCpu(nodes.map(n => n.pid)),
    redisCpu: () => redis === null ? null : sumCpu(redis.pids),
    rss: () => nodes.reduce((sum, n) => sum + readRss(n.pid), 0),
    stop: async () => {
      await Promise.all(nodes.map(async n => { await n.stop() }))
      if (redis !== null) await redis.stop()
    }
  }
}

/** 'redis-cluster': several nodes of ours over a Redis Cluster of TargetOptions.redisClusterMasters masters. */
export type StoreKind = 'postgres' | 'redis' | 'redis-cluster'

export async function startTarget (kind: ServerKind, options: TargetOptions, nodeCount = 1, store?: StoreKind): Promise<Target> {
  if (store === 'postgres') {
    if (nodeCount !== 1 || kind === 'reference') throw new Error('the PostgreSQL store is measured on one node of ours')
    // On the same machine, as the issue asks: its CPU is reported apart from the server's.
    const postgres = await startPostgres()
    try {
      const url = await createDatabase(postgres, 'bench')
      const target = await startTarget(kind, { ...options, env: { ...options.env, DATABASE_URL: url } }, 1)
      const stop = target.stop
      return { ...target, name: `${target.name}-postgres`, stop: async () => { await stop(); await postgres.cleanup() } }
    } catch (err) {
      await postgres.cleanup()
      throw err
    }
  }
  if (store === 'redis') {
    if (nodeCount !== 1 || kind === 'reference' || kind === 'hocuspocus') throw new Error('the Redis store alone is measured on one node of ours')
    const redis = await startRedis()
    try {
      const target = await startTarget(kind, { ...options, env: { ...options.env, REDIS_URL: redis.url } }, 1)
      const stop = target.stop
      return { ...target, name: `${target.name}-redis`, redis, redisCpu: () => sumCpu(redis.pids), stop: async () => { await stop(); await redis.stop() } }
    } catch (err) {
      await redis.stop()
      throw err
    }
  }
  if (kind === 'reference') {
    if (nodeCount !== 1) throw new Error('the reference server has no cluster mode')
    const node = await startReference({ nodeFlags: options.nodeFlags })
    return makeTarget('reference', kind, [node], null, referenceVersion())
  }
  if (kind === 'hocuspocus') {
    if (nodeCount === 1) return makeTarget('hocuspocus', kind, [await startHocuspocus({ nodeFlags: options.nodeFlags })], null, hocuspocusVersion())
    const redis = await startRedis()
    const nodes = await startNodesOver(redis, nodeCount, async i => await startHocuspocus({ label: `hocuspocus-node-${i + 1}`, redisUrl: redis.url, nodeFlags: options.nodeFlags }))
    return makeTarget(`hocuspocus-${nodeCount}-nodes`, kind, nodes, redis, `${hocuspocusVersion()} + extension-redis`)
  }
  if (kind === 'baseline' && options.baselineBuild === undefined) throw new Error('a baseline run needs --baseline REV')
  const binary = ourBinary(kind === 'baseline' ? options.baselineBuild! : options.build)
  const version = `${binary.commit.slice(0, 10)}${binary.dirty ? '+dirty' : ''} (${binary.build})`
  if (nodeCount === 1 && store !== 'redis-cluster') {
    const nodes = [await startOurs({ binary, env: options.env, nodeFlags: options.nodeFlags })]
    const restart = async (): Promise<void> => {
      const old = nodes[0]!
      await old.stop(true)
      nodes[0] = await startOurs({ binary, env: options.env, nodeFlags: options.nodeFlags, port: old.port, dataDir: old.dataDir })
    }
    return makeTarget(kind, kind, nodes, null, version, restart)
  }
  const masters = store === 'redis-cluster' ? options.redisClusterMasters ?? 3 : 0
  const redis = masters > 0 ? await startRedisCluster(masters) : await startRedis()
  const env = redis.clusterNodes === undefined ? options.env : { ...options.env, REDIS_CLUSTER_NODES: redis.clusterNodes }
  const nodes = await startNodesOver(redis, nodeCount, async i => await startOurs({ binary, env, ...(redis.clusterNodes === undefined ? { redisUrl: redis.url } : {}), label: `ours-node-${i + 1}`, nodeFlags: options.nodeFlags }))
  return makeTarget(`${kind}-${nodeCount}-nodes${masters > 0 ? `-rc${masters}` : ''}`, kind, nodes, redis, version)
}

/** Starts `count` nodes over `redis`, one after the other; a failure stops what started, Redis too. */
async function startNodesOver (redis: RedisProcess, count: number, start: (index: number) => Promise<ServerProcess>): Promise<ServerProcess[]> {
  const nodes: ServerProcess[] = []
  try {
    for (let i = 0; i < count; i++) nodes.push(await start(i))
    return nodes
  } catch (err) {
    for (const node of nodes) await node.stop()
    await redis.stop()
    throw err
  }
}

/** Server CPU and machine CPU at one instant, for window deltas. */
export interface CpuMark {
  at: number
  server: ProcCpu
  redis: ProcCpu | null
  machine: MachineCpu
  /** This (coordinator) process, seconds. */
  self: number
}

export function markCpu (target: Target): CpuMark {
  const self = process.cpuUsage()
  return {
    at: performance.timeOrigin + performance.now(),
    server: target.cpu(),
    redis: target.redisCpu(),
    machine: readMachineCpu(),
    self: (self.user + self.system) / 1e6
  }
}
