/**
 * What one event-loop wake-up costs this machine's main thread: a timer that does nothing fires at
 * each given rate for 5 s, and the thread's time on a CPU comes from /proc/self/schedstat (the
 * scheduler's own accounting, exact, unlike the tick-sampled utime). Quoted in docs/performance.md
 * (the cluster's cost per edit): a node pays one wake per edit it receives while otherwise idle,
 * whether the edit comes from a client or from a peer through Redis.
 *
 *   node bench/diagnostics/wake-cost.mjs [rates per second, default 10,100,1000]
 *
 * Linux only.
 */
import { readFileSync } from 'node:fs'

const onCpuNs = () => Number(readFileSync('/proc/self/schedstat', 'utf8').split(' ')[0])
const rates = (process.argv[2] ?? '10,100,1000').split(',').map(Number)
const seconds = 5

for (const rate of rates) {
  let wakes = 0
  const before = onCpuNs()
  const timer = setInterval(() => { wakes++ }, 1000 / rate)
  await new Promise(resolve => setTimeout(resolve, seconds * 1000))
  clearInterval(timer)
  const ms = (onCpuNs() - before) / 1e6
  console.log(`${rate}/s: ${wakes} wakes, main thread on CPU ${(ms / seconds).toFixed(1)} ms/s, ${(ms * 1000 / wakes).toFixed(0)} µs per wake`)
}
