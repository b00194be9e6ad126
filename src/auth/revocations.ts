import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Cluster, Redis } from 'ioredis'
import { documentKeys } from '../redis/keys.js'

/**
 * Users whose access to a document was revoked through the admin API, for a limited time (long
 * enough for the tokens they hold to expire). Checked at every upgrade.
 */
export interface Revocations {
  revoke (docId: string, userId: string, ttlSeconds: number): Promise<void>
  restore (docId: string, userId: string): Promise<void>
  isRevoked (docId: string, userId: string): Promise<boolean>
}

/** Single node: in memory, saved to a JSON file in DATA_DIR so a restart keeps them. */
export class FileRevocations implements Revocations {
  private readonly entries = new Map<string, number>()

  constructor (private readonly file: string) {
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as Array<[string, number]>
      for (const [key, until] of saved) if (until > Date.now()) this.entries.set(key, until)
    } catch {}
  }

  async revoke (docId: string, userId: string, ttlSeconds: number): Promise<void> {
    this.entries.set(key(docId, userId), Date.now() + ttlSeconds * 1000)
    this.save()
  }

  async restore (docId: string, userId: string): Promise<void> {
    this.entries.delete(key(docId, userId))
    this.save()
  }

  async isRevoked (docId: string, userId: string): Promise<boolean> {
    if (this.entries.size === 0) return false
    const until = this.entries.get(key(docId, userId))
    if (until === undefined) return false
    if (until > Date.now()) return true
    this.entries.delete(key(docId, userId))
    return false
  }

  private save (): void {
    const now = Date.now()
    for (const [k, until] of this.entries) if (until <= now) this.entries.delete(k)
    mkdirSync(dirname(this.file), { recursive: true })
    const temporary = `${this.file}.tmp`
    writeFileSync(temporary, JSON.stringify([...this.entries]))
    renameSync(temporary, this.file)
  }
}

/** Cluster: one expiring key per revocation, in the document's hash slot. */
export class RedisRevocations implements Revocations {
  constructor (private readonly redis: Redis | Cluster, private readonly prefix: string) {}

  async revoke (docId: string, userId: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.key(docId, userId), '1', 'EX', ttlSeconds)
  }

  async restore (docId: string, userId: string): Promise<void> {
    await this.redis.del(this.key(docId, userId))
  }

  async isRevoked (docId: string, userId: string): Promise<boolean> {
    return (await this.redis.exists(this.key(docId, userId))) === 1
  }

  private key (docId: string, userId: string): string {
    return documentKeys(this.prefix, docId).revoked(userId)
  }
}

function key (docId: string, userId: string): string {
  return `${docId}\0${userId}`
}
