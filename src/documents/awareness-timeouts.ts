import { type Awareness, outdatedTimeout, removeAwarenessStates } from 'y-protocols/awareness'

/** How often presence is checked for clients that stopped renewing it (y-protocols checks as often). */
const SWEEP_MS = outdatedTimeout / 10

/**
 * Presence not renewed for 30 s is dropped (origin 'timeout'), as y-protocols' Awareness does, but
 * by one timer for every document of the node instead of one per document: y-protocols gives each
 * Awareness its own 3-second interval, so 20,000 loaded documents cost 6,600 timer callbacks a
 * second doing nothing. The sweep visits only documents that hold presence.
 */
class AwarenessTimeouts {
  private readonly watched = new Set<Awareness>()
  private timer: NodeJS.Timeout | null = null

  /**
   * Takes over the timeouts of `awareness` (stopping its own interval) until unwatch(). The
   * stopped interval is let go too (its timer object and callback stay alive otherwise: about
   * 250 bytes of every loaded document); y-protocols' destroy() clears it again harmlessly.
   */
  watch (awareness: Awareness): void {
    const own = awareness as unknown as { _checkInterval: NodeJS.Timeout | null }
    clearInterval(own._checkInterval ?? undefined)
    own._checkInterval = null
    this.watched.add(awareness)
    if (this.timer === null) {
      this.timer = setInterval(() => { this.sweep() }, SWEEP_MS)
      this.timer.unref()
    }
  }

  /** The document holding `awareness` is unloaded (called by it rather than by a listener per document). */
  unwatch (awareness: Awareness): void {
    this.watched.delete(awareness)
    if (this.watched.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  /** Removes every state not renewed for `outdatedTimeout`; exposed for tests. */
  sweep (now = Date.now()): void {
    for (const awareness of this.watched) {
      if (awareness.states.size === 0) continue
      let outdated: number[] | null = null
      for (const [clientId, meta] of awareness.meta) {
        if (clientId !== awareness.clientID && now - meta.lastUpdated >= outdatedTimeout && awareness.states.has(clientId)) (outdated ??= []).push(clientId)
      }
      if (outdated !== null) removeAwarenessStates(awareness, outdated, 'timeout')
    }
  }
}

export const awarenessTimeouts = new AwarenessTimeouts()
