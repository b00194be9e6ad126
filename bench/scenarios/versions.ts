/**
 * Version history under load: a client brings a --mb megabyte document (24 by default) made
 * offline; 50 other clients edit 5 other documents at 10 edits/s each; then, during a measured
 * window, a named version of the large document is taken and restored through the HTTP API, and
 * the automatic version the restore's change calls for follows (the server runs with
 * VERSION_IDLE_SECONDS=2). The figures: how long each call took, and the other clients' latency
 * during the window against a quiet window just before (goal: p99 under 50 ms).
 */
import { compareOursReference } from '../lib/compare.js'
import { measureStep, setupLoad, tokensFor } from '../lib/load.js'
import { round, sleep } from '../lib/stats.js'
import { LIFTED_RATE_LIMITS } from '../lib/target.js'
import { withTarget } from './steady.js'
import { defaultPlan, type Scenario } from './types.js'

const BUSY = { docs: 5, clientsPerDoc: 10, rate: 10 }
/** An automatic version 2 s after a change: the restore's comes inside the measured window. */
const SERVER_ENV = { ...LIFTED_RATE_LIMITS, VERSION_IDLE_SECONDS: '2' }

async function automaticVersions (port: number, token: string): Promise<number> {
  const listed = await call(port, 'GET', '/documents/big-0/versions', token)
  return (listed.json.versions as Array<{ reason: string }>).filter(v => v.reason === 'auto').length
}

/** Polls until the document has more than `count` automatic versions (or `timeoutMs` passed). */
async function nextAutomaticVersion (port: number, token: string, count: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (await automaticVersions(port, token) > count) return true
    await sleep(250)
  }
  return false
}

async function call (port: number, method: string, path: string, token: string, body?: unknown): Promise<{ ms: number, json: Record<string, unknown> }> {
  const started = performance.now()
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const json = await res.json() as Record<string, unknown>
  const ms = performance.now() - started
  if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${JSON.stringify(json)}`)
  return { ms, json }
}

export const versionsScenario: Scenario = {
  name: 'versions',
  title: 'Version history: version and restore a large document while others edit',
  params: flags => ({ mb: flags.mb ?? 24, busy: BUSY, durationS: flags.duration ?? 10, serverEnv: SERVER_ENV }),
  // The reference server has no version history: ours, with --postgres and --baseline REV.
  plan: flags => defaultPlan({ ...flags, compare: false }),
  run: async (ctx, plan) => {
    const flags = ctx.flags
    const bytes = Math.round((flags.mb ?? 24) * 1_000_000)
    const [writerToken, observerToken, apiToken] = await tokensFor(3)
    return await withTarget(ctx, plan.kind, 1, async (target, pool) => {
      const port = target.nodes[0]!.port
      // On the last process (sinks only): applying the 24 MB restore stalls the process holding
      // the document's clients, which must not be the writers' or the observers'.
      const up = await pool.workers[pool.workers.length - 1]!.upload(target.endpoint(0, 'big-0', writerToken!), target.endpoint(0, 'big-0', observerToken!), bytes, 64 * 1024, 180_000)
      if (!up.ok) throw new Error(`the upload did not reach the observer: ${up.error ?? ''}`)
      ctx.log(`  ${round(bytes / 1e6, 1)} MB document uploaded`)
      // The upload's own automatic version, before anything is measured.
      if (!await nextAutomaticVersion(port, apiToken!, 0, 60_000)) throw new Error('no automatic version of the uploaded document')
      const session = await setupLoad(pool, target, { docs: BUSY.docs, clientsPerDoc: BUSY.clientsPerDoc, docPrefix: 'busy' }, 50)
      ctx.log(`  ${session.connect.ok}/${session.connect.attempted} other clients synced`)
      const quiet = await measureStep(session, BUSY.rate, 1000, 5000, 2000)
      ctx.log(`  quiet: p99 ${quiet.latencyMs.p99} ms`)
      const window = (flags.duration ?? 10) * 1000
      const during = measureStep(session, BUSY.rate, 1000, window, 5000)
      await sleep(1500)
      const created = await call(port, 'POST', '/documents/big-0/versions', apiToken!, { label: 'bench' })
      ctx.log(`  version of ${round(Number(created.json.bytes) / 1e6, 1)} MB taken in ${round(created.ms, 0)} ms`)
      const restored = await call(port, 'POST', `/documents/big-0/versions/${String(created.json.id)}/restore`, apiToken!)
      ctx.log(`  restored in ${round(restored.ms, 0)} ms (before-restore version ${String(restored.json.beforeRestore)})`)
      const restoredAt = performance.now()
      const automatic = await nextAutomaticVersion(port, apiToken!, 1, window)
      const automaticMs = performance.now() - restoredAt
      ctx.log(automatic ? `  the restore's automatic version listed ${round(automaticMs, 0)} ms after it` : '  NO automatic version after the restore within the window')
      const step = await during
      ctx.log(`  during: p99 ${step.latencyMs.p99} ms, max ${step.latencyMs.max} ms, delivery ${step.deliveryRatio}`)
      return {
        target: target.name,
        version: target.version,
        metrics: {
          version_create_ms: round(created.ms, 1),
          version_restore_ms: round(restored.ms, 1),
          others_p99_quiet_ms: quiet.latencyMs.p99,
          others_p99_during_ms: step.latencyMs.p99,
          others_max_during_ms: step.latencyMs.max,
          delivery_ratio: step.deliveryRatio
        },
        details: { quiet, step, versionBytes: created.json.bytes, automaticVersionAfterRestoreMs: automatic ? round(automaticMs, 0) : null },
        notes: [
          `goal: the other clients' p99 under 50 ms while a version is taken and restored: ${(step.latencyMs.p99 ?? Infinity) < 50 ? 'met' : 'NOT met'} (${step.latencyMs.p99} ms)`,
          ...(automatic ? [] : ['the automatic version after the restore was not taken inside the window'])
        ],
        generatorBound: step.generator.bound
      }
    }, undefined, SERVER_ENV, plan.store)
  },
  // With --postgres: ours-postgres ÷ ours; with --baseline: ours ÷ baseline. The goal (p99 under 50 ms) is absolute: see the notes.
  compare: runs => compareOursReference(runs, ['version_create_ms', 'version_restore_ms', 'others_p99_quiet_ms', 'others_p99_during_ms', 'others_max_during_ms', 'delivery_ratio'])
}
