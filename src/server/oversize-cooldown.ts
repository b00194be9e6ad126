/**
 * A client whose message was over MAX_MESSAGE_BYTES was dropped by uWS, and its provider reconnects
 * at once (it had connected) and sends the same message again: a loop that uploads megabytes every
 * few hundred milliseconds forever. The server cannot send the message's close code (uWS drops
 * the TCP connection on the frame header), but it can refuse that user's next upgrades to that
 * document for a while, with HTTP 413: a failed upgrade makes the stock provider back off, and an
 * upgrade refused costs no upload.
 *
 * The wait doubles with each repeat, from FIRST_WAIT_MS to MAX_WAIT_MS, and is forgotten after
 * FORGET_AFTER_MS without a repeat. At most MAX_ENTRIES pairs are remembered (the oldest go).
 */
const FIRST_WAIT_MS = 5_000
const MAX_WAIT_MS = 5 * 60_000
const FORGET_AFTER_MS = 30 * 60_000
const MAX_ENTRIES = 10_000

interface Strikes {
  count: number
  until: number
  last: number
}

export class OversizeCooldown {
  private readonly entries = new Map<string, Strikes>()

  constructor (private readonly now: () => number = Date.now) {}

  /** The user's connection to the document was dropped for an oversize message. */
  strike (docId: string, userId: string): void {
    const key = keyOf(docId, userId)
    const now = this.now()
    const previous = this.entries.get(key)
    const count = previous !== undefined && now - previous.last < FORGET_AFTER_MS ? previous.count + 1 : 1
    this.entries.delete(key)
    this.entries.set(key, { count, until: now + Math.min(MAX_WAIT_MS, FIRST_WAIT_MS * 2 ** (count - 1)), last: now })
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string)
  }

  /** Whole seconds the user must still wait before connecting to the document again (0: none). */
  retryAfterSeconds (docId: string, userId: string): number {
    const entry = this.entries.get(keyOf(docId, userId))
    if (entry === undefined) return 0
    const left = entry.until - this.now()
    return left > 0 ? Math.ceil(left / 1000) : 0
  }
}

function keyOf (docId: string, userId: string): string {
  return `${userId}\0${docId}`
}
