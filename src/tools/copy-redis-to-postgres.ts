import { Cluster, Redis } from 'ioredis'
import * as Y from 'yjs'
import type { RedisConfig } from '../config/config.js'
import { DocumentDeletedError } from '../persistence/document-store.js'
import { encodeEntryValue } from '../persistence/entry-value.js'
import { connectAtStart, DatabasePool, describeTarget } from '../persistence/postgres-pool.js'
import { migrate } from '../persistence/postgres-migrations.js'
import { PostgresStore } from '../persistence/postgres-store.js'
import { RedisStore } from '../persistence/redis-store.js'
import { fail, toolConfig } from './tool-env.js'

// `npm run copy-redis-to-postgres`: copies every document the Redis store holds (REDIS_URL,
// REDIS_CLUSTER_NODES or REDIS_SENTINELS, REDIS_KEY_PREFIX) into the PostgreSQL store of
// DATABASE_URL, one merged snapshot per document with its version history, and checks each copy by
// reading it back. Run it
// with the nodes stopped, then start them with DATABASE_URL set. Running it again is harmless:
// Yjs updates are idempotent, so a document copied twice holds the same content.

const BATCH_DOCUMENTS = 100

const { database, cluster } = toolConfig()
if (database === null) fail('configuration error: DATABASE_URL is not set: the database to copy the documents into', 2)
if (cluster === null) fail('configuration error: set REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS: the Redis to copy the documents from', 2)

function connect (target: RedisConfig): Redis | Cluster {
  const options = { maxRetriesPerRequest: 3, connectionName: 'collab-copy', lazyConnect: false }
  if (target.kind === 'single') return new Redis(target.url, options)
  if (target.kind === 'cluster') return new Cluster(target.nodes, { redisOptions: options })
  return new Redis({ ...options, sentinels: target.sentinels, name: target.name, username: target.username, password: target.password })
}

/** Every document id with a log or a snapshot under the prefix, on every master. */
async function documentIds (redis: Redis | Cluster, prefix: string): Promise<string[]> {
  const ids = new Set<string>()
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}{*}:*`, 'COUNT', 1000)
      cursor = next
      for (const key of keys) {
        const match = /^\{([^{}]+)\}:(log|snap)$/.exec(key.slice(prefix.length))
        if (match !== null) ids.add(match[1]!)
      }
    } while (cursor !== '0')
  }
  return [...ids].sort()
}

const redis = connect(cluster.redis)
const db = new DatabasePool(database, undefined, 'yjs-uws-collab-copy')
const source = new RedisStore(redis, cluster.keyPrefix, 0)
const target = new PostgresStore(db, database.schema)
let copied = 0
let skipped = 0
let bytes = 0
let versions = 0
try {
  await connectAtStart(db, 9_000)
  await migrate(db, database.schema)
  const ids = await documentIds(redis, cluster.keyPrefix)
  for (let start = 0; start < ids.length; start += BATCH_DOCUMENTS) {
    const batch: Array<{ docId: string, state: Uint8Array }> = []
    for (const docId of ids.slice(start, start + BATCH_DOCUMENTS)) {
      try {
        const stored = await source.load(docId)
        if (stored.updates.length === 0) continue
        batch.push({ docId, state: Y.mergeUpdates(stored.updates) })
      } catch (err) {
        if (!(err instanceof DocumentDeletedError)) throw err
        skipped++ // deleted recently: its tombstone says it must not come back
      }
    }
    await target.append(batch.map(({ docId, state }) => ({ docId, value: encodeEntryValue([state]) })))
    for (const { docId, state } of batch) {
      const copy = await target.load(docId)
      const expected = Buffer.from(Y.encodeStateVectorFromUpdate(state))
      const found = Buffer.from(Y.encodeStateVectorFromUpdate(Y.mergeUpdates(copy.updates)))
      if (!expected.equals(found)) throw new Error(`document ${docId}: the copy read back differs from Redis's`)
      bytes += state.length
      copied++
      // Versions keep their ids, so a second run finds them already there.
      for (const meta of await source.listVersions(docId, { limit: 1_000_000 })) {
        const versionState = await source.loadVersion(docId, meta.id)
        if (versionState === null) continue
        await target.saveVersion(docId, meta, versionState)
        versions++
      }
    }
  }
  process.stdout.write(`copied ${copied} documents (${bytes} bytes) and ${versions} versions from redis (prefix "${cluster.keyPrefix}") to schema "${database.schema}" in ${describeTarget(database.url)}; ${skipped} deleted documents skipped; every copy verified\n`)
} catch (err) {
  fail(`copy failed after ${copied} documents: ${(err as Error).message}`)
} finally {
  redis.disconnect()
  await db.close().catch(() => {})
}
