import { outdatedTimeout } from 'y-protocols/awareness'

/** How often presence is checked for clients that stopped renewing it (y-protocols checks as often). */
const SWEEP_MS = outdatedTimeout / 10

/** A document's presence, as the sweep sees it. */
export interface ExpiringPresence {
  /** Drops the states not renewed for 30 s before `now`. */
  expire (now: number): void
}

/**
 * Presence not renewed for 30 s is dropped, as y-protocols' Awareness does, but by one timer for
 * every document of the node instead of one per document: y-protocols gives each Awareness its own
 * 3-second interval, so 20,000 loaded documents would cost 6,600 timer callbacks a second doing
 * nothing. Only documents that hold presence are watched.
 */
class PresenceTimeouts {
  private readonly watched = new Set<ExpiringPresence>()
  private timer: NodeJS.Timeout | null = null

  /** Sweeps `presence` until unwatch(); the timer runs while anything is watched. */
  watch (presence: ExpiringPresence): void {
    this.watched.add(presence)
    if (this.timer === null) {
      this.timer = setInterval(() => { this.sweep() }, SWEEP_MS)
      this.timer.unref()
    }
  }

  unwatch (presence: ExpiringPresence): void {
    this.watched.delete(presence)
    if (this.watched.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  /** Expires every watched presence; exposed for tests. */
  sweep (now = Date.now()): void {
    // Expiring releases peers' ids, which may unwatch a presence mid-sweep: a Set allows that.
    for (const presence of this.watched) presence.expire(now)
  }
}

export const presenceTimeouts = new PresenceTimeouts()
