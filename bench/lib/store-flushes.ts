import { scrapeMetrics } from './server-metrics.js'

/**
 * The write-behind's flushes during a measured window, from our server's /metrics
 * (collab_store_flush_seconds): how often the store was written and how long a write took.
 */
export interface FlushHistogram {
  /** Cumulative counts by upper bound (seconds), as exposed. */
  buckets: Array<[number, number]>
  sum: number
  count: number
  /** When it was scraped (performance.now()). */
  at: number
}

export async function scrapeFlushes (port: number): Promise<FlushHistogram> {
  const text = await scrapeMetrics(port)
  const buckets: Array<[number, number]> = []
  let sum = 0
  let count = 0
  for (const line of text.split('\n')) {
    const bucket = /^collab_store_flush_seconds_bucket\{le="([^"]+)"\} (\S+)$/.exec(line)
    if (bucket !== null) buckets.push([bucket[1] === '+Inf' ? Infinity : Number(bucket[1]), Number(bucket[2])])
    else if (line.startsWith('collab_store_flush_seconds_sum ')) sum = Number(line.split(' ')[1])
    else if (line.startsWith('collab_store_flush_seconds_count ')) count = Number(line.split(' ')[1])
  }
  return { buckets, sum, count, at: performance.now() }
}

/** Flushes per second, their mean and their p99 (interpolated within its bucket, as Prometheus does). */
export function flushFigures (before: FlushHistogram, after: FlushHistogram): Record<string, number | null> {
  const seconds = (after.at - before.at) / 1000
  const count = after.count - before.count
  if (count <= 0) return { store_flushes_per_s: 0, store_flush_mean_ms: null, store_flush_p99_ms: null }
  const rank = 0.99 * count
  let previousBound = 0
  let previousCount = 0
  let p99: number | null = null
  for (const [i, [bound, cumulative]] of after.buckets.entries()) {
    const inWindow = cumulative - (before.buckets[i]?.[1] ?? 0)
    if (inWindow >= rank) {
      p99 = bound === Infinity ? previousBound : previousBound + (bound - previousBound) * (rank - previousCount) / Math.max(1, inWindow - previousCount)
      break
    }
    previousBound = bound
    previousCount = inWindow
  }
  const round = (v: number): number => Math.round(v * 1000) / 1000
  return {
    store_flushes_per_s: round(count / seconds),
    store_flush_mean_ms: round((after.sum - before.sum) / count * 1000),
    store_flush_p99_ms: p99 === null ? null : round(p99 * 1000)
  }
}
