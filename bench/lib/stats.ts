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
  const digits = Math.max(0, significant - 1 - Math.floor(Math.log10(Math.abs(value))))
  return round(value, Math.min(digits, 9))
}

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
