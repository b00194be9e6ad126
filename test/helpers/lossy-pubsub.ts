import type { PubSub } from '../../src/redis/connections.js'

/**
 * Wraps a node's Redis pub/sub so that a test can lose messages on purpose: Redis pub/sub delivers
 * at most once, and the bridge must notice and repair what it loses.
 */
export class LossyPubSub {
  private toDrop = 0
  private cut: ((channel: string) => boolean) | null = null

  /** Drops the next `count` published messages that `match` accepts (the bridge's envelopes). */
  dropNext (count = 1): void {
    this.toDrop += count
  }

  /**
   * From now on the channels `match` accepts deliver nothing to this node, and subscribing to them
   * again does not help (a sharded subscription stranded on a shard that no longer owns the slot,
   * which keeps failing over), until heal().
   */
  cutSubscriptions (match: (channel: string) => boolean): void {
    this.cut = match
  }

  heal (): void {
    this.cut = null
  }

  constructor (private readonly match: (message: Buffer) => boolean = () => true) {}

  readonly wrap = (inner: PubSub): PubSub => ({
    subscribe: async channel => { await inner.subscribe(channel) },
    unsubscribe: async channel => { await inner.unsubscribe(channel) },
    resubscribe: async channel => { if (this.cut?.(channel) !== true) await inner.resubscribe(channel) },
    publish: (channel, message, onReceivers) => {
      if (this.toDrop > 0 && this.match(message)) {
        this.toDrop--
        return true
      }
      return inner.publish(channel, message, onReceivers)
    },
    onMessage: handler => { inner.onMessage((channel, message) => { if (this.cut?.(channel) !== true) handler(channel, message) }) },
    onReconnect: handler => { inner.onReconnect(handler) },
    get connected () { return inner.connected }
  })
}
