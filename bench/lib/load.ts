/**
 * The document load shared by the steady, ramp and cross-node scenarios: per document one writer,
 * one observer and lean sinks, spread over the generator workers; a measured window at a given
 * per-document rate; the consistency check.
 */
import type { ClientSpec, ConnectResult, WorkerSnapshot } from './ipc.js'
import type { GeneratorPool } from './pool.js'
import { LatencyHistogram, percentiles, round, sig, sleep, type Percentiles } from './stats.js'
import { clkTck, waitForQuiet } from './proc.js'
import { isOurs } from './servers.js'
import { markCpu, type CpuMark, type Target } from './target.js'
import { signTokens } from './tokens.js'

export interface LoadLayout {
  docs: number
  /** Clients per document, writer and observer included (at least 2). */
  clientsPerDoc: number
  docPrefix: string
}

export interface ConnectSummary {
  attempted: number
  ok: number
  failed: number
  /** Connections that succeeded only after a retry, and why the first attempt failed. */
  retried: number
  retryReasons: Record<string, number>
  timeToSyncedMs: Percentiles
  errors: Record<string, number>
  wallMs: number
}

export interface LoadSession {
  target: Target
  pool: GeneratorPool
  layout: LoadLayout
  recipientsByDoc: Map<string, number>
  connect: ConnectSummary
}

let tokenCache: string[] = []
export async function tokensFor (count: number): Promise<string[]> {
  if (tokenCache.length < count) tokenCache = tokenCache.concat(await signTokens(count - tokenCache.length, `bench-user-${tokenCache.length}`))
  return tokenCache.slice(0, count)
}

export function summarizeConnects (results: ConnectResult[], wallMs: number): ConnectSummary {
  const errors: Record<string, number> = {}
  for (const r of results) {
    if (r.ok) continue
    const key = (r.error ?? 'unknown').slice(0, 120)
    errors[key] = (errors[key] ?? 0) + 1
  }
  const ok = results.filter(r => r.ok)
  const retryReasons: Record<string, number> = {}
  for (const r of results) {
    if (r.firstError === undefined) continue
    const key = r.firstError.slice(0, 120)
    retryReasons[key] = (retryReasons[key] ?? 0) + 1
  }
  return {
    attempted: results.length,
    ok: ok.length,
    failed: results.length - ok.length,
    retried: results.filter(r => (r.attempts ?? 1) > 1 && r.ok).length,
    retryReasons,
    timeToSyncedMs: roundPercentiles(percentiles(ok.map(r => r.ms))),
    errors,
    wallMs: Math.round(wallMs)
  }
}

export function roundPercentiles (p: Percentiles, digits = 2): Percentiles {
  return { count: p.count, p50: round(p.p50, digits), p95: round(p.p95, digits), p99: round(p.p99, digits), max: round(p.max, digits), mean: round(p.mean, digits) }
}

/**
 * Connects every client of the layout and waits until each is synced. Writers and sinks first,
 * observers last: in the reference server's fan-out order (connection order) the observer is then
 * the last recipient, so its latency includes the whole fan-out.
 */
export async function setupLoad (pool: GeneratorPool, target: Target, layout: LoadLayout, concurrency: number): Promise<LoadSession> {
  const workers = pool.workers.length
  const nodes = target.nodes.length
  const total = layout.docs * layout.clientsPerDoc
  const tokens = isOurs(target.kind) ? await tokensFor(total) : []
  const phase1: ClientSpec[][] = pool.workers.map(() => [])
  const phase2: ClientSpec[][] = pool.workers.map(() => [])
  const recipientsByDoc = new Map<string, number>()
  // With three or more workers, writers and observers get a process each and the sinks share the
  // rest: an observer's latency then does not include reading hundreds of sink sockets first.
  const dedicated = workers >= 3
  const writerWorker = (d: number): number => dedicated ? 0 : d % workers
  const observerWorker = (d: number): number => dedicated ? 1 : (d + 1) % workers
  const sinkWorkers = dedicated ? workers - 2 : workers
  const sinkWorker = (k: number): number => dedicated ? 2 + (k % sinkWorkers) : k % workers
  let id = 0
  let sinkCounter = 0
  const docOf = new Map<number, string>()
  for (let d = 0; d < layout.docs; d++) {
    const docId = `${layout.docPrefix}-${d}`
    const spec = (role: ClientSpec['role'], node: number): ClientSpec => {
      const clientId = id++
      docOf.set(clientId, docId)
      return { id: clientId, role, docId, endpoint: target.endpoint(node, docId, tokens[clientId] ?? '') }
    }
    // Writer on node 1; observer on another node when there are several (cross-node latency).
    phase1[writerWorker(d)]!.push(spec('writer', 0))
    phase2[observerWorker(d)]!.push(spec('observer', nodes > 1 ? 1 + (d % (nodes - 1)) : 0))
    for (let k = 0; k < layout.clientsPerDoc - 2; k++) {
      phase1[sinkWorker(sinkCounter)]!.push(spec('sink', sinkCounter % nodes))
      sinkCounter++
    }
  }
  const started = performance.now()
  const perWorker = Math.max(1, Math.ceil(concurrency / workers))
  const results1 = (await pool.all(async w => await w.connect(phase1[w.index]!, perWorker, 30_000))).flat()
  const results2 = (await pool.all(async w => await w.connect(phase2[w.index]!, perWorker, 30_000))).flat()
  const results = [...results1, ...results2]
  const wallMs = performance.now() - started
  const roles = new Map<number, ClientSpec['role']>()
  for (const list of [...phase1, ...phase2]) for (const s of list) roles.set(s.id, s.role)
  for (const r of results) {
    const docId = docOf.get(r.id)!
    if (!recipientsByDoc.has(docId)) recipientsByDoc.set(docId, 0)
    if (r.ok && roles.get(r.id) !== 'writer') recipientsByDoc.set(docId, recipientsByDoc.get(docId)! + 1)
  }
  const failedKey = results.filter(r => !r.ok && roles.get(r.id) !== 'sink')
  if (failedKey.length > 0) {
    throw new Error(`${failedKey.length} writer/observer connections failed on ${target.name}: ${failedKey.slice(0, 3).map(r => r.error).join('; ')}`)
  }
  return { target, pool, layout, recipientsByDoc, connect: summarizeConnects(results, wallMs) }
}

export interface GeneratorReport {
  workers: Array<{ cpuPct: number | null; eldP99Ms: number | null; eldMaxMs: number | null; writerLagMax: number; rssMb: number | null }>
  /** Busy share of all cores of the machine. */
  machineCpuPct: number | null
  /** CPU the server, Redis, the generator and the coordinator do not explain: other processes, in % of one core. */
  otherCpuPct: number | null
  /** Hypervisor steal, in % of one core. */
  stealPct: number | null
  bound: boolean
  reasons: string[]
}

/** monitorEventLoopDelay records whole timer intervals: the delay is the excess over its resolution. */
const ELD_RESOLUTION_MS = 5

export interface StepResult {
  ratePerDoc: number
  /** How many times the window was measured (repeated when other processes disturbed it). */
  attempts?: number
  durationS: number
  sentPerS: number | null
  deliveredPerS: number | null
  expectedPerS: number | null
  deliveryRatio: number | null
  /** Delivered / expected over the whole step after draining: below 1 means updates were lost. */
  deliveryAfterDrain: number | null
  latencyMs: Percentiles
  /** Latency of every update the sinks received in the window (arrival minus send time). */
  sinkLatencyMs: Percentiles
  serverCpu: {
    userS: number | null
    systemS: number | null
    userPer1k: number | null
    systemPer1k: number | null
    totalPer1k: number | null
    /** Redis's CPU per 1k delivered (cluster targets), and the servers' plus Redis's. */
    redisPer1k: number | null
    withRedisPer1k: number | null
    pctOfCore: number | null
  }
  redisCpuPct: number | null
  serverRssMb: number | null
  disconnects: number
  closeReasons: Record<string, number>
  generator: GeneratorReport
}

interface Totals { sent: number; expected: number; delivered: number }

function totals (session: LoadSession, snaps: WorkerSnapshot[]): Totals {
  let sent = 0
  let expected = 0
  let delivered = 0
  for (const s of snaps) {
    for (const [docId, n] of Object.entries(s.sentByDoc)) {
      sent += n
      expected += n * (session.recipientsByDoc.get(docId) ?? 0)
    }
    delivered += s.sinkUpdates + s.observerUpdates
  }
  return { sent, expected, delivered }
}

export function generatorReport (before: WorkerSnapshot[], after: WorkerSnapshot[], machineBefore: CpuMark, machineAfter: CpuMark, rateHint = 0): GeneratorReport {
  const reasons: string[] = []
  const workers = after.map((a, i) => {
    const b = before[i]!
    const wall = (a.wallMs - b.wallMs) * 1000
    const cpuPct = wall > 0 ? ((a.cpuUserUs - b.cpuUserUs) + (a.cpuSystemUs - b.cpuSystemUs)) / wall * 100 : null
    const eldP99 = Math.max(0, a.eldP99Ms - ELD_RESOLUTION_MS)
    const eldMax = Math.max(0, a.eldMaxMs - ELD_RESOLUTION_MS)
    if (cpuPct !== null && cpuPct > 90) reasons.push(`generator worker ${i} used ${Math.round(cpuPct)} % of a core`)
    if (eldP99 > 50) reasons.push(`generator worker ${i} event-loop delay p99 ${round(eldP99, 1)} ms`)
    // A backlog of more than 50 ms of edits means the writers' process could not keep the schedule.
    if (rateHint > 0 && a.writerLagMax > Math.max(3, rateHint * 0.05)) reasons.push(`writers in worker ${i} fell ${a.writerLagMax} edits behind schedule`)
    return { cpuPct: round(cpuPct, 1), eldP99Ms: round(eldP99, 2), eldMaxMs: round(eldMax, 2), writerLagMax: a.writerLagMax, rssMb: round(a.rssBytes / 1048576, 1) }
  })
  const busy = machineAfter.machine.busy - machineBefore.machine.busy
  const all = machineAfter.machine.total - machineBefore.machine.total
  const machineCpuPct = all > 0 ? busy / all * 100 : null
  if (machineCpuPct !== null && machineCpuPct > 95) reasons.push(`machine CPU ${Math.round(machineCpuPct)} % busy: server and generator compete for the cores`)
  // Everything the machine did that this bench's processes do not account for.
  const seconds = (machineAfter.at - machineBefore.at) / 1000
  const tck = clkTck()
  const known = (machineAfter.server.user - machineBefore.server.user) + (machineAfter.server.system - machineBefore.server.system) +
    (machineAfter.redis !== null && machineBefore.redis !== null ? (machineAfter.redis.user - machineBefore.redis.user) + (machineAfter.redis.system - machineBefore.redis.system) : 0) +
    after.reduce((sum, a, i) => sum + ((a.cpuUserUs - before[i]!.cpuUserUs) + (a.cpuSystemUs - before[i]!.cpuSystemUs)) / 1e6, 0) +
    (machineAfter.self - machineBefore.self)
  // Softirq time (the loopback network stack) may not be charged to any process: leave it out.
  const irq = machineAfter.machine.irq - machineBefore.machine.irq
  const otherCpuPct = seconds > 0 ? Math.max(0, ((busy - irq) / tck - known) / seconds * 100) : null
  const stealPct = seconds > 0 ? (machineAfter.machine.steal - machineBefore.machine.steal) / tck / seconds * 100 : null
  if (otherCpuPct !== null && otherCpuPct > 20) reasons.push(`other processes on the machine used about ${Math.round(otherCpuPct)} % of a core during the window: figures may be disturbed`)
  if (stealPct !== null && stealPct > 10) reasons.push(`the hypervisor stole ${Math.round(stealPct)} % of a core during the window`)
  return {
    workers,
    machineCpuPct: round(machineCpuPct, 1),
    otherCpuPct: round(otherCpuPct, 1),
    stealPct: round(stealPct, 1),
    bound: reasons.some(r => r.startsWith('generator') || r.startsWith('writers')),
    reasons
  }
}

/** Every worker's snapshot (`reset`: start new event-loop and lag figures; `samples`: take the latency samples). */
export async function snapshots (pool: GeneratorPool, reset: boolean, samples: boolean): Promise<WorkerSnapshot[]> {
  return await pool.all(async w => await w.snapshot(reset, samples))
}

/** Waits until no more updates arrive (or `maxMs` passed). */
async function drain (session: LoadSession, maxMs: number): Promise<WorkerSnapshot[]> {
  const deadline = Date.now() + maxMs
  let last = -1
  let stableSince = Date.now()
  for (;;) {
    const snaps = await snapshots(session.pool, false, false)
    const t = totals(session, snaps)
    if (t.delivered !== last) {
      last = t.delivered
      stableSince = Date.now()
    }
    if (t.delivered >= t.expected || Date.now() - stableSince > 750 || Date.now() > deadline) return snaps
    await sleep(100)
  }
}

/** Other processes used more than this share of a core during a window: repeat it. */
const DISTURBED_PCT = 20

/**
 * measureStep, repeated (at most `retries` times, after waiting for a quiet machine) when other
 * processes on the machine disturbed the window. The result says how many attempts it took.
 */
export async function measureStepUndisturbed (session: LoadSession, ratePerDoc: number, warmupMs: number, durationMs: number, log: (m: string) => void, quietWaitMs = 120_000, retries = 2): Promise<StepResult> {
  let step = await measureStep(session, ratePerDoc, warmupMs, durationMs)
  // No wait allowed (--quiet-wait 0, the test suite's smoke runs): the window stands as measured.
  if (quietWaitMs === 0) return step
  for (let attempt = 1; attempt <= retries && (step.generator.otherCpuPct ?? 0) > DISTURBED_PCT; attempt++) {
    log(`  other processes used ${step.generator.otherCpuPct} % of a core during the window: waiting for a quiet machine and repeating it`)
    await waitForQuiet(25, quietWaitMs, pct => log(`  waiting for a quiet machine (${Math.round(pct)} % busy)`))
    step = await measureStep(session, ratePerDoc, warmupMs, durationMs)
    step.attempts = attempt + 1
  }
  return step
}

/**
 * Runs the writers at `ratePerDoc` edits/s each: warm-up, a measured window, then stop and drain.
 * Latency counts the edits sent inside the window, wherever they arrived.
 */
export async function measureStep (session: LoadSession, ratePerDoc: number, warmupMs: number, durationMs: number, drainMs = 5000): Promise<StepResult> {
  const { pool, target } = session
  const s0 = await snapshots(pool, true, true) // also discards stale samples
  await pool.broadcast({ type: 'record', on: true })
  await pool.broadcast({ type: 'start-writers', rate: ratePerDoc })
  await sleep(warmupMs)
  const a = await snapshots(pool, true, true)
  const markA = markCpu(target)
  await sleep(durationMs)
  const b = await snapshots(pool, false, true)
  const markB = markCpu(target)
  const rssB = target.rss()
  await pool.broadcast({ type: 'stop-writers' })
  await drain(session, drainMs)
  const c = await snapshots(pool, false, true)
  await pool.broadcast({ type: 'record', on: false })

  const seconds = (markB.at - markA.at) / 1000
  const tA = totals(session, a)
  const tB = totals(session, b)
  const t0 = totals(session, s0)
  const tC = totals(session, c)
  const delivered = tB.delivered - tA.delivered
  const expected = tB.expected - tA.expected
  const sent = tB.sent - tA.sent

  const latencies: number[] = []
  for (const snap of [...b, ...c]) {
    const samples = snap.samples
    if (samples === undefined) continue
    for (let k = 0; k + 1 < samples.length; k += 2) {
      const sentAt = samples[k]!
      if (sentAt >= markA.at && sentAt <= markB.at) latencies.push(samples[k + 1]!)
    }
  }
  const sinkHist = LatencyHistogram.merge(b.flatMap(snap => snap.sinkLatency === undefined ? [] : [snap.sinkLatency]))
  const user = markB.server.user - markA.server.user
  const system = markB.server.system - markA.server.system
  const per1k = (cpu: number): number | null => delivered > 0 ? cpu / delivered * 1000 : null
  const redisSeconds = markA.redis !== null && markB.redis !== null
    ? (markB.redis.user - markA.redis.user) + (markB.redis.system - markA.redis.system)
    : null
  const redisCpu = redisSeconds === null ? null : redisSeconds / seconds * 100

  const closeReasons: Record<string, number> = {}
  let disconnects = 0
  for (let i = 0; i < c.length; i++) {
    disconnects += c[i]!.closed - s0[i]!.closed
    for (const [reason, n] of Object.entries(c[i]!.closeReasons)) {
      const diff = n - (s0[i]!.closeReasons[reason] ?? 0)
      if (diff > 0) closeReasons[reason] = (closeReasons[reason] ?? 0) + diff
    }
  }

  return {
    ratePerDoc,
    durationS: round(seconds, 2)!,
    sentPerS: sig(sent / seconds, 4),
    deliveredPerS: sig(delivered / seconds, 4),
    expectedPerS: sig(expected / seconds, 4),
    deliveryRatio: expected > 0 ? round(delivered / expected, 4) : null,
    deliveryAfterDrain: tC.expected - t0.expected > 0 ? round((tC.delivered - t0.delivered) / (tC.expected - t0.expected), 4) : null,
    latencyMs: roundPercentiles(percentiles(latencies)),
    sinkLatencyMs: roundPercentiles(sinkHist.summary()),
    serverCpu: {
      userS: round(user, 2),
      systemS: round(system, 2),
      userPer1k: sig(per1k(user), 3),
      systemPer1k: sig(per1k(system), 3),
      totalPer1k: sig(per1k(user + system), 3),
      redisPer1k: redisSeconds === null ? null : sig(per1k(redisSeconds), 3),
      withRedisPer1k: sig(per1k(user + system + (redisSeconds ?? 0)), 3),
      pctOfCore: round((user + system) / seconds * 100, 1)
    },
    redisCpuPct: round(redisCpu, 1),
    serverRssMb: round(rssB / 1048576, 1),
    disconnects,
    closeReasons,
    generator: generatorReport(a, b, markA, markB, ratePerDoc)
  }
}

export interface ConsistencyResult {
  ok: boolean
  docsChecked: number
  mismatched: number
  examples: string[]
  clientErrors: string[]
}

/** Writer and observer of every document hold equal documents (retried while updates settle). */
export async function checkConsistency (session: LoadSession, settleMs = 5000): Promise<ConsistencyResult> {
  const deadline = Date.now() + settleMs
  for (;;) {
    const digests = (await session.pool.all(async w => await w.digest())).flat()
    const byDoc = new Map<string, { writer?: (typeof digests)[number]; observer?: (typeof digests)[number] }>()
    const clientErrors: string[] = []
    for (const d of digests) {
      const entry = byDoc.get(d.docId) ?? {}
      entry[d.role] = d
      byDoc.set(d.docId, entry)
      clientErrors.push(...d.errors)
    }
    const examples: string[] = []
    let mismatched = 0
    for (const [docId, { writer, observer }] of byDoc) {
      if (writer === undefined || observer === undefined) continue
      if (writer.length !== observer.length || writer.stateVector !== observer.stateVector || writer.sum !== observer.sum) {
        mismatched++
        if (examples.length < 5) examples.push(`${docId}: writer ${writer.length} entries, observer ${observer.length}`)
      }
    }
    if (mismatched === 0 || Date.now() > deadline) {
      return { ok: mismatched === 0 && clientErrors.length === 0, docsChecked: byDoc.size, mismatched, examples, clientErrors: clientErrors.slice(0, 5) }
    }
    await sleep(250)
  }
}
