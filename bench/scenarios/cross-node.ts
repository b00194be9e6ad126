/**
 * Cross-node: the same document load on one node of ours, then on 2 and 3 nodes bridged by Redis
 * (writer on node 1, observer on node 2 or 3, sinks spread over all nodes); optionally the
 * reference (single node; it has no cluster mode) and Hocuspocus on the same node counts, its
 * nodes joined by @hocuspocus/extension-redis.
 */
import { compareMetric, compareOursReference } from '../lib/compare.js'
import type { Comparison } from '../lib/result.js'
import { runSteadyOn, type SteadyShape } from './steady.js'
import type { Flags, Scenario, TargetPlan } from './types.js'

const CLUSTER_METRICS = ['latency_p99_ms', 'latency_p50_ms', 'sink_latency_p99_ms', 'cpu_total_s_per_1k', 'cpu_with_redis_s_per_1k', 'redis_cpu_s_per_1k', 'delivery_ratio']

export function crossNodeScenario (name: string, preset: SteadyShape): Scenario {
  const shape = (flags: Flags): SteadyShape => ({ docs: flags.docs ?? preset.docs, clients: Math.max(2, flags.clients ?? preset.clients), rate: flags.rate ?? preset.rate })
  return {
    name,
    title: `Cross-node: ${preset.docs} docs x ${preset.clients} clients @ ${preset.rate}/s on 2 and 3 nodes over Redis vs one node`,
    params: flags => ({ ...shape(flags), nodes: flags.nodes ?? [1, 2, 3], durationS: flags.duration ?? 30, warmupS: flags.warmup ?? 2, sinkWorkers: flags.workers ?? 2 }),
    plan: flags => {
      const counts = flags.nodes ?? [1, 2, 3]
      // Every node count over Redis, and over a Redis Cluster when asked; the same shapes of the
      // --baseline commit, for a before/after in one run.
      const shapesOf = (kind: 'ours' | 'baseline'): TargetPlan[] => [
        ...counts.map(nodes => ({ kind, nodes })),
        ...(flags.redisCluster === undefined ? [] : counts.map(nodes => ({ kind, nodes, store: 'redis-cluster' as const })))
      ]
      const plans = [...shapesOf('ours'), ...(flags.baseline === undefined ? [] : shapesOf('baseline'))]
      if (flags.hocuspocus === true) plans.push(...counts.map(nodes => ({ kind: 'hocuspocus' as const, nodes })))
      if (flags.compare) plans.push({ kind: 'reference', nodes: 1 })
      return plans
    },
    run: async (ctx, plan) => {
      const run = await runSteadyOn(ctx, plan.kind, plan.nodes, shape(ctx.flags), 'cross', plan.store)
      if (plan.nodes > 1 || plan.store !== undefined) {
        const redis = (run.details.step as { redisCpuPct?: number | null } | undefined)?.redisCpuPct ?? null
        run.metrics.redis_cpu_pct = redis
      }
      return run
    },
    compare: runs => {
      const ok = runs.filter(r => r.error === undefined)
      const single = ok.find(r => r.target === 'ours')
      const out: Comparison[] = []
      for (const multi of ok.filter(r => /^ours-\d+-nodes(-rc\d+)?$/.test(r.target))) {
        for (const metric of CLUSTER_METRICS) {
          const target = metric === 'latency_p99_ms'
            ? { kind: 'max' as const, ratio: 2, text: '<= 2x single node' }
            : metric === 'cpu_with_redis_s_per_1k' ? { kind: 'max' as const, ratio: 1.4, text: '<= 1.4x single node' } : undefined
          const c = compareMetric(metric, multi, single, target)
          if (c !== null) out.push(c)
        }
        // The same number of Hocuspocus nodes over one Redis, in the same run.
        const peer = ok.find(r => r.target === multi.target.replace(/^ours/, 'hocuspocus'))
        for (const metric of ['cpu_with_redis_s_per_1k', 'latency_p99_ms', 'delivery_ratio']) {
          const c = compareMetric(metric, multi, peer, metric === 'cpu_with_redis_s_per_1k' ? { kind: 'max', ratio: 0.5, text: '<= 0.5x Hocuspocus' } : undefined)
          if (c !== null) out.push(c)
        }
        // The same shape of the --baseline commit (the single node's is compareOursReference's).
        const before = ok.find(r => r.target === multi.target.replace(/^ours/, 'baseline'))
        for (const metric of ['cpu_with_redis_s_per_1k', 'latency_p99_ms']) {
          const c = compareMetric(metric, multi, before)
          if (c !== null) out.push(c)
        }
      }
      const hocuspocus = ok.find(r => r.target === 'hocuspocus')
      for (const metric of ['cpu_total_s_per_1k', 'latency_p99_ms']) {
        const c = compareMetric(metric, single, hocuspocus)
        if (c !== null) out.push(c)
      }
      return [...out, ...compareOursReference(runs, ['latency_p99_ms', 'cpu_total_s_per_1k'])]
    }
  }
}
