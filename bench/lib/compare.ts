/** Builds ratio comparisons between two target runs. */
import type { Comparison, TargetCheck, TargetRun } from './result.js'
import { sig } from './stats.js'

export interface TargetSpec {
  kind: 'max' | 'min'
  ratio: number
  text: string
}

export function compareMetric (metric: string, subject: TargetRun | undefined, baseline: TargetRun | undefined, target?: TargetSpec): Comparison | null {
  if (subject === undefined || baseline === undefined) return null
  const s = subject.metrics[metric] ?? null
  const b = baseline.metrics[metric] ?? null
  const ratio = s !== null && b !== null && b !== 0 ? sig(s / b, 3) : null
  let check: TargetCheck | undefined
  if (target !== undefined) {
    const met = ratio === null ? null : target.kind === 'max' ? ratio <= target.ratio : ratio >= target.ratio
    check = { ...target, met }
  }
  return {
    metric,
    subject: subject.target,
    baseline: baseline.target,
    subjectValue: s,
    baselineValue: b,
    ratio,
    ...(check === undefined ? {} : { target: check })
  }
}

/**
 * ours vs reference for each metric (`targets` attaches the targets to some of them), and,
 * when a baseline commit was measured too (--baseline), ours vs baseline and baseline vs reference.
 */
export function compareOursReference (runs: TargetRun[], metrics: string[], targets: Record<string, TargetSpec> = {}): Comparison[] {
  const find = (target: string): TargetRun | undefined => runs.find(r => r.target === target && r.error === undefined)
  const ours = find('ours')
  const reference = find('reference')
  const baseline = find('baseline')
  const withPostgres = find('ours-postgres')
  const withRedis = find('ours-redis')
  const out: Comparison[] = []
  for (const metric of metrics) {
    const c = compareMetric(metric, ours, reference, targets[metric])
    if (c !== null) out.push(c)
  }
  for (const [subject, against] of [[ours, baseline], [baseline, reference], [withPostgres, ours], [withRedis, ours], [withPostgres, reference]] as const) {
    for (const metric of metrics) {
      const c = compareMetric(metric, subject, against)
      if (c !== null) out.push(c)
    }
  }
  return out
}
