/**
 * Presence: D documents x P people whose cursors move R times a second each. Every client is a
 * presence client (bench/lib/presence-client.ts): it announces a state of the size y-prosemirror
 * sends and, as the stock provider does, sends back every new state it receives, so the server
 * reads P messages per move (one move, P - 1 echoes) and delivers P - 1. Reported per 1k states
 * delivered: server CPU; and the latency of a move to the others. With `--nodes 1,2`, ours also
 * runs on 2 nodes over a Redis the bench starts, each document's people spread over the nodes
 * (Redis's CPU counted with the servers').
 */
import { compareMetric, compareOursReference } from '../lib/compare.js'
import type { ClientSpec, WorkerSnapshot } from '../lib/ipc.js'
import { generatorReport, roundPercentiles, snapshots, summarizeConnects, tokensFor } from '../lib/load.js'
import type { GeneratorPool } from '../lib/pool.js'
import type { Comparison, TargetRun } from '../lib/result.js'
import { isOurs } from '../lib/servers.js'
import { LatencyHistogram, round, sig, sleep } from '../lib/stats.js'
import { markCpu, type Target } from '../lib/target.js'
import { withTarget } from './steady.js'
import { defaultPlan, type Flags, type Scenario, type TargetPlan } from './types.js'

interface PresenceShape { docs: number; people: number; rate: number }

function shapeOf (flags: Flags): PresenceShape {
  return { docs: flags.docs ?? 20, people: Math.max(2, flags.clients ?? 10), rate: flags.rate ?? 2 }
}

function sum (snaps: WorkerSnapshot[], field: 'moves' | 'deliveries' | 'echoes'): number {
  return snaps.reduce((total, snap) => total + snap.presence[field], 0)
}

async function connectPeople (pool: GeneratorPool, target: Target, shape: PresenceShape, concurrency: number): Promise<ReturnType<typeof summarizeConnects>> {
  const total = shape.docs * shape.people
  const tokens = isOurs(target.kind) ? await tokensFor(total) : []
  const specs: ClientSpec[][] = pool.workers.map(() => [])
  let id = 0
  for (let d = 0; d < shape.docs; d++) {
    const docId = `presence-${d}`
    for (let p = 0; p < shape.people; p++) {
      const clientId = id++
      specs[clientId % specs.length]!.push({ id: clientId, role: 'presence', docId, endpoint: target.endpoint(p % target.nodes.length, docId, tokens[clientId] ?? '') })
    }
  }
  const started = performance.now()
  const perWorker = Math.max(1, Math.ceil(concurrency / pool.workers.length))
  const results = (await pool.all(async w => await w.connect(specs[w.index]!, perWorker, 30_000))).flat()
  const summary = summarizeConnects(results, performance.now() - started)
  if (summary.failed > 0) throw new Error(`${summary.failed} presence clients failed to connect to ${target.name}: ${JSON.stringify(summary.errors)}`)
  return summary
}

async function runPresence (ctx: Parameters<Scenario['run']>[0], plan: Parameters<Scenario['run']>[1]): Promise<TargetRun> {
  const flags = ctx.flags
  const shape = shapeOf(flags)
  return await withTarget(ctx, plan.kind, plan.nodes, async (target, pool) => {
    const connect = await connectPeople(pool, target, shape, flags.concurrency ?? 200)
    ctx.log(`  ${connect.ok} people synced in ${connect.wallMs} ms`)
    await sleep(1000) // the announcements and their echoes settle
    const s0 = await snapshots(pool, true, true)
    await pool.broadcast({ type: 'record', on: true })
    await pool.broadcast({ type: 'start-writers', rate: shape.rate })
    await sleep((flags.warmup ?? 2) * 1000)
    const a = await snapshots(pool, true, true)
    const markA = markCpu(target)
    await sleep((flags.duration ?? 30) * 1000)
    const b = await snapshots(pool, false, true)
    const markB = markCpu(target)
    const rss = target.rss()
    await pool.broadcast({ type: 'stop-writers' })
    await sleep(1000)
    const c = await snapshots(pool, false, false)
    await pool.broadcast({ type: 'record', on: false })

    const seconds = (markB.at - markA.at) / 1000
    const others = shape.people - 1
    const moves = sum(b, 'moves') - sum(a, 'moves')
    const delivered = sum(b, 'deliveries') - sum(a, 'deliveries')
    const expected = moves * others
    const afterDrain = (sum(c, 'deliveries') - sum(s0, 'deliveries')) / Math.max(1, (sum(c, 'moves') - sum(s0, 'moves')) * others)
    const latency = roundPercentiles(LatencyHistogram.merge(b.flatMap(snap => snap.presenceLatency === undefined ? [] : [snap.presenceLatency])).summary())
    const user = markB.server.user - markA.server.user
    const system = markB.server.system - markA.server.system
    const per1k = (cpu: number): number | null => delivered > 0 ? sig(cpu / delivered * 1000, 3) : null
    const redis = markA.redis !== null && markB.redis !== null ? (markB.redis.user - markA.redis.user) + (markB.redis.system - markA.redis.system) : null
    const generator = generatorReport(a, b, markA, markB, shape.rate)
    const disconnects = c.reduce((total, snap, i) => total + snap.closed - s0[i]!.closed, 0)
    ctx.log(`  ${round(delivered / seconds, 0)} states delivered/s (ratio ${round(delivered / Math.max(1, expected), 4)}), p50 ${latency.p50} ms, p99 ${latency.p99} ms, ` +
      `server CPU ${round((user + system) / seconds * 100, 1)} % (${per1k(user)} s user + ${per1k(system)} s sys per 1k)`)
    const notes: string[] = []
    if (generator.reasons.length > 0) notes.push(`generator: ${generator.reasons.join('; ')}`)
    if (disconnects > 0) notes.push(`${disconnects} clients disconnected during the run`)
    if (afterDrain < 0.999) notes.push(`only ${round(afterDrain * 100, 2)} % of the states sent reached the others even after draining`)
    return {
      target: target.name,
      version: target.version,
      metrics: {
        moves_per_s: sig(moves / seconds, 4),
        states_delivered_per_s: sig(delivered / seconds, 4),
        echoes_per_s: sig((sum(b, 'echoes') - sum(a, 'echoes')) / seconds, 4),
        delivery_ratio: expected > 0 ? round(delivered / expected, 4) : null,
        latency_p50_ms: latency.p50,
        latency_p99_ms: latency.p99,
        latency_max_ms: latency.max,
        cpu_user_s_per_1k: per1k(user),
        cpu_system_s_per_1k: per1k(system),
        cpu_total_s_per_1k: per1k(user + system),
        // The servers' and Redis's together: on one node, the server's alone.
        cpu_with_redis_s_per_1k: per1k(user + system + (redis ?? 0)),
        ...(redis === null ? {} : { redis_cpu_s_per_1k: per1k(redis) }),
        server_cpu_pct: round((user + system) / seconds * 100, 1),
        rss_mb: round(rss / 1048576, 1)
      },
      details: { shape, connect, generator, deliveryAfterDrain: round(afterDrain, 4), disconnects },
      notes,
      generatorBound: generator.bound
    }
  }, flags.workers ?? 2)
}

export const presenceScenario: Scenario = {
  name: 'presence',
  title: 'Presence: cursors moving, echoed back by every client as the stock provider does',
  params: flags => ({ ...shapeOf(flags), nodes: flags.nodes ?? [1], durationS: flags.duration ?? 30, warmupS: flags.warmup ?? 2, workers: flags.workers ?? 2 }),
  plan: flags => {
    const plans = defaultPlan(flags)
    // --nodes 1,2: ours on each further node count too, over Redis.
    const more: TargetPlan[] = (flags.nodes ?? []).filter(nodes => nodes > 1).map(nodes => ({ kind: 'ours', nodes }))
    return [plans[0]!, ...more, ...plans.slice(1)]
  },
  run: runPresence,
  compare: runs => {
    const single = runs.find(r => r.target === 'ours' && r.error === undefined)
    const cluster: Comparison[] = []
    for (const multi of runs.filter(r => /^ours-\d+-nodes$/.test(r.target) && r.error === undefined)) {
      for (const metric of ['cpu_with_redis_s_per_1k', 'latency_p99_ms', 'delivery_ratio']) {
        const c = compareMetric(metric, multi, single)
        if (c !== null) cluster.push(c)
      }
    }
    return [...compareOursReference(runs, [
      'states_delivered_per_s', 'delivery_ratio', 'latency_p50_ms', 'latency_p99_ms', 'cpu_user_s_per_1k', 'cpu_system_s_per_1k', 'cpu_total_s_per_1k', 'rss_mb'
    ], {
      cpu_user_s_per_1k: { kind: 'max', ratio: 0.5, text: '<= 0.5x reference' },
      cpu_total_s_per_1k: { kind: 'max', ratio: 1, text: '<= 1x reference' }
    }), ...cluster]
  }
}
