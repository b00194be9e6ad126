/**
 * Experiment, not a fix: sizes the gain of counting hot-path metrics in plain fields instead of
 * prom-client calls, without touching src/. Copies a built server (default: committed HEAD, built
 * by the bench) to node_modules/.cache/yjs-uws-bench/exp-cheap-metrics-<commit>/ and patches its
 * dist/metrics/metrics.js so that
 *   - the per-kind message/byte counter children (messagesIn, bytesIn, messagesOut, bytesOut)
 *     become `{ value, inc(n) }` objects (prom-client's bound children hash the label object on
 *     every inc), and
 *   - fanoutSeconds and updateApplySeconds record into a local bucket array (prom-client's
 *     observe allocates a closure, hashes labels and searches the buckets per call).
 * The patched build no longer reports those series on /metrics; a real fix would export them at
 * scrape time with prom-client collect() callbacks. Prints the entry to pass to the bench:
 *
 *   node --import tsx bench/experiments/cheap-metrics.ts
 *   npm run bench -- steady-200x10 --server entry:<printed path> --no-save
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { prepareOurs, ROOT } from '../lib/servers.js'

const ANCHOR = 'this.bytesOut = bind(this.bytesOutCounter);'

const PATCH = `
        // --- bench experiment: cheap hot-path metrics ---
        for (const rec of [this.messagesIn, this.bytesIn, this.messagesOut, this.bytesOut]) {
            for (const kind of Object.keys(rec)) {
                const child = { value: 0, inc(n = 1) { child.value += n; } };
                rec[kind] = child;
            }
        }
        const cheapHistogram = (h) => {
            const bounds = h.upperBounds.slice();
            const counts = new Float64Array(bounds.length + 1);
            const state = { counts, sum: 0, count: 0 };
            return { state, observe(v) { let i = 0; while (i < bounds.length && v > bounds[i]) i++; counts[i]++; state.sum += v; state.count++; } };
        };
        this.fanoutSeconds = cheapHistogram(this.fanoutSeconds);
        this.updateApplySeconds = cheapHistogram(this.updateApplySeconds);
`

const binary = prepareOurs('head')
const source = join(ROOT, 'node_modules/.cache/yjs-uws-bench', binary.commit)
const target = join(ROOT, 'node_modules/.cache/yjs-uws-bench', `exp-cheap-metrics-${binary.commit}`)
rmSync(target, { recursive: true, force: true })
cpSync(source, target, { recursive: true })
const file = join(target, 'dist/metrics/metrics.js')
if (!existsSync(file)) throw new Error(`${file} not found: this build has no metrics module`)
const code = readFileSync(file, 'utf8')
if (!code.includes(ANCHOR)) throw new Error(`cannot find "${ANCHOR}" in ${file}: the metrics module changed, adapt the experiment`)
writeFileSync(file, code.replace(ANCHOR, ANCHOR + PATCH))
process.stdout.write(`entry:${join(target, 'dist/main.js')}\n`)
