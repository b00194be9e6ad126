import type { Cluster, Redis } from 'ioredis'
import { DocumentDeletedError, NOTHING_LOST, type AppendEntry, type AppendOutcome, type DocumentStore, type StoredDocument, type VersionMeta } from './document-store.js'
import { decodeVersionMeta, encodeVersionMeta } from './version-meta.js'
import { documentKeys } from '../redis/keys.js'
import { decodeEntryValue } from './entry-value.js'

/**
 * Replaces the log prefix by a snapshot, atomically, and only if nobody compacted since the caller
 * loaded (the snapshot cursor is unchanged): two nodes compacting at once can never let the later
 * one overwrite a snapshot that already absorbed entries the later one never saw.
 *   KEYS[1] snapshot hash {data, cursor}   KEYS[2] update stream
 *   ARGV[1] expected snapshot cursor ("" for none)  ARGV[2] new snapshot  ARGV[3] new cursor
 *   ARGV[4] first stream id to keep (MINID)        ARGV[5] TTL seconds (0 = none)
 */
const COMPACT_SCRIPT = `
local current = redis.call('HGET', KEYS[1], 'cursor')
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'cursor', ARGV[3])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
`

/**
 * Appends one log entry and refreshes the document's expiry atomically in one command: every node
 * of a cluster writes every update, so the per-document cost of a flush (commands, ioredis
 * pipeline objects, promises) is paid once per node. Writes nothing and answers 0 when the node
 * held stored state for the document and it is gone (the entry depends on content that is no
 * longer stored: the node writes the full state instead), 2 when the document was deleted. Gone
 * means the stream key is missing (trimming never removes it: only a flush, an eviction, an expiry
 * or a DEL does) or, for a node that saw a snapshot, the snapshot is missing (eviction takes keys
 * one at a time).
 *   KEYS[1] update stream   KEYS[2] snapshot hash   KEYS[3] deletion tombstone
 *   ARGV[1] entry value   ARGV[2] TTL seconds (0 = none)   ARGV[3] '1' if the node held stored state
 *   ARGV[4] '1' if the node saw a snapshot of the document
 */
const APPEND_SCRIPT = `
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
end
redis.call('XADD', KEYS[1], '*', 'u', ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
`

/**
 * Writes a version (its state, metadata and id) in one script, unless the document was deleted:
 * a version still being taken while the document is deleted must not bring its content back.
 *   KEYS[1] version states   KEYS[2] version metadata   KEYS[3] version ids   KEYS[4] tombstone
 *   ARGV[1] id   ARGV[2] state   ARGV[3] metadata JSON   ARGV[4] TTL seconds (0 = none)
 */
const SAVE_VERSION_SCRIPT = `
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return 1
`

type RedisClient = Redis | Cluster
type AppendCommand = (logKey: string, snapKey: string, tombstoneKey: string, value: Buffer, ttl: number, held: '0' | '1', snapshotSeen: '0' | '1') => Promise<number>
type SaveVersionCommand = (stateKey: string, metaKey: string, idsKey: string, tombstoneKey: string, id: string, state: Buffer, meta: string, ttl: number) => Promise<number>
type CompactCommand = (snapKey: string, logKey: string, expected: string, snapshot: Buffer, cursor: string, minId: string, ttl: number) => Promise<number>

/**
 * Cluster-mode store. Per document (all keys share the hash tag {docId}, so they live in one
 * Redis Cluster slot and one MULTI or script can cover them):
 *   {prefix}{docId}:log   a stream of log entries (field "u", values as in entry-value.ts); XADD ids order them
 *   {prefix}{docId}:snap  a hash {data: merged snapshot, cursor: last stream id it absorbed}
 *   {prefix}{docId}:versions, :version-meta, :version-state   version ids (sorted set), their
 *                         metadata and states (hashes), written together in one MULTI
 * Any number of nodes append concurrently (XADD never overwrites); compaction is a script.
 * Cursor format handed to compact(): "<snapshot cursor>|<last stream id read>".
 */
export class RedisStore implements DocumentStore {
  readonly name = 'redis'
  /** Documents this node loaded with stored state or appended to: their keys must exist. */
  private readonly held = new Set<string>()
  /** Held documents of which this node saw a snapshot (loaded or compacted): it must exist. */
  private readonly snapshotSeen = new Set<string>()

  constructor (
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlSeconds: number
  ) {
    redis.defineCommand('collabAppend', { numberOfKeys: 3, lua: APPEND_SCRIPT })
    redis.defineCommand('collabCompact', { numberOfKeys: 2, lua: COMPACT_SCRIPT })
    redis.defineCommand('collabSaveVersion', { numberOfKeys: 4, lua: SAVE_VERSION_SCRIPT })
  }

  async open (): Promise<void> {
    // The connection is established (and retried) by ioredis; a failing Redis only makes the
    // node not-ready, it must not stop it from starting and holding edits in memory.
  }

  async load (docId: string): Promise<StoredDocument> {
    const keys = documentKeys(this.prefix, docId)
    // One MULTI: a compaction between reading the snapshot and the stream would lose entries.
    const transaction = this.redis.multi().hgetallBuffer(keys.snapshot).xrangeBuffer(keys.log, '-', '+').exists(keys.tombstone)
    if (this.ttlSeconds > 0) {
      transaction.expire(keys.snapshot, this.ttlSeconds).expire(keys.log, this.ttlSeconds)
        .expire(keys.versions, this.ttlSeconds).expire(keys.versionMeta, this.ttlSeconds).expire(keys.versionState, this.ttlSeconds)
    }
    const results = await execAll(transaction)
    if (results[2]![1] === 1) throw new DocumentDeletedError(docId)
    const snapshot = results[0]![1] as Record<string, Buffer> | Buffer[]
    const entries = results[1]![1] as Array<[Buffer, Buffer[]]>
    const snap = normalizeHash(snapshot)
    const updates: Uint8Array[] = []
    let bytes = 0
    if (snap.data !== undefined && snap.data.length > 0) {
      updates.push(snap.data)
      bytes += snap.data.length
    }
    const snapCursor = snap.cursor?.toString() ?? ''
    let lastId = snapCursor
    for (const [id, fields] of entries) {
      const value = fieldValue(fields, 'u')
      if (value === undefined) continue
      for (const update of decodeEntryValue(value)) updates.push(update)
      bytes += value.length
      lastId = id.toString()
    }
    const cursor = updates.length === 0 ? null : `${snapCursor}|${lastId}`
    // Never un-held here: the compactor loads too, and a load that finds the keys gone must leave
    // the next append to report the loss.
    if (updates.length > 0) this.held.add(docId)
    if (snap.data !== undefined && snap.data.length > 0) this.snapshotSeen.add(docId)
    return { updates, cursor, bytes }
  }

  async exists (docId: string): Promise<boolean> {
    const keys = documentKeys(this.prefix, docId)
    return await this.redis.exists(keys.log, keys.snapshot) > 0
  }

  async append (entries: AppendEntry[]): Promise<AppendOutcome> {
    // One script call per document: its keys share a slot, while different documents may not.
    const appendCommand = (this.redis as unknown as { collabAppend: AppendCommand }).collabAppend
    const lost = new Set<string>()
    await Promise.all(entries.map(async ({ docId, value }) => {
      const keys = documentKeys(this.prefix, docId)
      const held = this.held.has(docId) ? '1' : '0'
      const snapshotSeen = this.snapshotSeen.has(docId) ? '1' : '0'
      const result = await appendCommand.call(this.redis, keys.log, keys.snapshot, keys.tombstone, Buffer.from(value.buffer, value.byteOffset, value.byteLength), this.ttlSeconds, held, snapshotSeen)
      if (result === 0) lost.add(docId)
      else if (result === 1 && !lost.has(docId)) this.held.add(docId)
    }))
    // The next write of a lost document (its full state) starts its keys afresh.
    for (const docId of lost) { this.held.delete(docId); this.snapshotSeen.delete(docId) }
    return lost.size === 0 ? NOTHING_LOST : { lost: [...lost] }
  }

  /** The document left this node: its keys are no longer this node's to watch. */
  forget (docId: string): void {
    this.held.delete(docId)
    this.snapshotSeen.delete(docId)
  }

  /** Shared by every node: another node may have appended entries this one has not applied. */
  lastCursor (_docId: string): string | null {
    return null
  }

  async compact (docId: string, snapshot: Uint8Array, cursor: string): Promise<void> {
    const [expected, lastId] = splitCursor(cursor)
    if (lastId === '' || lastId === expected) return // nothing in the stream to absorb
    const keys = documentKeys(this.prefix, docId)
    const compactCommand = (this.redis as unknown as { collabCompact: CompactCommand }).collabCompact
    const written = await compactCommand.call(this.redis, keys.snapshot, keys.log, expected, Buffer.from(snapshot), lastId, nextStreamId(lastId), this.ttlSeconds)
    if (written === 1) this.snapshotSeen.add(docId)
  }

  async saveVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void> {
    const keys = documentKeys(this.prefix, docId)
    // One script: the id is never listed without its metadata and state.
    const save = (this.redis as unknown as { collabSaveVersion: SaveVersionCommand }).collabSaveVersion
    const written = await save.call(this.redis, keys.versionState, keys.versionMeta, keys.versions, keys.tombstone, meta.id, Buffer.from(state.buffer, state.byteOffset, state.byteLength), encodeVersionMeta(meta), this.ttlSeconds)
    if (written === 0) throw new DocumentDeletedError(docId)
  }

  async listVersions (docId: string, options: { limit: number, before?: string }): Promise<VersionMeta[]> {
    const keys = documentKeys(this.prefix, docId)
    const ids = await this.redis.zrevrangebylex(keys.versions, options.before === undefined ? '+' : `(${options.before}`, '-', 'LIMIT', 0, options.limit)
    if (ids.length === 0) return []
    const metas = await this.redis.hmget(keys.versionMeta, ...ids)
    return metas.filter((m): m is string => m !== null).map(decodeVersionMeta)
  }

  async loadVersion (docId: string, id: string): Promise<Uint8Array | null> {
    return await this.redis.hgetBuffer(documentKeys(this.prefix, docId).versionState, id)
  }

  async deleteVersions (docId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return
    const keys = documentKeys(this.prefix, docId)
    await execAll(this.redis.multi().zrem(keys.versions, ...ids).hdel(keys.versionMeta, ...ids).hdel(keys.versionState, ...ids))
  }

  async delete (docId: string, tombstoneSeconds = 0): Promise<void> {
    this.held.delete(docId)
    this.snapshotSeen.delete(docId)
    const keys = documentKeys(this.prefix, docId)
    const transaction = this.redis.multi().del(keys.snapshot).del(keys.log).del(keys.versions).del(keys.versionMeta).del(keys.versionState)
    if (tombstoneSeconds > 0) transaction.set(keys.tombstone, '1', 'EX', tombstoneSeconds)
    await transaction.exec()
  }

  async ping (): Promise<void> {
    if (this.redis.status !== 'ready') throw new Error(`redis is ${this.redis.status}`)
    await this.redis.ping()
  }

  async close (): Promise<void> {
    // The connection is owned (and closed) by the cluster module.
  }
}

/** Runs a MULTI and throws the first command error (ioredis reports them per command). */
async function execAll (transaction: ReturnType<RedisClient['multi']>): Promise<Array<[Error | null, unknown]>> {
  const results = await transaction.exec()
  if (results === null) throw new Error('redis transaction aborted')
  for (const [err] of results) if (err !== null) throw err
  return results
}

function splitCursor (cursor: string): [string, string] {
  const bar = cursor.indexOf('|')
  return bar < 0 ? ['', cursor] : [cursor.slice(0, bar), cursor.slice(bar + 1)]
}

/** The smallest stream id greater than `id` ("ms-seq"): XTRIM MINID keeps ids >= it. */
function nextStreamId (id: string): string {
  const [ms, seq] = id.split('-')
  return `${ms}-${BigInt(seq ?? '0') + 1n}`
}

function normalizeHash (value: Record<string, Buffer> | Buffer[] | null): Record<string, Buffer> {
  if (value === null) return {}
  if (!Array.isArray(value)) return value
  const result: Record<string, Buffer> = {}
  for (let i = 0; i + 1 < value.length; i += 2) result[value[i]!.toString()] = value[i + 1]!
  return result
}

function fieldValue (fields: Buffer[], name: string): Buffer | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toString() === name) return fields[i + 1]
  }
  return undefined
}
