import pg from 'pg'
import t, { type Test } from 'tap'
import * as Y from 'yjs'
import type { DatabaseConfig } from '../src/config/config.js'
import { createLogger } from '../src/log/logger.js'
import { Metrics } from '../src/metrics/metrics.js'
import { encodeEntryValue } from '../src/persistence/entry-value.js'
import { LATEST_SCHEMA_VERSION, migrate } from '../src/persistence/postgres-migrations.js'
import { DatabasePool } from '../src/persistence/postgres-pool.js'
import { PostgresStore } from '../src/persistence/postgres-store.js'
import { WriteBehind } from '../src/persistence/write-behind.js'
import { createDatabase, startPostgres, type PostgresProcess } from './helpers/postgres.js'
import { appendWhileCompacting, edit, itemsOf, versionContract } from './helpers/store-contract.js'

let server: PostgresProcess
let databases = 0

t.before(async () => { server = await startPostgres() })
t.teardown(async () => { await server.cleanup() })

function databaseConfig (url: string, overrides: Partial<DatabaseConfig> = {}): DatabaseConfig {
  return { url, schema: 'collab', poolSize: 4, statementTimeoutMs: 10_000, connectTimeoutMs: 2_000, ...overrides }
}

/** `count` stores ("nodes") on one fresh database, opened (migrated) and closed at the end. */
async function openStores (t: Test, count: number, overrides: Partial<DatabaseConfig> = {}): Promise<PostgresStore[]> {
  const url = await createDatabase(server, `contract_${++databases}`)
  const stores: PostgresStore[] = []
  for (let i = 0; i < count; i++) {
    const config = databaseConfig(url, overrides)
    const store = new PostgresStore(new DatabasePool(config), config.schema)
    await store.open()
    stores.push(store)
  }
  t.teardown(async () => { for (const store of stores) await store.close().catch(() => {}) })
  return stores
}

t.test('PostgreSQL store: append, load, compact, delete', async t => {
  const [store] = await openStores(t, 1)
  t.same(await store!.load('empty'), { updates: [], cursor: null, bytes: 0 })
  await store!.append([{ docId: 'a', value: encodeEntryValue([edit('1')]) }, { docId: 'ab', value: encodeEntryValue([edit('x')]) }, { docId: 'a', value: encodeEntryValue([edit('2')]) }])
  await store!.append([{ docId: 'a', value: encodeEntryValue([edit('3')]) }])
  const a = await store!.load('a')
  t.same(itemsOf(a.updates), ['1', '2', '3'], 'two entries of one document in one append, and a later one')
  t.equal(a.cursor, '3', 'sequence numbers are per document')
  t.same(itemsOf((await store!.load('ab')).updates), ['x'])
  await store!.append([{ docId: 'many', value: encodeEntryValue([edit('p'), edit('q'), edit('r')]) }])
  t.same(itemsOf((await store!.load('many')).updates), ['p', 'q', 'r'], 'an entry holding several updates reads back as all of them')
  t.equal(store!.lastCursor('a'), null, 'a shared store never lets compaction skip reading the log')

  await store!.compact('a', Y.mergeUpdates(a.updates), a.cursor!)
  await store!.append([{ docId: 'a', value: encodeEntryValue([edit('4')]) }])
  const compacted = await store!.load('a')
  t.equal(compacted.updates.length, 2, 'snapshot plus the entry appended after it')
  t.same(itemsOf(compacted.updates), ['1', '2', '3', '4'])
  await store!.compact('a', Y.mergeUpdates([edit('stale')]), '2')
  t.same(itemsOf((await store!.load('a')).updates), ['1', '2', '3', '4'], 'a compaction onto an entry already compacted away changes nothing')

  await store!.delete('a')
  t.same((await store!.load('a')).updates, [], 'deleted')
  await store!.append([{ docId: 'a', value: encodeEntryValue([edit('again')]) }])
  const again = await store!.load('a')
  t.same(itemsOf(again.updates), ['again'], 'without a tombstone a deleted document can be written again')
  t.ok(Number(again.cursor) > 4, 'with sequence numbers never reused')

  await store!.delete('gone', 60)
  await t.rejects(store!.load('gone'), { message: 'document gone was deleted' }, 'a tombstoned document cannot be loaded')
  await store!.append([{ docId: 'gone', value: encodeEntryValue([edit('resurrect')]) }, { docId: 'b', value: encodeEntryValue([edit('b1')]) }])
  await store!.delete('gone', 0)
  t.same((await store!.load('gone')).updates, [], 'a write during the tombstone was not stored')
  t.same(itemsOf((await store!.load('b')).updates), ['b1'], 'the other document of the same append was')
  await store!.ping()
})

t.test('PostgreSQL store: large entries and versions come back byte for byte; ids are quoted', async t => {
  const [store] = await openStores(t, 1)
  // Bytes of every value, spread over many network chunks; ids that would break an unquoted COPY.
  const big = new Uint8Array(12 * 1024 * 1024)
  for (let i = 0; i < big.length; i += 65_536) crypto.getRandomValues(big.subarray(i, i + 65_536))
  const small = edit('after')
  for (const docId of ['big', "o'brien'); DROP TABLE x; --", 'back\\slash']) {
    await store!.append([{ docId, value: encodeEntryValue([big]) }, { docId, value: encodeEntryValue([small]) }])
    const loaded = await store!.load(docId)
    t.equal(loaded.updates.length, 2, `${docId}: both entries`)
    t.ok(Buffer.from(loaded.updates[0]!).equals(big), `${docId}: the 12 MiB entry byte for byte`)
    t.same(itemsOf([loaded.updates[1]!]), ['after'])
    t.equal(loaded.cursor, '2', 'the cursor is the last sequence number')
    t.equal(loaded.bytes, encodeEntryValue([big]).length + encodeEntryValue([small]).length, 'bytes as stored')
  }
  t.same(await store!.load("o'brien"), { updates: [], cursor: null, bytes: 0 }, 'a prefix of a quoted id is another document')
  await store!.saveVersion('big', { id: 'v1', createdAt: new Date().toISOString(), reason: 'named', label: null, bytes: big.length, authors: [] }, big)
  t.ok(Buffer.from((await store!.loadVersion('big', 'v1'))!).equals(big), 'a large version byte for byte')
  t.equal(await store!.loadVersion('big', "v1' OR '1'='1"), null, 'a version id is quoted too')
  t.equal(await store!.loadVersion('big', 'v2'), null, 'a missing version')
})

t.test('PostgreSQL store: three nodes append and compact at once without losing anything', async t => {
  const stores = await openStores(t, 3)
  await appendWhileCompacting(t, stores)
})

t.test('PostgreSQL store: versions', async t => {
  const [store] = await openStores(t, 1)
  await versionContract(t, store!)
})

t.test('PostgreSQL store: one flush of 2,500 entries over 700 documents is one transaction, in order', async t => {
  const [store, other] = await openStores(t, 2)
  const entries = []
  for (let i = 0; i < 2_500; i++) entries.push({ docId: `doc-${i % 700}`, value: encodeEntryValue([edit(`e${i}`)]) })
  // Two nodes flushing the same documents at once: the document locks are taken in one order.
  await Promise.all([store!.append(entries), other!.append(entries.slice().reverse())])
  const loaded = await store!.load('doc-5')
  t.same(itemsOf(loaded.updates), ['e1405', 'e2105', 'e5', 'e705'], 'every entry of the document')
  t.equal(loaded.updates.length, 8, 'both nodes\' copies')
  let total = 0
  for (let d = 0; d < 700; d++) total += (await store!.load(`doc-${d}`)).updates.length
  t.equal(total, 5_000, 'nothing lost, nothing doubled')
})

t.test('PostgreSQL store: a flush is one round trip up to 1,000 entries, and all or nothing beyond', async t => {
  const [store] = await openStores(t, 1)
  const sent: string[] = []
  let failNext: RegExp | null = null
  const original = pg.Client.prototype.query
  // Every statement any client of the pool sends (pg.Pool's query goes through a Client's).
  pg.Client.prototype.query = function (this: pg.Client, ...args: any[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0]?.text ?? '')
    sent.push(text.trim().split(/\s+/)[0]!.toUpperCase())
    if (failNext !== null && failNext.test(text) && sent.filter(s => s === 'WITH' || s === 'INSERT').length === 2) {
      failNext = null
      args[0] = 'SELECT 1/0'
    }
    return (original as any).apply(this, args)
  } as any
  t.teardown(() => { pg.Client.prototype.query = original })

  const entries = (n: number, prefix: string): Array<{ docId: string, value: Uint8Array }> => Array.from({ length: n }, (_, i) => ({ docId: `${prefix}-${i % 300}`, value: encodeEntryValue([edit(`${prefix}${i}`)]) }))
  sent.length = 0
  await store!.append(entries(1_000, 'small'))
  t.equal(sent.length, 1, `1,000 entries over 300 documents: one statement (${sent.join(' ')})`)

  sent.length = 0
  failNext = /./
  await t.rejects(store!.append(entries(2_500, 'large')), 'the second of three statements fails')
  t.equal(sent[0], 'BEGIN', 'a transaction began')
  t.equal(sent.at(-1), 'ROLLBACK', 'and was rolled back')
  t.equal((await store!.load('large-0')).updates.length, 0, 'nothing of the failed flush was written')
  sent.length = 0
  await store!.append(entries(2_500, 'large'))
  t.same(sent.filter(s => s !== 'WITH' && s !== 'INSERT'), ['BEGIN', 'COMMIT'], `one transaction (${sent.length - 2} statements)`)
  t.equal((await store!.load('large-0')).updates.length, 9, 'written whole')
})

t.test('PostgreSQL pool: DATABASE_POOL_SIZE bounds the connections, the statement timeout ends a blocked write or load, failed queries are counted', async t => {
  const url = await createDatabase(server, `contract_${++databases}`)
  const metrics = new Metrics(false)
  t.teardown(() => { metrics.stop() })
  const config = databaseConfig(url, { poolSize: 2, statementTimeoutMs: 300 })
  const store = new PostgresStore(new DatabasePool(config, metrics), config.schema)
  await store.open()
  t.teardown(async () => { await store.close().catch(() => {}) })
  // Many loads at once share two connections.
  await Promise.all(Array.from({ length: 20 }, async (_, i) => await store.load(`doc-${i}`)))
  const open = await server.sql("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'yjs-uws-collab'", [url.split('/').pop()])
  t.ok(open.rows[0].n <= 2, `at most DATABASE_POOL_SIZE connections (${open.rows[0].n as number})`)

  // Another session holds the table: the append waits until the statement timeout ends it.
  const blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  t.teardown(async () => { await blocker.end().catch(() => {}) })
  await blocker.query('BEGIN')
  await blocker.query('LOCK TABLE collab.documents IN ACCESS EXCLUSIVE MODE')
  const started = Date.now()
  await t.rejects(store.append([{ docId: 'blocked', value: encodeEntryValue([edit('waits')]) }]), /statement timeout|canceling statement/, 'the blocked write fails')
  t.ok(Date.now() - started < 5_000, 'after the statement timeout, not the lock\'s end')
  t.equal(await metrics.total('collab_database_errors_total'), 1, 'the failed query is counted')
  // A load (a binary COPY) blocked the same way ends the same way, and its connection is replaced.
  await t.rejects(store.load('blocked'), /statement timeout|canceling statement/, 'the blocked load fails')
  t.equal(await metrics.total('collab_database_errors_total'), 2, 'the failed load is counted')
  await blocker.query('ROLLBACK')
  await store.append([{ docId: 'blocked', value: encodeEntryValue([edit('written')]) }])
  t.same(itemsOf((await store.load('blocked')).updates), ['written'], 'the next write and load go through')
})

t.test('PostgreSQL store: writes while the database is down are kept and written when it is back', async t => {
  const [store] = await openStores(t, 1)
  const writeBehind = new WriteBehind(store!, { intervalMs: 60_000, retryMaxMs: 500 }, createLogger('silent'))
  writeBehind.enqueue('w', edit('before'))
  await writeBehind.flush()
  await server.stop('SIGINT')
  try {
    writeBehind.enqueue('w', edit('during-1'))
    await t.rejects(writeBehind.flush(), 'a write with the database down fails')
    t.notOk(writeBehind.healthy)
    await t.rejects(store!.ping(), 'ping fails')
    writeBehind.enqueue('w', edit('during-2'))
    writeBehind.enqueue('x', edit('x1'))
  } finally {
    await server.start()
  }
  await writeBehind.flush()
  t.ok(writeBehind.healthy, 'the pool reconnects on its own')
  t.same(itemsOf((await store!.load('w')).updates), ['before', 'during-1', 'during-2'])
  t.same(itemsOf((await store!.load('x')).updates), ['x1'])
})

t.test('PostgreSQL schema: created in an empty database, re-running changes nothing, nodes starting at once do not collide', async t => {
  const url = await createDatabase(server, 'migrations')
  const pools = Array.from({ length: 4 }, () => new DatabasePool(databaseConfig(url, { schema: 'collab_m' })))
  t.teardown(async () => { for (const pool of pools) await pool.close() })
  const results = await Promise.all(pools.map(async pool => await migrate(pool, 'collab_m')))
  t.equal(results.filter(r => r.applied.length > 0).length, 1, 'exactly one of four nodes starting at once applied the migrations')
  t.ok(results.every(r => r.to === LATEST_SCHEMA_VERSION), 'all find the latest version')
  const again = await migrate(pools[0]!, 'collab_m')
  t.same(again, { from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION, applied: [] }, 're-running applies nothing')
  const versions = await pools[0]!.pool.query('SELECT version FROM collab_m.schema_version ORDER BY version')
  t.same(versions.rows.map(r => r.version), Array.from({ length: LATEST_SCHEMA_VERSION }, (_v, i) => i + 1), 'each version recorded once')
  const compression = await pools[0]!.pool.query(`SELECT attrelid::regclass::text AS table, attcompression FROM pg_attribute
    WHERE attrelid IN ('collab_m.document_entries'::regclass, 'collab_m.document_versions'::regclass) AND attname IN ('value', 'state') ORDER BY 1`)
  t.same(compression.rows, [{ table: 'collab_m.document_entries', attcompression: 'l' }, { table: 'collab_m.document_versions', attcompression: 'l' }], 'stored states are compressed with lz4')
  await pools[0]!.pool.query(`INSERT INTO collab_m.document_entries (doc_id, seq, value) VALUES ('lz4', 1, convert_to(repeat('compressible ', 100000), 'UTF8'))`)
  const stored = await pools[0]!.pool.query('SELECT pg_column_compression(value) AS method FROM collab_m.document_entries WHERE doc_id = \'lz4\'')
  t.equal(stored.rows[0].method, 'lz4', 'a large value is stored with lz4')

  await pools[0]!.pool.query('INSERT INTO collab_m.schema_version (version, description) VALUES (999, \'from the future\')')
  await t.rejects(migrate(pools[1]!, 'collab_m'), /version 999, newer than this build/, 'a schema newer than the build is refused')
})
