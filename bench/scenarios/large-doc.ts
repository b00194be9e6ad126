/**
 * Large document: a writer builds a document of --mb megabytes (text appended in --chunk-kb
 * updates), or with --upload a client brings it made offline (its whole state in one sync step 2,
 * as a stock provider sends it) while another client of the document watches; then fresh clients
 * join one after the other and the time until each is synced is measured (connect, upgrade, sync
 * step 1, the whole document received and applied). The server's memory is sampled throughout.
 */
import { compareOursReference } from '../lib/compare.js'
import type { JoinResult } from '../lib/ipc.js'
import { checkConsistency, setupLoad, tokensFor } from '../lib/load.js'
import { percentiles, round, sig, sleep } from '../lib/stats.js'
import { LIFTED_RATE_LIMITS, markCpu } from '../lib/target.js'
import { withTarget } from './steady.js'
import { defaultPlan, type Scenario } from './types.js'

export const largeDocScenario: Scenario = {
  name: 'large-doc',
  title: 'Large document: time to sync a big document',
  params: flags => ({ mb: flags.mb ?? 10, chunkKb: flags.chunkKb ?? 64, joiners: flags.joiners ?? 5, upload: flags.upload ?? false, serverEnv: LIFTED_RATE_LIMITS }),
  plan: defaultPlan,
  run: async (ctx, plan) => {
    const flags = ctx.flags
    const bytes = Math.round((flags.mb ?? 10) * 1_000_000)
    const chunk = Math.round((flags.chunkKb ?? 64) * 1024)
    const joiners = flags.joiners ?? 5
    const tokens = plan.kind !== 'reference' ? await tokensFor(2 + joiners) : []
    return await withTarget(ctx, plan.kind, 1, async (target, pool) => {
      let rssPeak = target.rss()
      const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, target.rss()) }, 100)
      let fillSeconds: number
      let uploadBytes: number | null = null
      try {
        const fillStart = performance.now()
        if (flags.upload === true) {
          const up = await pool.workers[0]!.upload(target.endpoint(0, 'large-0', tokens[0] ?? ''), target.endpoint(0, 'large-0', tokens[1] ?? ''), bytes, chunk, 180_000)
          if (!up.ok) throw new Error(`the upload did not reach the observer: ${up.error ?? ''}`)
          uploadBytes = up.bytes
        } else {
          const session = await setupLoad(pool, target, { docs: 1, clientsPerDoc: 2, docPrefix: 'large' }, 2)
          await pool.broadcast({ type: 'fill', entries: 0, textBytes: bytes, chunkBytes: chunk })
          const consistency = await checkConsistency(session, 120_000)
          if (!consistency.ok) throw new Error(`the observer did not receive the whole document: ${consistency.examples.join('; ')} ${consistency.clientErrors.join('; ')}`)
        }
        fillSeconds = (performance.now() - fillStart) / 1000
      } catch (err) {
        clearInterval(sampler)
        throw err
      }
      ctx.log(`  ${round(bytes / 1e6, 1)} MB ${uploadBytes === null ? 'written' : `uploaded in one ${round(uploadBytes / 1e6, 1)} MB message`} and observed in ${round(fillSeconds, 2)} s`)
      await sleep(1000)
      const results: JoinResult[] = []
      const before = markCpu(target)
      for (let i = 0; i < joiners; i++) {
        const endpoint = target.endpoint(0, 'large-0', tokens[2 + i] ?? '')
        const worker = pool.workers[i % pool.workers.length]!
        const result = await worker.join(endpoint, 60_000)
        results.push(result)
        ctx.log(`  join ${i + 1}: ${result.ok ? `synced in ${round(result.ms, 1)} ms (${round(result.step2Bytes / 1e6, 2)} MB step 2, received after ${round(result.receivedMs, 1)} ms)` : `FAILED: ${result.error}`}`)
      }
      const after = markCpu(target)
      clearInterval(sampler)
      const ok = results.filter(r => r.ok)
      const times = percentiles(ok.map(r => r.ms))
      const cpu = (after.server.user - before.server.user) + (after.server.system - before.server.system)
      const notes: string[] = []
      const failed = results.filter(r => !r.ok)
      if (failed.length > 0) notes.push(`${failed.length} of ${joiners} joins failed: ${[...new Set(failed.map(r => r.error))].join('; ')}`)
      return {
        target: target.name,
        version: target.version,
        metrics: {
          doc_mb: ok.length > 0 ? round(ok[0]!.step2Bytes / 1e6, 2) : null,
          sync_first_ms: results[0]?.ok === true ? round(results[0].ms, 1) : null,
          sync_p50_ms: round(times.p50, 1),
          sync_max_ms: round(times.max, 1),
          cpu_ms_per_join: ok.length > 0 ? sig(cpu / results.length * 1000, 3) : null,
          failed_joins: failed.length,
          fill_mb_per_s: round(bytes / 1e6 / fillSeconds, 2),
          up_ms: uploadBytes === null ? null : round(fillSeconds * 1000, 0),
          rss_peak_mb: round(rssPeak / 1048576, 1),
          rss_mb: round(target.rss() / 1048576, 1)
        },
        details: { joins: results, fillSeconds: round(fillSeconds, 2) },
        notes,
        generatorBound: false
      }
    }, undefined, LIFTED_RATE_LIMITS)
  },
  compare: runs => compareOursReference(runs, ['up_ms', 'sync_first_ms', 'sync_p50_ms', 'sync_max_ms', 'cpu_ms_per_join', 'fill_mb_per_s', 'rss_peak_mb', 'rss_mb'])
}
