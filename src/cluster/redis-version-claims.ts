import type { Cluster, Redis } from 'ioredis'
import { documentKeys } from '../redis/keys.js'
import type { VersionClaims } from '../versions/version-claims.js'

/**
 * Version claims in Redis, in the document's slot: `{prefix}{docId}:version-claim` (SET NX PX,
 * the node id as value) and `{prefix}{docId}:version-authors` (a set, emptied by the node that
 * takes the version). Losing these keys (a flush, a failover) costs at most a duplicate version or
 * an author missing from one version's list, never a document change.
 */
export class RedisVersionClaims implements VersionClaims {
  constructor (
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly nodeId: string,
    /** The authors set outlives a node that dies before taking the version, but not forever. */
    private readonly authorsTtlSeconds: number
  ) {}

  async claim (docId: string, ttlMs: number): Promise<boolean> {
    return await this.redis.set(documentKeys(this.prefix, docId).versionClaim, this.nodeId, 'PX', ttlMs, 'NX') === 'OK'
  }

  async mark (docId: string, ttlMs: number): Promise<void> {
    await this.redis.set(documentKeys(this.prefix, docId).versionClaim, this.nodeId, 'PX', ttlMs)
  }

  async addAuthors (docId: string, authors: string[]): Promise<void> {
    if (authors.length === 0) return
    const key = documentKeys(this.prefix, docId).versionAuthors
    await this.redis.multi().sadd(key, ...authors).expire(key, this.authorsTtlSeconds).exec()
  }

  async lockRestore (docId: string, ttlMs: number): Promise<boolean> {
    return await this.redis.set(documentKeys(this.prefix, docId).restoreLock, this.nodeId, 'PX', ttlMs, 'NX') === 'OK'
  }

  async unlockRestore (docId: string): Promise<void> {
    await this.redis.del(documentKeys(this.prefix, docId).restoreLock)
  }

  async takeAuthors (docId: string): Promise<string[]> {
    const key = documentKeys(this.prefix, docId).versionAuthors
    const results = await this.redis.multi().smembers(key).del(key).exec()
    const members = results?.[0]?.[1]
    return Array.isArray(members) ? members.map(String) : []
  }
}
