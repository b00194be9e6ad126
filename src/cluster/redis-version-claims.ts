import { randomUUID } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { documentKeys } from '../redis/keys.js'
import type { ClaimAnswer, VersionClaims } from '../versions/version-claims.js'

// Compare and act in one step: a lock that expired and was taken by another node is theirs.
const RENEW_IF_HELD = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
// Set when free or this node's own (`nodeId|covers`, ARGV[1] the `nodeId|` prefix); otherwise the
// holder's value comes back. A node is never kept out by its own claim.
const CLAIM_IF_FREE_OR_MINE = "local held = redis.call('get', KEYS[1]) if held == false or string.sub(held, 1, #ARGV[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return held"
const DELETE_IF_HELD = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

/**
 * Version claims in Redis, in the document's slot: `{prefix}{docId}:version-claim` (the
 * node id and until when its version covers changes, with an expiry), `{prefix}{docId}:version-authors` (a set, emptied by the node that takes
 * the version) and `{prefix}{docId}:restore-lock` (its holder's token, renewed while the restore
 * runs). Losing these keys (a flush, a failover) costs at most a duplicate version, an author
 * missing from one version's list, or two restores of one document running at once.
 */
export class RedisVersionClaims implements VersionClaims {
  constructor (
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly nodeId: string,
    /** The authors set outlives a node that dies before taking the version, but not forever. */
    private readonly authorsTtlSeconds: number
  ) {}

  async claim (docId: string, ttlMs: number, covers: number): Promise<ClaimAnswer> {
    const answer = await this.redis.eval(CLAIM_IF_FREE_OR_MINE, 1, documentKeys(this.prefix, docId).versionClaim, `${this.nodeId}|`, `${this.nodeId}|${covers}`, ttlMs)
    if (answer === 1) return { taken: true }
    // A value without a time (a node of an earlier release): it covers every change until now.
    const held = Number(String(answer).split('|')[1])
    return { taken: false, covers: Number.isFinite(held) ? held : Date.now() }
  }

  async mark (docId: string, ttlMs: number, covers: number): Promise<void> {
    await this.redis.eval(CLAIM_IF_FREE_OR_MINE, 1, documentKeys(this.prefix, docId).versionClaim, `${this.nodeId}|`, `${this.nodeId}|${covers}`, ttlMs)
  }

  async addAuthors (docId: string, authors: string[]): Promise<void> {
    if (authors.length === 0) return
    const key = documentKeys(this.prefix, docId).versionAuthors
    await this.redis.multi().sadd(key, ...authors).expire(key, this.authorsTtlSeconds).exec()
  }

  async lockRestore (docId: string, ttlMs: number): Promise<string | null> {
    // The node's id tells an operator who holds it; the random part tells one restore from the next.
    const token = `${this.nodeId}:${randomUUID()}`
    return await this.redis.set(documentKeys(this.prefix, docId).restoreLock, token, 'PX', ttlMs, 'NX') === 'OK' ? token : null
  }

  async renewRestore (docId: string, token: string, ttlMs: number): Promise<boolean> {
    return await this.redis.eval(RENEW_IF_HELD, 1, documentKeys(this.prefix, docId).restoreLock, token, ttlMs) === 1
  }

  async unlockRestore (docId: string, token: string): Promise<void> {
    await this.redis.eval(DELETE_IF_HELD, 1, documentKeys(this.prefix, docId).restoreLock, token)
  }

  async takeAuthors (docId: string): Promise<string[]> {
    const key = documentKeys(this.prefix, docId).versionAuthors
    const results = await this.redis.multi().smembers(key).del(key).exec()
    const members = results?.[0]?.[1]
    return Array.isArray(members) ? members.map(String) : []
  }
}
