import type { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import { LocalParticipants, type Participant } from '../documents/participants.js'
import { documentKeys } from '../redis/keys.js'

/**
 * The cluster-wide participant list. Each node owns one hash per document
 * ({prefix}{docId}:participants:{node}, user id to JSON) and an entry in a sorted set of nodes
 * scored by expiry. Both expire unless the node refreshes them, so the participants of a node that
 * died vanish within `ttlSeconds` without anyone cleaning up after it.
 */
export class RedisParticipants extends LocalParticipants {
  private readonly dirty = new Set<string>()
  private flushTimer: NodeJS.Timeout | null = null
  private readonly refreshTimer: NodeJS.Timeout

  constructor (
    nodeId: string,
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly log: Logger
  ) {
    super(nodeId)
    this.refreshTimer = setInterval(() => {
      for (const docId of this.byDoc.keys()) this.dirty.add(docId)
      void this.flush()
    }, Math.max(1_000, ttlSeconds * 1000 / 3))
    this.refreshTimer.unref()
  }

  override async list (docId: string): Promise<Participant[]> {
    const keys = documentKeys(this.prefix, docId)
    const nodes = await this.redis.zrangebyscore(keys.participantNodes, Date.now(), '+inf')
    const others = nodes.filter(node => node !== this.nodeId)
    const result = this.local(docId)
    if (others.length === 0) return result
    const transaction = this.redis.multi()
    for (const node of others) transaction.hgetall(keys.participants(node))
    const replies = await transaction.exec() ?? []
    for (const [err, hash] of replies) {
      if (err !== null || hash === null) continue
      for (const json of Object.values(hash as Record<string, string>)) {
        try {
          result.push(JSON.parse(json) as Participant)
        } catch {}
      }
    }
    return result
  }

  override async close (): Promise<void> {
    clearInterval(this.refreshTimer)
    if (this.flushTimer !== null) clearTimeout(this.flushTimer)
    // Leave the cluster list now rather than at expiry.
    for (const docId of [...this.byDoc.keys()]) this.byDoc.delete(docId)
    await Promise.all([...this.dirty].map(async docId => await this.write(docId).catch(() => {})))
  }

  protected override changed (docId: string): void {
    this.dirty.add(docId)
    // Coalesce bursts of joins and leaves (reconnect storms) into one write per document.
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = null
      void this.flush()
    }, 200)
  }

  private async flush (): Promise<void> {
    const docIds = [...this.dirty]
    this.dirty.clear()
    await Promise.all(docIds.map(async docId => {
      try {
        await this.write(docId)
      } catch (err) {
        this.dirty.add(docId)
        this.log.debug({ docId, err: (err as Error).message }, 'participant list write failed; will retry')
      }
    }))
  }

  private async write (docId: string): Promise<void> {
    const keys = documentKeys(this.prefix, docId)
    const mine = keys.participants(this.nodeId)
    const participants = this.local(docId)
    const transaction = this.redis.multi().del(mine)
    if (participants.length === 0) {
      transaction.zrem(keys.participantNodes, this.nodeId)
    } else {
      const fields: string[] = []
      for (const p of participants) fields.push(p.userId, JSON.stringify(p))
      transaction.hset(mine, ...fields).expire(mine, this.ttlSeconds)
        .zadd(keys.participantNodes, Date.now() + this.ttlSeconds * 1000, this.nodeId)
        .zremrangebyscore(keys.participantNodes, '-inf', Date.now())
        .expire(keys.participantNodes, this.ttlSeconds)
    }
    await transaction.exec()
  }
}
