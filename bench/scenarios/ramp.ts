/**
 * Saturation ramp: the per-document rate rises step by step (same schedule for every server)
 * until delivery falls below 99 % or p99 passes 100 ms. The figure is the highest delivered
 * edits/s of a step that still met both.
 */
import { compareOursReference } from '../lib/compare.js'
import { checkConsistency, measureStepUndisturbed, setupLoad, type LoadSession, type StepResult } from '../lib/load.js'
import type { TargetRun } from '../lib/result.js'
import { LIFTED_RATE_LIMITS } from '../lib/target.js'
import { sig, sleep } from '../lib/stats.js'
import { stepNotes, withTarget, type SteadyShape } from './steady.js'
import { defaultPlan, type Flags, type Scenario } from './types.js'

const MIN_DELIVERY = 0.99
const MAX_P99_MS = 100

export interface RampStep extends StepResult {
  kind: 'schedule' | 'refine' | "reference's best"
  passed: boolean
  failure: string | null
  consistencyOk: boolean
}

/** Bisection steps between the last passing and the first failing rate of the schedule. */
const REFINE_STEPS = 2

/** The rate schedule: start, start*factor, ... rounded to two significant digits. */
export function rampRates (start: number, factor: number, steps: number): number[] {
  const rates: number[] = []
  let r = start
  for (let i = 0; i < steps; i++) {
    const rounded = sig(r, 2)!
    if (rates.length === 0 || rounded > rates[rates.length - 1]!) rates.push(rounded)
    r *= factor
  }
  return rates
}

function judge (step: StepResult): string | null {
  const problems: string[] = []
  if (step.deliveryRatio === null || step.deliveryRatio < MIN_DELIVERY) problems.push(`delivery ${((step.deliveryRatio ?? 0) * 100).toFixed(1)} % < 99 %`)
  if (step.latencyMs.p99 === null || step.latencyMs.p99 > MAX_P99_MS) problems.push(`p99 ${step.latencyMs.p99 ?? 'n/a'} ms > 100 ms`)
  if (step.disconnects > 0) problems.push(`${step.disconnects} clients disconnected (${Object.keys(step.closeReasons).join(', ')})`)
  if (step.deliveryAfterDrain !== null && step.deliveryAfterDrain < MIN_DELIVERY) problems.push(`${((1 - step.deliveryAfterDrain) * 100).toFixed(1)} % of updates never arrived`)
  return problems.length === 0 ? null : problems.join('; ')
}

export function rampScenario (name: string, preset: SteadyShape & { startRate: number }): Scenario {
  const shape = (flags: Flags): SteadyShape & { rates: number[] } => ({
    docs: flags.docs ?? preset.docs,
    clients: Math.max(2, flags.clients ?? preset.clients),
    rate: flags.rate ?? preset.startRate,
    rates: rampRates(flags.rate ?? preset.startRate, flags.factor ?? 1.5, flags.steps ?? 14)
  })
  /** The reference's highest sustained rate, once its ramp ran (it runs first). */
  let referenceBestRate: number | null = null
  return {
    name,
    title: `Saturation ramp: ${preset.docs} docs x ${preset.clients} clients`,
    params: flags => ({
      ...shape(flags),
      refineSteps: REFINE_STEPS,
      serverEnv: LIFTED_RATE_LIMITS,
      stepDurationS: flags.stepDuration ?? 8,
      warmupS: flags.warmup ?? 1,
      sinkWorkers: flags.workers ?? 2,
      minDelivery: MIN_DELIVERY,
      maxP99Ms: MAX_P99_MS
    }),
    // The reference first: our ramp then also measures the reference's best rate exactly.
    plan: flags => defaultPlan(flags).reverse(),
    run: async (ctx, plan) => {
      const flags = ctx.flags
      const s = shape(flags)
      return await withTarget(ctx, plan.kind, plan.nodes, async (target, pool) => {
        const steps: RampStep[] = []
        let session: LoadSession | null = null
        let stepIndex = 0
        /**
         * Every step gets fresh connections and a fresh document: a step that overloaded the
         * server leaves backlogs in buffers that would otherwise spill into the next one.
         */
        const runStep = async (rate: number, kind: RampStep['kind']): Promise<RampStep> => {
          if (session !== null) {
            await pool.broadcast({ type: 'close-all' })
            await sleep(500) // let the server process the closes before 500 new upgrades arrive
          }
          session = await setupLoad(pool, target, { docs: s.docs, clientsPerDoc: s.clients, docPrefix: `ramp-s${stepIndex++}` }, flags.concurrency ?? 200)
          if (session.connect.retried > 0) ctx.log(`  ${session.connect.retried} connections needed a retry: ${JSON.stringify(session.connect.retryReasons)}`)
          const step = await measureStepUndisturbed(session, rate, (flags.warmup ?? 1) * 1000, (flags.stepDuration ?? 8) * 1000, ctx.log, (flags.quietWait ?? 120) * 1000)
          const consistency = await checkConsistency(session, 3000)
          const failure = judge(step)
          const result: RampStep = { ...step, kind, passed: failure === null, failure, consistencyOk: consistency.ok }
          steps.push(result)
          ctx.log(`  ${kind === 'schedule' ? '' : `(${kind}) `}rate ${rate}/s/doc: sent ${step.sentPerS}/s, delivered ${step.deliveredPerS}/s (${((step.deliveryRatio ?? 0) * 100).toFixed(1)} %), ` +
            `p99 ${step.latencyMs.p99} ms, server ${step.serverCpu.pctOfCore} %, machine ${step.generator.machineCpuPct} %, ` +
            `gen ${step.generator.workers.map(w => w.cpuPct).join('/')} %${failure === null ? '' : ` -> fails: ${failure}`}`)
          return result
        }

        let lastPass: RampStep | null = null
        let firstFail: RampStep | null = null
        for (const rate of s.rates) {
          const step = await runStep(rate, 'schedule')
          if (!step.passed) { firstFail = step; break }
          lastPass = step
        }
        // Narrow the limit down between the last passing and the first failing rate.
        if (lastPass !== null && firstFail !== null) {
          let lo = lastPass.ratePerDoc
          let hi = firstFail.ratePerDoc
          for (let k = 0; k < REFINE_STEPS; k++) {
            const mid = sig(Math.sqrt(lo * hi), 2)!
            if (mid <= lo || mid >= hi) break
            const step = await runStep(mid, 'refine')
            if (step.passed) lo = mid
            else hi = mid
          }
        }
        if (plan.kind === 'ours' && referenceBestRate !== null && !steps.some(st => st.ratePerDoc === referenceBestRate)) {
          await runStep(referenceBestRate, "reference's best")
        }

        const passed = steps.filter(st => st.passed)
        const best = passed.reduce<RampStep | null>((b, st) => b === null || (st.deliveredPerS ?? 0) > (b.deliveredPerS ?? 0) ? st : b, null)
        const failed = steps.filter(st => !st.passed && (best === null || st.ratePerDoc > best.ratePerDoc)).sort((a, b) => a.ratePerDoc - b.ratePerDoc)[0]
        const stopReason = failed === undefined
          ? `no step of the schedule failed (the ramp's ceiling, not a server limit; raise --steps or --rate)`
          : `at ${failed.ratePerDoc} edits/s per document: ${failed.failure}` +
            (failed.generator.bound ? ` (the generator was saturated too: ${failed.generator.reasons.join('; ')})` : '')
        if (plan.kind === 'reference') referenceBestRate = best?.ratePerDoc ?? null
        const notes = [`limit ${stopReason}`]
        if (best !== null) notes.push(...stepNotes(best).map(n => `at the best step: ${n}`))
        const inconsistent = steps.filter(st => st.passed && !st.consistencyOk)
        if (inconsistent.length > 0) notes.push(`consistency check failed after passing steps at ${inconsistent.map(st => st.ratePerDoc).join(', ')} edits/s`)
        if (session !== null) await pool.broadcast({ type: 'close-all' })
        const run: TargetRun = {
          target: target.name,
          version: target.version,
          metrics: {
            max_sustained_delivered_per_s: best?.deliveredPerS ?? null,
            max_sustained_rate_per_doc: best?.ratePerDoc ?? null,
            latency_p50_ms: best?.latencyMs.p50 ?? null,
            latency_p99_ms: best?.latencyMs.p99 ?? null,
            sink_latency_p99_ms: best?.sinkLatencyMs.p99 ?? null,
            cpu_user_s_per_1k: best?.serverCpu.userPer1k ?? null,
            cpu_system_s_per_1k: best?.serverCpu.systemPer1k ?? null,
            server_cpu_pct: best?.serverCpu.pctOfCore ?? null,
            rss_mb: best?.serverRssMb ?? null,
            consistency_ok: inconsistent.length === 0 ? 1 : 0
          },
          details: { shape: s, stopReason, steps },
          notes,
          generatorBound: best?.generator.bound === true || (failed?.generator.bound ?? false)
        }
        return run
      }, undefined, LIFTED_RATE_LIMITS)
    },
    compare: runs => {
      addP99AtReferenceMax(runs)
      return compareOursReference(runs, ['max_sustained_delivered_per_s', 'max_sustained_rate_per_doc', 'p99_at_reference_max_ms', 'latency_p99_ms', 'sink_latency_p99_ms', 'cpu_user_s_per_1k', 'cpu_system_s_per_1k'], {
        max_sustained_delivered_per_s: name.includes('1x500')
          ? { kind: 'min', ratio: 8, text: '>= 8x reference' }
          : { kind: 'min', ratio: 2, text: '>= 2x reference' },
        ...(name.includes('1x500') ? { p99_at_reference_max_ms: { kind: 'max' as const, ratio: 0.25, text: '<= 0.25x reference' } } : {})
      })
    }
  }
}

/**
 * Our p99 at the step whose rate is the reference's highest sustained rate (our ramp measures that
 * rate too), next to the reference's own p99 there.
 */
function addP99AtReferenceMax (runs: TargetRun[]): void {
  const reference = runs.find(r => r.target === 'reference' && r.error === undefined)
  const ours = runs.find(r => r.target === 'ours' && r.error === undefined)
  const refRate = reference?.metrics.max_sustained_rate_per_doc ?? null
  if (reference === undefined || ours === undefined || refRate === null) return
  const stepAt = (run: TargetRun): RampStep | undefined => (run.details.steps as RampStep[]).find(st => st.ratePerDoc === refRate)
  reference.metrics.p99_at_reference_max_ms = stepAt(reference)?.latencyMs.p99 ?? null
  ours.metrics.p99_at_reference_max_ms = stepAt(ours)?.latencyMs.p99 ?? null
}
