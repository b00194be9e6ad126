import type { LimitsConfig } from '../config/config.js'

export type RateLimits = Pick<LimitsConfig, 'messagesPerSecond' | 'messagesBurst' | 'bytesPerSecond' | 'bytesBurst'>

/** Two token buckets, messages and bytes; kept as plain fields of the connection they limit. */
export interface TokenBuckets {
  messageTokens: number
  byteTokens: number
  /** performance.now() of the last refill. */
  refilledAt: number
}

/**
 * Accounts for one message of `size` bytes; false when the connection is over its limits. Tokens
 * refill continuously at the sustained rate up to the burst size. A message that finds a bucket
 * empty means the client exceeded its burst and kept going: the caller closes it (4529).
 */
export function takeTokens (buckets: TokenBuckets, limits: RateLimits, size: number): boolean {
  const now = performance.now()
  const elapsed = (now - buckets.refilledAt) / 1000
  buckets.refilledAt = now
  buckets.messageTokens = Math.min(limits.messagesBurst, buckets.messageTokens + elapsed * limits.messagesPerSecond) - 1
  buckets.byteTokens = Math.min(limits.bytesBurst, buckets.byteTokens + elapsed * limits.bytesPerSecond) - size
  return buckets.messageTokens >= 0 && buckets.byteTokens >= 0
}
