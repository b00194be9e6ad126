import type { TemplatedApp } from 'uWebSockets.js'
import type { DocumentRegistry } from '../documents/registry.js'
import type { Metrics } from '../metrics/metrics.js'
import { KEEP_ALIVE_FRAME } from '../protocol/messages.js'

/**
 * The stock y-websocket provider closes its socket when no application message arrived for 30 s
 * (WebSocket pings do not count), so a person alone in a document, or only ever sending, would be
 * reconnected every 30 s. Every `intervalMs` each document with connections gets one 3-byte
 * message through its topic: uWS delivers it to every subscriber in C++, so a document costs one
 * publish per interval whatever its size, and hundreds of idle clients cost no more than they
 * receive (no client's renewal is echoed to everyone).
 */
export class KeepAlive {
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly app: Pick<TemplatedApp, 'publish'>,
    private readonly registry: DocumentRegistry,
    private readonly intervalMs: number,
    private readonly metrics: Metrics
  ) {}

  start (): void {
    if (this.intervalMs === 0 || this.timer !== null) return
    this.timer = setInterval(() => { this.tick() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private tick (): void {
    for (const doc of this.registry.values()) {
      if (doc.refs === 0 || doc.state !== 'live') continue
      this.app.publish(doc.topic, KEEP_ALIVE_FRAME, true)
      this.metrics.sent('awareness', KEEP_ALIVE_FRAME.length)
    }
  }
}
