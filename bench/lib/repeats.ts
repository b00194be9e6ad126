import type { TargetRun } from './result.js'

/**
 * Folds the runs of one target measured several times (`--repeat N`) into one: each headline
 * figure is the median of the repeats, so one disturbed run cannot decide a ratio; every repeat
 * is kept under details.repeats. Runs that failed are left out of the medians.
 */
export function medianOfRepeats (repeats: TargetRun[]): TargetRun {
  const ok = repeats.filter(r => r.error === undefined)
  if (ok.length === 0) return repeats[repeats.length - 1]!
  if (repeats.length === 1) return repeats[0]!
  const metrics: Record<string, number | null> = {}
  for (const key of new Set(ok.flatMap(r => Object.keys(r.metrics)))) {
    const values = ok.map(r => r.metrics[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
    metrics[key] = values.length === 0 ? null : median(values)
  }
  return {
    target: ok[0]!.target,
    version: ok[0]!.version,
    metrics,
    details: { repeats: repeats.map(r => ({ metrics: r.metrics, details: r.details, error: r.error })) },
    notes: [`median of ${ok.length} repeats${ok.length < repeats.length ? ` (${repeats.length - ok.length} failed)` : ''}`, ...new Set(ok.flatMap(r => r.notes))],
    generatorBound: ok.some(r => r.generatorBound)
  }
}

function median (sorted: number[]): number {
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
