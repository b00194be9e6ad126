/** Small statistics helpers. */

export interface Percentiles {
  count: number
  p50: number | null
  p95: number | null
  p99: number | null
  max: number | null
  mean: number | null
}

/** Nearest-rank percentiles of `values` (copied and sorted here). */
export function percentiles (values: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(values).sort()
  const n = sorted.length
  if (n === 0) return { count: 0, p50: null, p95: null, p99: null, max: null, mean: null }
  const at = (p: number): number => sorted[Math.min(n - 1, Math.max(0, Math.ceil(p / 100 * n) - 1))]!
  let sum = 0
  for (let i = 0; i < n; i++) sum += sorted[i]!
  return { count: n, p50: at(50), p95: at(95), p99: at(99), max: sorted[n - 1]!, mean: sum / n }
}

export function round (value: number | null | undefined, digits = 3): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** Rounds to `significant` significant digits (for figures that span orders of magnitude). */
export function sig (value: number | null | undefined, significant = 3): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null
  if (value === 0) return 0
  const digits = significant - 1 - Math.floor(Math.log10(Math.abs(value)))
  if (digits < 0) {
    const f = 10 ** -digits
    return Math.round(value / f) * f
  }
  return round(value, Math.min(digits, 9))
}

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/**
 * A fixed-bucket latency histogram cheap enough to record every message a sink receives:
 * 10 µs buckets up to 100 ms, 1 ms buckets up to 100 s (anything larger lands in the last bucket).
 */
export class LatencyHistogram {
  static readonly FINE = 10_000
  static readonly COARSE = 100_000
  readonly counts = new Uint32Array(LatencyHistogram.FINE + LatencyHistogram.COARSE)
  count = 0
  max = 0

  record (ms: number): void {
    if (!(ms >= 0)) ms = 0
    const bucket = ms < 100
      ? Math.floor(ms * 100)
      : LatencyHistogram.FINE + Math.min(LatencyHistogram.COARSE - 1, Math.floor(ms) - 100)
    this.counts[bucket]!++
    this.count++
    if (ms > this.max) this.max = ms
  }

  reset (): void {
    this.counts.fill(0)
    this.count = 0
    this.max = 0
  }

  /** Adds another histogram's counts (as sent over IPC). */
  static merge (parts: Array<{ counts: Uint32Array; count: number; max: number }>): LatencyHistogram {
    const out = new LatencyHistogram()
    for (const part of parts) {
      for (let i = 0; i < part.counts.length; i++) out.counts[i]! += part.counts[i]!
      out.count += part.count
      if (part.max > out.max) out.max = part.max
    }
    return out
  }

  /** Upper edge of the bucket holding the p-th percentile. */
  percentile (p: number): number | null {
    if (this.count === 0) return null
    const rank = Math.max(1, Math.ceil(p / 100 * this.count))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(this.max, i < LatencyHistogram.FINE ? (i + 1) / 100 : i - LatencyHistogram.FINE + 101)
    }
    return this.max
  }

  summary (): Percentiles {
    return { count: this.count, p50: this.percentile(50), p95: this.percentile(95), p99: this.percentile(99), max: this.count === 0 ? null : this.max, mean: null }
  }
}
