/**
 * Steady load: D documents x C clients, each document's writer at R edits/s, one measured window.
 */
import { isOurs, type ServerKind } from '../lib/servers.js'
import { compareOursReference } from '../lib/compare.js'
import { checkConsistency, measureStep, measureStepUndisturbed, setupLoad, type LoadLayout, type StepResult } from '../lib/load.js'
import { GeneratorPool } from '../lib/pool.js'
import type { TargetRun } from '../lib/result.js'
import { waitForQuiet } from '../lib/proc.js'
import { flushFigures, scrapeFlushes } from '../lib/store-flushes.js'
import { startTarget, type StoreKind, type Target } from '../lib/target.js'
import { defaultPlan, type Flags, type Scenario, type ScenarioContext } from './types.js'

export interface SteadyShape { docs: number; clients: number; rate: number }

/** Figures of one measured step, as headline metrics. */
export function stepMetrics (step: StepResult): Record<string, number | null> {
  return {
    latency_p50_ms: step.latencyMs.p50,
    latency_p95_ms: step.latencyMs.p95,
    latency_p99_ms: step.latencyMs.p99,
    latency_max_ms: step.latencyMs.max,
    sink_latency_p50_ms: step.sinkLatencyMs.p50,
    sink_latency_p99_ms: step.sinkLatencyMs.p99,
    sink_latency_max_ms: step.sinkLatencyMs.max,
    sent_per_s: step.sentPerS,
    delivered_per_s: step.deliveredPerS,
    delivery_ratio: step.deliveryRatio,
    cpu_user_s_per_1k: step.serverCpu.userPer1k,
    cpu_system_s_per_1k: step.serverCpu.systemPer1k,
    cpu_total_s_per_1k: step.serverCpu.totalPer1k,
    redis_cpu_s_per_1k: step.serverCpu.redisPer1k,
    cpu_with_redis_s_per_1k: step.serverCpu.withRedisPer1k,
    server_cpu_pct: step.serverCpu.pctOfCore,
    rss_mb: step.serverRssMb
  }
}

export function stepNotes (step: StepResult): string[] {
  const notes: string[] = []
  if (step.generator.reasons.length > 0) notes.push(`generator: ${step.generator.reasons.join('; ')}`)
  if (step.disconnects > 0) notes.push(`${step.disconnects} clients disconnected during the step: ${JSON.stringify(step.closeReasons)}`)
  if (step.deliveryAfterDrain !== null && step.deliveryAfterDrain < 0.999) notes.push(`only ${(step.deliveryAfterDrain * 100).toFixed(2)} % of expected updates arrived even after draining`)
  return notes
}

/** Starts the target and a generator pool, runs `body`, always cleans both up. */
export async function withTarget<T> (ctx: ScenarioContext, kind: ServerKind, nodes: number, body: (target: Target, pool: GeneratorPool) => Promise<T>, workers = 2 + (ctx.flags.workers ?? 2), env: Record<string, string> = {}, store?: StoreKind): Promise<T> {
  // Figures from a busy machine are not comparable: wait (bounded) for other work to finish.
  const busy = await waitForQuiet(25, (ctx.flags.quietWait ?? 120) * 1000, pct => ctx.log(`  waiting for a quiet machine (${Math.round(pct)} % busy)`))
  if (busy > 25) ctx.log(`  machine still ${Math.round(busy)} % busy: measuring anyway, figures may be disturbed`)
  const target = await startTarget(kind, { ...ctx.targetOptions, env: { ...env, ...ctx.targetOptions.env } }, nodes, store)
  ctx.log(`${target.name} (${target.version}) on port${target.nodes.length > 1 ? 's' : ''} ${target.nodes.map(n => n.port).join(', ')}`)
  let pool: GeneratorPool | null = null
  try {
    pool = await GeneratorPool.start(workers)
    return await body(target, pool)
  } finally {
    if (pool !== null) await pool.stop()
    await target.stop()
  }
}

export async function runSteadyOn (ctx: ScenarioContext, kind: ServerKind, nodes: number, shape: SteadyShape, docPrefix: string, store?: StoreKind): Promise<TargetRun> {
  const flags = ctx.flags
  return await withTarget(ctx, kind, nodes, async (target, pool) => {
    const layout: LoadLayout = { docs: shape.docs, clientsPerDoc: shape.clients, docPrefix }
    const session = await setupLoad(pool, target, layout, flags.concurrency ?? 200)
    ctx.log(`  ${session.connect.ok}/${session.connect.attempted} clients synced in ${session.connect.wallMs} ms`)
    if (nodes > 1) await probeCrossNode(ctx, session)
    const flushesBefore = !isOurs(kind) ? null : await scrapeFlushes(target.nodes[0]!.port)
    const step = await measureStepUndisturbed(session, shape.rate, (flags.warmup ?? 2) * 1000, (flags.duration ?? 30) * 1000, ctx.log, (flags.quietWait ?? 120) * 1000)
    const flushes = flushesBefore === null ? {} : flushFigures(flushesBefore, await scrapeFlushes(target.nodes[0]!.port))
    const consistency = await checkConsistency(session)
    ctx.log(`  delivered ${step.deliveredPerS}/s (ratio ${step.deliveryRatio}), p50 ${step.latencyMs.p50} ms, p99 ${step.latencyMs.p99} ms, ` +
      `server CPU ${step.serverCpu.pctOfCore} % (${step.serverCpu.userPer1k} s user + ${step.serverCpu.systemPer1k} s sys per 1k), consistency ${consistency.ok ? 'ok' : 'FAILED'}`)
    const notes = stepNotes(step)
    if (!consistency.ok) notes.push(`consistency check failed: ${consistency.examples.join('; ')} ${consistency.clientErrors.join('; ')}`)
    return {
      target: target.name,
      version: target.version,
      metrics: { ...stepMetrics(step), ...flushes, consistency_ok: consistency.ok ? 1 : 0 },
      details: { shape, connect: session.connect, step, consistency },
      notes,
      generatorBound: step.generator.bound
    }
  }, undefined, {}, store)
}

/**
 * Before measuring a cluster, one edit per document must reach the observers on the other nodes;
 * otherwise cluster mode is missing or broken and the figures would be meaningless.
 */
async function probeCrossNode (ctx: ScenarioContext, session: Awaited<ReturnType<typeof setupLoad>>): Promise<void> {
  const probe = await measureStep(session, 2, 500, 1500, 3000)
  const observed = probe.latencyMs.count
  if (observed === 0 || (probe.deliveryAfterDrain ?? 0) < 0.9) {
    throw new Error(`cross-node delivery does not work on ${session.target.name}: observers on other nodes received ${observed} of the probe edits ` +
      `(delivery after drain ${probe.deliveryAfterDrain}). Cluster mode (REDIS_URL) is missing or broken in this build; check \`git log\` for it.`)
  }
  ctx.log(`  cross-node probe ok (${observed} edits observed across nodes)`)
}

const STEADY_METRICS = [
  'latency_p50_ms', 'latency_p95_ms', 'latency_p99_ms', 'latency_max_ms',
  'sink_latency_p50_ms', 'sink_latency_p99_ms', 'sink_latency_max_ms', 'delivered_per_s', 'delivery_ratio',
  'cpu_user_s_per_1k', 'cpu_system_s_per_1k', 'cpu_total_s_per_1k', 'server_cpu_pct', 'rss_mb',
  'store_flushes_per_s', 'store_flush_mean_ms', 'store_flush_p99_ms'
]

export function steadyScenario (name: string, preset: SteadyShape | null): Scenario {
  const shape = (flags: Flags): SteadyShape => ({
    docs: flags.docs ?? preset?.docs ?? 10,
    clients: Math.max(2, flags.clients ?? preset?.clients ?? 10),
    rate: flags.rate ?? preset?.rate ?? 5
  })
  return {
    name,
    title: preset === null ? 'Steady load (custom shape)' : `Steady load: ${preset.docs} docs x ${preset.clients} clients @ ${preset.rate}/s`,
    params: flags => ({ ...shape(flags), durationS: flags.duration ?? 30, warmupS: flags.warmup ?? 2, sinkWorkers: flags.workers ?? 2 }),
    plan: defaultPlan,
    run: async (ctx, plan) => await runSteadyOn(ctx, plan.kind, plan.nodes, shape(ctx.flags), 'steady', plan.store),
    compare: runs => compareOursReference(runs, STEADY_METRICS, {
      cpu_user_s_per_1k: { kind: 'max', ratio: 0.5, text: '<= 0.5x reference' },
      cpu_total_s_per_1k: { kind: 'max', ratio: 1, text: '<= 1x reference' }
    })
  }
}
