import type { Comparison, TargetRun } from '../lib/result.js'
import type { ServerKind } from '../lib/servers.js'
import type { StoreKind, TargetOptions } from '../lib/target.js'

/** Command-line flags; each scenario applies its own defaults to what is not given. */
export interface Flags {
  compare: boolean
  /** --baseline REV: also measure that commit of ours, as 'baseline'. */
  baseline?: string
  only?: ServerKind
  duration?: number
  warmup?: number
  rate?: number
  docs?: number
  clients?: number
  workers?: number
  concurrency?: number
  steps?: number
  factor?: number
  stepDuration?: number
  connections?: number
  mb?: number
  /** large-doc: the document arrives made offline, as one sync step 2, instead of in many updates. */
  upload?: boolean
  chunkKb?: number
  joiners?: number
  nodes?: number[]
  settle?: number
  idleWindow?: number
  /** Seconds to wait at most for a quiet machine before each server's run. */
  quietWait?: number
  /** --postgres: also measure ours with the PostgreSQL store (a server the bench starts), as 'ours-postgres'. */
  postgres?: boolean
  /** --hocuspocus: cross-node also measures Hocuspocus (with its Redis extension) on the same node counts. */
  hocuspocus?: boolean
  /** --redis-store: large-doc also measures ours on one node with the Redis store, as 'ours-redis'. */
  redisStore?: boolean
  /** --redis-cluster M: cross-node also runs every node count over a Redis Cluster of M masters. */
  redisCluster?: number
}

export interface ScenarioContext {
  flags: Flags
  targetOptions: TargetOptions
  log: (message: string) => void
}

export interface TargetPlan {
  kind: ServerKind
  nodes: number
  /** Where our server keeps documents: its embedded store unless 'postgres' or 'redis' (one node). */
  store?: StoreKind
}

export interface Scenario {
  name: string
  title: string
  /** Effective parameters (defaults applied), recorded in the result file. */
  params: (flags: Flags) => Record<string, unknown>
  /** The systems to measure, in order. */
  plan: (flags: Flags) => TargetPlan[]
  run: (ctx: ScenarioContext, plan: TargetPlan) => Promise<TargetRun>
  compare: (runs: TargetRun[], flags: Flags) => Comparison[]
}

export function defaultPlan (flags: Flags): TargetPlan[] {
  if (flags.only !== undefined) return [{ kind: flags.only, nodes: 1 }]
  const plans: TargetPlan[] = [{ kind: 'ours', nodes: 1 }]
  if (flags.postgres === true) plans.push({ kind: 'ours', nodes: 1, store: 'postgres' })
  if (flags.baseline !== undefined) plans.push({ kind: 'baseline', nodes: 1 })
  if (flags.compare) plans.push({ kind: 'reference', nodes: 1 })
  return plans
}
