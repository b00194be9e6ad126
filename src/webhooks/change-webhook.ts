import { createHmac, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'

export interface WebhookOptions {
  url: URL
  secret: string
  nodeId: string
  /** Changes to one document within this window produce one delivery. */
  debounceMs: number
  maxAttempts: number
  timeoutMs: number
}

interface PendingChange {
  firstChangeAt: number
  lastChangeAt: number
  timer: NodeJS.Timeout | null
}

/**
 * Tells an HTTP endpoint that a document changed: a POST with a JSON body, debounced per document,
 * signed with HMAC-SHA256 over `${timestamp}.${body}` (header x-collab-signature: sha256=<hex>,
 * x-collab-timestamp), and retried with exponential backoff. noteChange() is all the hot path
 * does; delivery runs on timers and never blocks an update.
 *
 * In cluster mode each node reports the changes its own clients (or its admin API) made, so one
 * change is reported once, not once per node; a version is reported by the node that took it.
 */
export class ChangeWebhook {
  private readonly pending = new Map<string, PendingChange>()
  private readonly inFlight = new Set<Promise<void>>()
  private stopped = false

  constructor (private readonly options: WebhookOptions, private readonly log: Logger) {}

  noteChange (docId: string): void {
    const now = Date.now()
    const entry = this.pending.get(docId)
    if (entry !== undefined) {
      entry.lastChangeAt = now
      return
    }
    const change: PendingChange = { firstChangeAt: now, lastChangeAt: now, timer: null }
    change.timer = setTimeout(() => this.deliver(docId, change), this.options.debounceMs)
    change.timer.unref()
    this.pending.set(docId, change)
  }

  /** A version of the document was taken (README "Version history"): delivered at once, not debounced. */
  noteVersion (docId: string, version: { id: string, createdAt: string, reason: string, label: string | null, bytes: number, authors: string[] }): void {
    if (this.stopped) return
    const body = JSON.stringify({ event: 'document.version.created', docId, nodeId: this.options.nodeId, version })
    const delivery = this.send(body, docId, 'document.version.created').finally(() => this.inFlight.delete(delivery))
    this.inFlight.add(delivery)
  }

  /** Sends what is pending now and waits (bounded) for deliveries in flight; for shutdown. */
  async close (timeoutMs = 5_000): Promise<void> {
    for (const [docId, change] of this.pending) {
      if (change.timer !== null) clearTimeout(change.timer)
      this.deliver(docId, change)
    }
    this.stopped = true
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise(resolve => setTimeout(resolve, timeoutMs).unref())
    ])
  }

  private deliver (docId: string, change: PendingChange): void {
    this.pending.delete(docId)
    const body = JSON.stringify({
      event: 'document.changed',
      docId,
      nodeId: this.options.nodeId,
      firstChangeAt: new Date(change.firstChangeAt).toISOString(),
      lastChangeAt: new Date(change.lastChangeAt).toISOString()
    })
    const delivery = this.send(body, docId, 'document.changed').finally(() => this.inFlight.delete(delivery))
    this.inFlight.add(delivery)
  }

  private async send (body: string, docId: string, event: string): Promise<void> {
    const deliveryId = randomUUID()
    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt++) {
      const timestamp = String(Math.floor(Date.now() / 1000))
      const signature = createHmac('sha256', this.options.secret).update(`${timestamp}.${body}`).digest('hex')
      try {
        const response = await fetch(this.options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-collab-event': event,
            'x-collab-delivery': deliveryId,
            'x-collab-timestamp': timestamp,
            'x-collab-signature': `sha256=${signature}`
          },
          body,
          signal: AbortSignal.timeout(this.options.timeoutMs)
        })
        await response.body?.cancel()
        if (response.ok) return
        this.log.warn({ docId, status: response.status, attempt }, 'webhook delivery refused')
      } catch (err) {
        this.log.warn({ docId, err: (err as Error).message, attempt }, 'webhook delivery failed')
      }
      if (this.stopped || attempt === this.options.maxAttempts) break
      await new Promise(resolve => setTimeout(resolve, Math.min(30_000, 250 * 2 ** attempt)).unref())
    }
    this.log.error({ docId, deliveryId }, 'webhook delivery given up')
  }
}
