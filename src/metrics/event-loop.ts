import { performance, type EventLoopUtilization } from 'node:perf_hooks'
import { Gauge, type Registry } from 'prom-client'
import { HotHistogram } from './hot-histogram.js'

/** How often the event loop's delay is sampled. */
export const DELAY_SAMPLE_MS = 100

/**
 * prom-client's event-loop delay histogram (its `*_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}`
 * gauges) is fed by a 10 ms timer, 100 wake-ups a second (most of an idle server's CPU), and its
 * values are that interval plus the delay. These are replaced by the two metrics below; the
 * scrape-time `*_eventloop_lag_seconds` gauge stays.
 */
export const REPLACED_DEFAULT_METRICS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map(s => `nodejs_eventloop_lag_${s}_seconds`)

/**
 * Event-loop health at a cost an idle server does not notice:
 * - `collab_event_loop_utilization`: the share of time the loop was busy since the previous
 *   scrape (Node's own accounting, read at scrape time: no timer), the saturation signal;
 * - `collab_event_loop_delay_seconds`: how late a 100 ms timer fires, 0 on a healthy loop. A stall
 *   of 100 ms or more is always seen; shorter ones in proportion to their length.
 */
export class EventLoopMetrics {
  private readonly delay: HotHistogram
  private readonly timer: NodeJS.Timeout
  private lastTick = performance.now()
  private lastUtilization: EventLoopUtilization = performance.eventLoopUtilization()

  constructor (registry: Registry, prefix: string) {
    this.delay = new HotHistogram(registry, `${prefix}event_loop_delay_seconds`,
      `How late a timer due every ${DELAY_SAMPLE_MS} ms ran: event-loop delay, 0 when the loop is free`,
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
    const metrics = this
    // Kept by the registry, which calls collect() at every scrape.
    void new Gauge({
      name: `${prefix}event_loop_utilization`,
      help: 'Share of time the event loop was busy since the previous scrape (0-1)',
      registers: [registry],
      collect () {
        const now = performance.eventLoopUtilization()
        this.set(performance.eventLoopUtilization(now, metrics.lastUtilization).utilization)
        metrics.lastUtilization = now
      }
    })
    this.timer = setInterval(() => { this.sample() }, DELAY_SAMPLE_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private sample (): void {
    const now = performance.now()
    this.delay.observe(Math.max(0, now - this.lastTick - DELAY_SAMPLE_MS) / 1000)
    this.lastTick = now
  }
}
