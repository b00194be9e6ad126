/**
 * Cross-node: the same document load on one node of ours, then on 2 and 3 nodes bridged by Redis
 * (writer on node 1, observer on node 2 or 3, sinks spread over all nodes), and optionally on the
 * reference (single node; it has no cluster mode).
 */
import { compareMetric, compareOursReference } from '../lib/compare.js'
import type { Comparison } from '../lib/result.js'
import { runSteadyOn, type SteadyShape } from './steady.js'
import type { Flags, Scenario, TargetPlan } from './types.js'

function shape (flags: Flags): SteadyShape {
  return { docs: flags.docs ?? 10, clients: Math.max(2, flags.clients ?? 100), rate: flags.rate ?? 10 }
}

export const crossNodeScenario: Scenario = {
  name: 'cross-node',
  title: 'Cross-node: 2 and 3 nodes over Redis vs one node',
  params: flags => ({ ...shape(flags), nodes: flags.nodes ?? [1, 2, 3], durationS: flags.duration ?? 30, warmupS: flags.warmup ?? 2, sinkWorkers: flags.workers ?? 2 }),
  plan: flags => {
    const plans: TargetPlan[] = (flags.nodes ?? [1, 2, 3]).map(nodes => ({ kind: 'ours', nodes }))
    if (flags.compare) plans.push({ kind: 'reference', nodes: 1 })
    return plans
  },
  run: async (ctx, plan) => {
    const run = await runSteadyOn(ctx, plan.kind, plan.nodes, shape(ctx.flags), 'cross')
    if (plan.nodes > 1) {
      const redis = (run.details.step as { redisCpuPct?: number | null } | undefined)?.redisCpuPct ?? null
      run.metrics.redis_cpu_pct = redis
    }
    return run
  },
  compare: runs => {
    const single = runs.find(r => r.target === 'ours' && r.error === undefined)
    const out: Comparison[] = []
    for (const multi of runs.filter(r => /^ours-\d+-nodes$/.test(r.target))) {
      for (const metric of ['latency_p99_ms', 'latency_p50_ms', 'sink_latency_p99_ms', 'cpu_total_s_per_1k', 'delivery_ratio']) {
        const c = compareMetric(metric, multi, single, metric === 'latency_p99_ms' ? { kind: 'max', ratio: 2, text: '<= 2x single node' } : undefined)
        if (c !== null) out.push(c)
      }
    }
    return [...out, ...compareOursReference(runs, ['latency_p99_ms', 'cpu_total_s_per_1k'])]
  }
}
