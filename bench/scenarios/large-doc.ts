/**
 * Large document: a writer builds a document of --mb megabytes (--chunk-kb edits at random places,
 * as people write), or with --upload a client brings it made offline (its whole state in one sync step 2,
 * as a stock provider sends it) while another client of the document watches. Then 50 other
 * clients edit 5 other documents (a quiet window measures their latency), and during a second
 * window fresh clients join the large document one after the other: how long until each is
 * synced (connect, upgrade, sync step 1, the whole document received and applied), and what that
 * does to the others' latency. Last, ours is restarted on the same store and one client joins:
 * the cold load (read from the store, then synced). The server's memory is sampled throughout;
 * the peak while the joins sync is reported against the idle baseline, in document sizes.
 *
 * large-doc-6, -24 and -64 are the issue's sizes in MiB, built from edits; `large-doc` takes --mb.
 */
import { compareOursReference } from '../lib/compare.js'
import type { JoinResult } from '../lib/ipc.js'
import { checkConsistency, measureStep, setupLoad, tokensFor, type StepResult } from '../lib/load.js'
import { percentiles, round, sig, sleep } from '../lib/stats.js'
import { isOurs } from '../lib/servers.js'
import { LIFTED_RATE_LIMITS, markCpu } from '../lib/target.js'
import { withTarget } from './steady.js'
import { defaultPlan, type Flags, type Scenario } from './types.js'

const OTHERS = { docs: 5, clientsPerDoc: 10, rate: 5 }

/**
 * The large document stays loaded between the fill and the joins although nobody is in it; a
 * document of 64 MiB of text is over the default MAX_DOCUMENT_BYTES (64 MiB, encoding included),
 * which an operator with such documents raises.
 */
function serverEnv (bytes: number): Record<string, string> {
  return { ...LIFTED_RATE_LIMITS, DOC_IDLE_UNLOAD_MS: '600000', MAX_DOCUMENT_BYTES: String(Math.max(64 * 1_048_576, 2 * bytes)) }
}

const METRICS = ['up_ms', 'sync_first_ms', 'sync_p50_ms', 'sync_max_ms', 'cold_join_ms', 'cpu_ms_per_join', 'fill_mb_per_s',
  'others_p99_quiet_ms', 'others_p99_joins_ms', 'others_max_joins_ms', 'rss_peak_sync_over_doc', 'rss_peak_mb', 'rss_mb']

export function largeDocScenario (name: string, presetMiB: number | null): Scenario {
  const sizeBytes = (flags: Flags): number => presetMiB !== null && flags.mb === undefined ? presetMiB * 1_048_576 : Math.round((flags.mb ?? 10) * 1_000_000)
  return {
    name,
    title: presetMiB === null ? 'Large document: time to sync a big document' : `Large document: ${presetMiB} MiB built from edits, joined warm and cold while others edit`,
    params: flags => ({ bytes: sizeBytes(flags), chunkKb: flags.chunkKb ?? 64, joiners: flags.joiners ?? 3, upload: flags.upload ?? false, others: OTHERS, windowS: flags.duration ?? 10, serverEnv: serverEnv(sizeBytes(flags)) }),
    plan: flags => [...defaultPlan(flags), ...(flags.redisStore === true && flags.only === undefined ? [{ kind: 'ours' as const, nodes: 1, store: 'redis' as const }] : [])],
    run: async (ctx, plan) => {
      const flags = ctx.flags
      const bytes = sizeBytes(flags)
      const chunk = Math.round((flags.chunkKb ?? 64) * 1024)
      const joiners = flags.joiners ?? 3
      const tokens = isOurs(plan.kind) ? await tokensFor(3 + joiners) : []
      const token = (i: number): string => tokens[i] ?? ''
      return await withTarget(ctx, plan.kind, 1, async (target, pool) => {
        const rssBaseline = target.rss()
        let rssPeak = rssBaseline
        let rssPeakSync = 0
        let sampling: 'all' | 'sync' | 'off' = 'all'
        const sampler = setInterval(() => {
          if (sampling === 'off') return
          const rss = target.rss()
          rssPeak = Math.max(rssPeak, rss)
          if (sampling === 'sync') rssPeakSync = Math.max(rssPeakSync, rss)
        }, 50)
        try {
          const fillStart = performance.now()
          let uploadBytes: number | null = null
          if (flags.upload === true) {
            const up = await pool.workers[0]!.upload(target.endpoint(0, 'large-0', token(0)), target.endpoint(0, 'large-0', token(1)), bytes, chunk, 180_000)
            if (!up.ok) throw new Error(`the upload did not reach the observer: ${up.error ?? ''}`)
            uploadBytes = up.bytes
          } else {
            const session = await setupLoad(pool, target, { docs: 1, clientsPerDoc: 2, docPrefix: 'large' }, 2)
            await pool.broadcast({ type: 'fill', entries: 0, textBytes: bytes, chunkBytes: chunk, scatter: true })
            const consistency = await checkConsistency(session, 180_000)
            if (!consistency.ok) throw new Error(`the observer did not receive the whole document: ${consistency.examples.join('; ')} ${consistency.clientErrors.join('; ')}`)
          }
          const fillSeconds = (performance.now() - fillStart) / 1000
          ctx.log(`  ${round(bytes / 1e6, 1)} MB ${uploadBytes === null ? 'written' : `uploaded in one ${round(uploadBytes / 1e6, 1)} MB message`} and observed in ${round(fillSeconds, 2)} s`)
          // The writer and observer leave: the others' writers must not edit the large document.
          await pool.broadcast({ type: 'close-all' })
          await sleep(1000)

          const others = await setupLoad(pool, target, { docs: OTHERS.docs, clientsPerDoc: OTHERS.clientsPerDoc, docPrefix: 'others' }, 50)
          ctx.log(`  ${others.connect.ok}/${others.connect.attempted} other clients synced`)
          const quiet = await measureStep(others, OTHERS.rate, 1000, 5000, 2000)
          ctx.log(`  others, quiet: p99 ${quiet.latencyMs.p99} ms`)

          // Joins on the last generator process, apart from the others' writers and observers.
          const joinWorker = pool.workers[pool.workers.length - 1]!
          const windowMs = (flags.duration ?? 10) * 1000
          const during = measureStep(others, OTHERS.rate, 1000, windowMs, 3000)
          await sleep(1500)
          const results: JoinResult[] = []
          const before = markCpu(target)
          sampling = 'sync'
          const joinsStarted = performance.now()
          for (let i = 0; i < joiners; i++) {
            const result = await joinWorker.join(target.endpoint(0, 'large-0', token(2 + i)), 60_000)
            results.push(result)
            ctx.log(`  join ${i + 1}: ${result.ok ? `synced in ${round(result.ms, 1)} ms (${round(result.step2Bytes / 1e6, 2)} MB, received after ${round(result.receivedMs, 1)} ms)` : `FAILED: ${result.error}`}`)
          }
          const joinsMs = performance.now() - joinsStarted
          sampling = 'all'
          const after = markCpu(target)
          const step: StepResult = await during
          ctx.log(`  others during the joins: p99 ${step.latencyMs.p99} ms, max ${step.latencyMs.max} ms, delivery ${step.deliveryRatio}`)
          const notes: string[] = []
          if (joinsMs + 1500 > windowMs + 1000) notes.push(`the joins took ${round(joinsMs, 0)} ms, longer than the measured window: raise --duration`)

          // A cold start on the same store: the first client's join loads the document.
          let coldJoin: JoinResult | null = null
          if (target.restart !== null) {
            await pool.broadcast({ type: 'close-all' })
            sampling = 'off'
            await target.restart()
            coldJoin = await joinWorker.join(target.endpoint(0, 'large-0', token(2 + joiners)), 60_000)
            ctx.log(`  cold join after a restart: ${coldJoin.ok ? `synced in ${round(coldJoin.ms, 1)} ms` : `FAILED: ${coldJoin.error}`}`)
            if (!coldJoin.ok) notes.push(`the join after a restart failed: ${coldJoin.error}`)
          }

          const ok = results.filter(r => r.ok)
          const times = percentiles(ok.map(r => r.ms))
          const cpu = (after.server.user - before.server.user) + (after.server.system - before.server.system)
          const docBytes = ok[0]?.step2Bytes ?? null
          const failed = results.filter(r => !r.ok)
          if (failed.length > 0) notes.push(`${failed.length} of ${joiners} joins failed: ${[...new Set(failed.map(r => r.error))].join('; ')}`)
          return {
            target: target.name,
            version: target.version,
            metrics: {
              doc_mb: docBytes === null ? null : round(docBytes / 1e6, 2),
              sync_first_ms: results[0]?.ok === true ? round(results[0].ms, 1) : null,
              sync_p50_ms: round(times.p50, 1),
              sync_max_ms: round(times.max, 1),
              cold_join_ms: coldJoin?.ok === true ? round(coldJoin.ms, 1) : null,
              cpu_ms_per_join: ok.length > 0 ? sig(cpu / results.length * 1000, 3) : null,
              failed_joins: failed.length,
              fill_mb_per_s: round(bytes / 1e6 / fillSeconds, 2),
              up_ms: uploadBytes === null ? null : round(fillSeconds * 1000, 0),
              others_p99_quiet_ms: quiet.latencyMs.p99,
              others_p99_joins_ms: step.latencyMs.p99,
              others_max_joins_ms: step.latencyMs.max,
              rss_baseline_mb: round(rssBaseline / 1048576, 1),
              rss_peak_sync_over_doc: docBytes === null || rssPeakSync === 0 ? null : round((rssPeakSync - rssBaseline) / docBytes, 2),
              rss_peak_mb: round(rssPeak / 1048576, 1),
              rss_mb: round(target.rss() / 1048576, 1)
            },
            details: { joins: results, coldJoin, fillSeconds: round(fillSeconds, 2), quiet, step },
            notes,
            generatorBound: step.generator.bound
          }
        } finally {
          clearInterval(sampler)
        }
      }, undefined, serverEnv(bytes), plan.store)
    },
    compare: runs => compareOursReference(runs, METRICS)
  }
}
