/**
 * Two token buckets per connection, messages and bytes. Each starts full (a reconnecting client's
 * first sync step 2 may be large); tokens refill continuously at the sustained rate up to the
 * burst size. A message that finds a bucket empty means the client exceeded its burst and kept
 * going: the connection is closed (4429).
 */
export class RateLimiter {
  private messages: number
  private bytes: number
  private last: number

  constructor (
    private readonly messagesPerSecond: number,
    private readonly messagesBurst: number,
    private readonly bytesPerSecond: number,
    private readonly bytesBurst: number
  ) {
    this.messages = messagesBurst
    this.bytes = bytesBurst
    this.last = performance.now()
  }

  /** Accounts for one message; false when the connection is over its limits. */
  allow (size: number): boolean {
    const now = performance.now()
    const elapsed = (now - this.last) / 1000
    this.last = now
    this.messages = Math.min(this.messagesBurst, this.messages + elapsed * this.messagesPerSecond) - 1
    this.bytes = Math.min(this.bytesBurst, this.bytes + elapsed * this.bytesPerSecond) - size
    return this.messages >= 0 && this.bytes >= 0
  }
}
