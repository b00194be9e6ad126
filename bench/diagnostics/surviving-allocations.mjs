// Preload for a server under the bench: which allocation sites make objects that outlive
// young-generation GCs (the ones that are promoted and cost scavenge time).
//
//   npm run bench -- cross-node --nodes 3 --only ours --no-save \
//     --node-flags="--import=$PWD/bench/diagnostics/surviving-allocations.mjs"
//   # once the load runs (sampling starts 20 s after the server did; the bench's
//   # --env SURVIVING_START_S=N changes that):
//   kill -USR2 <server pid>   # writes surviving-<pid>-<time>.json into the system's temp directory
//                             # (--env SURVIVING_DIR=... for another) and prints its path
//
// The file is a V8 sampling heap profile (open it in Chrome DevTools, Memory tab) that keeps objects
// still alive and objects collected by full GCs, and leaves out those a scavenge collected. Caveat:
// young objects alive at a full GC also count, so with frequent full GCs it overstates promotion;
// `--trace-gc-nvp` (its `promoted=` field) gives the exact bytes per scavenge.
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const session = new Session()
session.connect()
const post = (method, params) => new Promise((resolve, reject) => {
  session.post(method, params, (err, result) => { if (err) reject(err); else resolve(result) })
})

const startAfterMs = Number(process.env.SURVIVING_START_S ?? 20) * 1000
let started = false
await post('HeapProfiler.enable')
setTimeout(() => {
  post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false
  }).then(() => { started = true }, err => { process.stderr.write(`surviving-allocations: ${err.message}\n`) })
}, startAfterMs).unref()

process.on('SIGUSR2', () => {
  if (!started) {
    process.stderr.write('surviving-allocations: sampling has not started yet\n')
    return
  }
  post('HeapProfiler.getSamplingProfile').then(({ profile }) => {
    const file = join(process.env.SURVIVING_DIR ?? tmpdir(), `surviving-${process.pid}-${Date.now()}.json`)
    writeFileSync(file, JSON.stringify(profile))
    process.stderr.write(`surviving-allocations: wrote ${file}\n`)
  }, err => { process.stderr.write(`surviving-allocations: ${err.message}\n`) })
})
