import type { Registry } from 'prom-client'

/**
 * A label-less histogram for the update path: observe() is a bucket scan and two additions,
 * always cheap, where prom-client's observe (label hashing, exemplar checks) costs microseconds when
 * it is called too rarely to be optimized. Registered as a custom metric: the registry reads it at
 * scrape time and formats it like any prom-client histogram.
 */
export class HotHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  private readonly counts: Float64Array
  private sum = 0

  constructor (registry: Registry, readonly name: string, readonly help: string, private readonly buckets: readonly number[]) {
    this.counts = new Float64Array(buckets.length + 1)
    registry.registerMetric(this as never)
  }

  observe (value: number): void {
    const buckets = this.buckets
    let i = 0
    while (i < buckets.length && value > buckets[i]!) i++
    this.counts[i]!++
    this.sum += value
  }

  /** prom-client's metric shape: cumulative buckets, then sum and count. */
  get (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> } {
    const values = []
    let cumulative = 0
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += this.counts[i]!
      values.push({ labels: { le: i < this.buckets.length ? this.buckets[i]! : '+Inf' }, value: cumulative, metricName: `${this.name}_bucket` })
    }
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` })
    values.push({ labels: {}, value: cumulative, metricName: `${this.name}_count` })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    this.counts.fill(0)
    this.sum = 0
  }
}
