import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import { LocalParticipants, type Participant } from '../documents/participants.js'
import { documentKeys, nodeAliveKey } from '../redis/keys.js'

/**
 * A document's participant keys outlive their node's last write by this much; they are written again
 * a third of it later while the document stays open. Only what a node leaves behind when it dies
 * lives that long, and no list shows it (the node's liveness key is gone).
 */
const ENTRY_TTL_SECONDS = 24 * 3600

/**
 * The cluster-wide participant list. Each node process owns one hash per document
 * ({prefix}{docId}:participants:{node}:{start-up id}, user id to JSON) and a member in the
 * document's set of nodes, written when its participants change. Whether a node is alive is one
 * key per process ({prefix}node-alive:{node:start-up id}), which it renews every third of `ttlSeconds`: the participants of a node
 * that died vanish from every list within `ttlSeconds`, and an idle document costs no periodic
 * command (a node renews one key, not one entry per document; the entries themselves are written
 * again once in ENTRY_TTL_SECONDS / 3). A list removes the entries of dead nodes it meets.
 */
export class RedisParticipants extends LocalParticipants {
  private readonly dirty = new Set<string>()
  private flushTimer: NodeJS.Timeout | null = null
  private readonly refreshTimer: NodeJS.Timeout
  /** When each document's entries were last written (for their occasional renewal). */
  private readonly writtenAt = new Map<string, number>()
  private readonly aliveKey: string
  private aliveRetry: NodeJS.Timeout | null = null
  private closed = false
  private aliveWritten = false
  /**
   * This process in the lists: the node id and a start-up id, so that a node restarted with the
   * same NODE_ID does not revive the entries its previous run left behind.
   */
  private readonly member: string

  constructor (
    nodeId: string,
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly log: Logger
  ) {
    super(nodeId)
    this.member = `${nodeId}:${randomBytes(6).toString('hex')}`
    this.aliveKey = nodeAliveKey(prefix, this.member)
    void this.renewAlive()
    this.refreshTimer = setInterval(() => {
      void this.renewAlive()
      const renewBefore = Date.now() - ENTRY_TTL_SECONDS * 1000 / 3
      for (const docId of this.byDoc.keys()) if ((this.writtenAt.get(docId) ?? 0) < renewBefore) this.dirty.add(docId)
      if (this.dirty.size > 0) void this.flush()
    }, Math.max(1_000, ttlSeconds * 1000 / 3))
    this.refreshTimer.unref()
  }

  override async list (docId: string): Promise<Participant[]> {
    const keys = documentKeys(this.prefix, docId)
    const scored = await this.redis.zrange(keys.participantNodes, '0', '-1', 'WITHSCORES')
    const writtenAt = new Map<string, number>()
    for (let i = 0; i + 1 < scored.length; i += 2) writtenAt.set(scored[i]!, Number(scored[i + 1]))
    const others = [...writtenAt.keys()].filter(member => member !== this.member)
    const result = this.local(docId)
    if (others.length === 0) return result
    // One command per node: liveness keys live in other hash slots than the document's keys.
    const alive = await Promise.all(others.map(async member => await this.redis.exists(nodeAliveKey(this.prefix, member)) === 1))
    // Entries written less than a TTL ago may belong to a node that has just started and whose
    // liveness key is not written yet: they are left out of this list but not removed.
    const expiredBefore = Date.now() - this.ttlSeconds * 1000
    const dead = others.filter((member, i) => alive[i] !== true && (writtenAt.get(member) ?? 0) < expiredBefore)
    if (dead.length > 0) void this.forget(docId, dead)
    const living = others.filter((_, i) => alive[i] === true)
    if (living.length === 0) return result
    const transaction = this.redis.multi()
    for (const member of living) transaction.hgetall(keys.participants(member))
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
    this.closed = true
    clearInterval(this.refreshTimer)
    if (this.aliveRetry !== null) clearTimeout(this.aliveRetry)
    if (this.flushTimer !== null) clearTimeout(this.flushTimer)
    // Leave the cluster list now rather than at expiry.
    for (const docId of [...this.byDoc.keys()]) this.byDoc.delete(docId)
    await Promise.all([...this.dirty].map(async docId => await this.write(docId).catch(() => {})))
    await this.redis.del(this.aliveKey).catch(() => {})
  }

  protected override changed (docId: string): void {
    this.dirty.add(docId)
    // Coalesce bursts of joins and leaves (reconnect storms) into one write per document.
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = null
      void this.flush()
    }, 200)
  }

  private async renewAlive (): Promise<void> {
    try {
      await this.redis.set(this.aliveKey, '1', 'PX', this.ttlSeconds * 1000)
      this.aliveWritten = true
    } catch (err) {
      // Redis not reachable yet (start-up) or for now: other nodes' lists leave this node out
      // until it is renewed, so try again soon rather than at the next period.
      this.log.debug({ err: (err as Error).message }, 'node liveness not renewed; will retry')
      if (this.aliveRetry === null && !this.closed) {
        this.aliveRetry = setTimeout(() => { this.aliveRetry = null; void this.renewAlive() }, 500)
        this.aliveRetry.unref()
      }
    }
  }

  /** Entries of nodes that died (their liveness key expired): nobody else removes them. */
  private async forget (docId: string, members: string[]): Promise<void> {
    const keys = documentKeys(this.prefix, docId)
    try {
      await this.redis.multi().zrem(keys.participantNodes, ...members).del(...members.map(member => keys.participants(member))).exec()
    } catch {}
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
    // Entries count only while the liveness key exists: write it first.
    if (!this.aliveWritten) await this.renewAlive()
    const keys = documentKeys(this.prefix, docId)
    const mine = keys.participants(this.member)
    const participants = this.local(docId)
    const transaction = this.redis.multi().del(mine)
    if (participants.length === 0) {
      transaction.zrem(keys.participantNodes, this.member)
      this.writtenAt.delete(docId)
    } else {
      const fields: string[] = []
      for (const p of participants) fields.push(p.userId, JSON.stringify(p))
      transaction.hset(mine, ...fields).expire(mine, ENTRY_TTL_SECONDS)
        .zadd(keys.participantNodes, Date.now(), this.member)
        .expire(keys.participantNodes, ENTRY_TTL_SECONDS)
      this.writtenAt.set(docId, Date.now())
    }
    await transaction.exec()
  }
}
