import type { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import { nodeDirectoryKeys } from '../redis/keys.js'

const PUBLISH_EVERY_MS = 2_000
const EXPIRES_AFTER_SECONDS = 10

/**
 * Lets any node describe the whole cluster (the inspector): each node stores its latest snapshot
 * (any JSON the server makes of itself) under {prefix}nodes:{nodeId} with a short expiry and
 * registers itself in a sorted set of nodes scored by expiry, so dead nodes drop out on their own.
 */
export class NodeDirectory<Snapshot> {
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly nodeId: string,
    private readonly snapshot: () => Promise<Snapshot>,
    private readonly log: Logger
  ) {}

  start (): void {
    const publish = async (): Promise<void> => {
      try {
        const json = JSON.stringify(await this.snapshot())
        await this.redis.set(this.key(this.nodeId), json, 'EX', EXPIRES_AFTER_SECONDS)
        await this.redis.zadd(this.setKey(), Date.now() + EXPIRES_AFTER_SECONDS * 1000, this.nodeId)
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'node snapshot not published')
      }
    }
    void publish()
    this.timer = setInterval(() => { void publish() }, PUBLISH_EVERY_MS)
    this.timer.unref()
  }

  async list (): Promise<Snapshot[]> {
    const now = Date.now()
    await this.redis.zremrangebyscore(this.setKey(), '-inf', now)
    const nodes = await this.redis.zrangebyscore(this.setKey(), now, '+inf')
    const snapshots = await Promise.all(nodes.map(async node => await this.redis.get(this.key(node))))
    return snapshots.flatMap(json => {
      if (json === null) return []
      try {
        return [JSON.parse(json) as Snapshot]
      } catch {
        return []
      }
    })
  }

  async stop (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    await this.redis.zrem(this.setKey(), this.nodeId).catch(() => {})
    await this.redis.del(this.key(this.nodeId)).catch(() => {})
  }

  private key (nodeId: string): string {
    return nodeDirectoryKeys(this.prefix).node(nodeId)
  }

  private setKey (): string {
    return nodeDirectoryKeys(this.prefix).nodes
  }
}
