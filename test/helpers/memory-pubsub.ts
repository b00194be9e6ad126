import type { PubSub } from '../../src/redis/connections.js'

/**
 * Redis pub/sub's delivery model in memory, for unit tests of the bridge: every connection's
 * publishes reach every connection subscribed to the channel (its own included, as in Redis),
 * asynchronously and in order, at most once. `drop` decides which messages are lost.
 */
export class MemoryPubSubHub {
  private readonly connections: MemoryPubSub[] = []
  drop: (channel: string, message: Buffer) => boolean = () => false

  connect (): MemoryPubSub {
    const connection = new MemoryPubSub(this)
    this.connections.push(connection)
    return connection
  }

  /** Delivers to every subscriber; returns how many were subscribed, as Redis answers a PUBLISH. */
  deliver (channel: string, message: Buffer): number {
    const receivers = this.connections.filter(connection => connection.connected && connection.channels.has(channel)).length
    if (this.drop(channel, message)) return receivers
    for (const connection of this.connections) connection.receive(channel, message)
    return receivers
  }
}

export class MemoryPubSub implements PubSub {
  readonly channels = new Set<string>()
  connected = true
  private readonly handlers: Array<(channel: string, message: Buffer) => void> = []
  private readonly reconnectHandlers: Array<(reason: string) => void> = []

  constructor (private readonly hub: MemoryPubSubHub) {}

  async subscribe (channel: string): Promise<void> {
    this.channels.add(channel)
  }

  async unsubscribe (channel: string): Promise<void> {
    this.channels.delete(channel)
  }

  async resubscribe (channel: string): Promise<void> {
    this.channels.add(channel)
  }

  publish (channel: string, message: Buffer, onReceivers?: (count: number) => void): boolean {
    if (!this.connected) return false
    const copy = Buffer.from(message)
    setImmediate(() => {
      const receivers = this.hub.deliver(channel, copy)
      onReceivers?.(receivers)
    })
    return true
  }

  onMessage (handler: (channel: string, message: Buffer) => void): void {
    this.handlers.push(handler)
  }

  onReconnect (handler: (reason: string) => void): void {
    this.reconnectHandlers.push(handler)
  }

  /** A lost and restored connection: what was published meanwhile is gone. */
  reconnect (): void {
    this.connected = true
    for (const handler of this.reconnectHandlers) handler('redis reconnected')
  }

  receive (channel: string, message: Buffer): void {
    if (!this.connected || !this.channels.has(channel)) return
    for (const handler of this.handlers) handler(channel, message)
  }
}
