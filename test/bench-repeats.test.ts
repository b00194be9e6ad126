import t from 'tap'
import { medianOfRepeats } from '../bench/lib/repeats.js'
import type { TargetRun } from '../bench/lib/result.js'

const run = (metrics: Record<string, number | null>, error?: string): TargetRun =>
  ({ target: 'ours', version: 'v', metrics, details: {}, notes: [], generatorBound: false, ...(error === undefined ? {} : { error }) })

t.test('--repeat reports the median of each figure and keeps every repeat', async t => {
  const merged = medianOfRepeats([run({ cpu: 3, rss: 10 }), run({ cpu: 1, rss: null }), run({ cpu: 100, rss: 30 }), run({}, 'server crashed')])
  t.equal(merged.metrics.cpu, 3, 'odd count: the middle value, the outlier ignored')
  t.equal(merged.metrics.rss, 20, 'even count of numbers: the mean of the middle two; nulls left out')
  t.equal((merged.details.repeats as unknown[]).length, 4, 'every repeat kept, the failed one too')
  t.match(merged.notes[0], /median of 3 repeats \(1 failed\)/)
  const single = run({ cpu: 5 })
  t.equal(medianOfRepeats([single]), single, 'one run is reported as it is')
})
