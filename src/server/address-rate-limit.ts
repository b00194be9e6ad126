/**
 * A token bucket per remote address, for WebSocket upgrades: each upgrade can cost a token
 * verification, a call to the auth service and a document load before it is refused, so one host
 * must not be able to ask for them without bound. Buckets are dropped once full again (an idle
 * address costs nothing), and at most `maxAddresses` are kept.
 */
export interface AddressLimits {
  /** Requests per second one address may start beyond its burst (0: no limit). */
  perSecond: number
  burst: number
  /**
   * Token checks one address may have in flight at once (0: no bound): with a remote auth
   * service, whose calls are bounded for everyone together, one host must not take them all.
   */
  maxPending?: number
  maxAddresses?: number
  now?: () => number
}

export class AddressRateLimit {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  private readonly pending = new Map<string, number>()

  private readonly perSecond: number
  private readonly burst: number
  private readonly maxPending: number
  private readonly maxAddresses: number
  private readonly now: () => number

  constructor (options: AddressLimits) {
    this.perSecond = options.perSecond
    this.burst = options.burst
    this.maxPending = options.maxPending ?? 0
    this.maxAddresses = options.maxAddresses ?? 100_000
    this.now = options.now ?? (() => performance.now())
  }

  /** Starts a token check for `address`; false when it has `maxPending` in flight already. */
  enter (address: string): boolean {
    if (this.maxPending === 0) return true
    const count = this.pending.get(address) ?? 0
    if (count >= this.maxPending) return false
    this.pending.set(address, count + 1)
    return true
  }

  /** Ends a check that enter() allowed. */
  leave (address: string): void {
    if (this.maxPending === 0) return
    const count = (this.pending.get(address) ?? 1) - 1
    if (count <= 0) this.pending.delete(address)
    else this.pending.set(address, count)
  }

  /** True when `address` may upgrade now; 0 per second turns the limit off. */
  allow (address: string): boolean {
    if (this.perSecond === 0) return true
    const now = this.now()
    let bucket = this.buckets.get(address)
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxAddresses) this.sweep(now)
      bucket = { tokens: this.burst, at: now }
      this.buckets.set(address, bucket)
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) / 1000 * this.perSecond)
    bucket.at = now
    if (bucket.tokens < 1) return false
    bucket.tokens--
    return true
  }

  /** Drops the buckets that refilled; if none did, the oldest half (they refill soonest). */
  private sweep (now: number): void {
    for (const [address, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) / 1000 * this.perSecond >= this.burst) this.buckets.delete(address)
    }
    if (this.buckets.size < this.maxAddresses) return
    let drop = Math.floor(this.buckets.size / 2)
    for (const address of this.buckets.keys()) {
      if (drop-- <= 0) break
      this.buckets.delete(address)
    }
  }
}
