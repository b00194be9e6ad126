import type { PubSub } from '../../src/redis/connections.js'

/**
 * Wraps a node's Redis pub/sub so that a test can lose messages on purpose: Redis pub/sub delivers
 * at most once, and the bridge must notice and repair what it loses.
 */
export class LossyPubSub {
  private toDrop = 0

  /** Drops the next `count` published messages that `match` accepts (the bridge's envelopes). */
  dropNext (count = 1): void {
    this.toDrop += count
  }

  constructor (private readonly match: (message: Buffer) => boolean = () => true) {}

  readonly wrap = (inner: PubSub): PubSub => ({
    subscribe: async channel => { await inner.subscribe(channel) },
    unsubscribe: async channel => { await inner.unsubscribe(channel) },
    resubscribe: async channel => { await inner.resubscribe(channel) },
    publish: (channel, message) => {
      if (this.toDrop > 0 && this.match(message)) {
        this.toDrop--
        return true
      }
      return inner.publish(channel, message)
    },
    onMessage: handler => { inner.onMessage(handler) },
    onReconnect: handler => { inner.onReconnect(handler) },
    get connected () { return inner.connected }
  })
}
