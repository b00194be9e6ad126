/** A document's cached answer to fresh joins, which the budget may ask it to drop. */
export interface JoinCacheHolder {
  /** Drops the cached bytes; the budget has already forgotten them. */
  evictJoinCache: () => void
}

/**
 * Bounds the bytes that loaded documents keep to answer fresh clients (each one's full state, or a
 * large one's recorded chunks), over every document of the process. A document keeps its cache
 * until it changes, so without a bound every document a reader once opened would hold a second
 * copy of itself, encoded, for as long as it stays loaded. Least recently used caches are dropped
 * first: the documents people are joining right now keep theirs, which is what the cache is for
 * (a storm of joins encodes a document once).
 */
export class JoinCacheBudget {
  /** Holders by their cached bytes, least recently used first (a Map keeps insertion order). */
  private readonly held = new Map<JoinCacheHolder, number>()
  private usedBytes = 0

  constructor (public limit: number) {}

  get used (): number {
    return this.usedBytes
  }

  get holders (): number {
    return this.held.size
  }

  /**
   * Records that `holder` now caches `bytes` in all (replacing what it held), dropping other
   * holders' caches from the least recently used on until they fit. False when the bytes alone are
   * over the limit: nothing changes, and the holder must not keep what it meant to add.
   */
  admit (holder: JoinCacheHolder, bytes: number): boolean {
    if (bytes > this.limit) return false
    this.release(holder)
    for (const [other, otherBytes] of this.held) {
      if (this.usedBytes + bytes <= this.limit) break
      this.held.delete(other)
      this.usedBytes -= otherBytes
      other.evictJoinCache()
    }
    this.held.set(holder, bytes)
    this.usedBytes += bytes
    return true
  }

  /** The holder's cache answered a join: it is the most recently used now. */
  touch (holder: JoinCacheHolder): void {
    const bytes = this.held.get(holder)
    if (bytes === undefined) return
    this.held.delete(holder)
    this.held.set(holder, bytes)
  }

  /** The holder dropped its cache (the document changed or was unloaded). */
  release (holder: JoinCacheHolder): void {
    const bytes = this.held.get(holder)
    if (bytes === undefined) return
    this.held.delete(holder)
    this.usedBytes -= bytes
  }
}

/** The process's budget; the server sets its limit from JOIN_CACHE_MAX_BYTES at start. */
export const joinCacheBudget = new JoinCacheBudget(128 * 1024 * 1024)
