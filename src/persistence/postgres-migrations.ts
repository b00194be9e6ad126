import type { DatabasePool } from './postgres-pool.js'

/**
 * The PostgreSQL schema, as an ordered list of migrations. A migration is never edited once
 * released: a change is a new entry at the end. `{schema}` is replaced by the quoted schema name.
 */
const MIGRATIONS: ReadonlyArray<{ version: number, description: string, sql: string }> = [
  {
    version: 1,
    description: 'documents and their update logs',
    sql: `
      -- One row per document ever written. last_seq only grows (a deleted document keeps its row),
      -- so a sequence number is never reused and a stale compaction can never hit a newer entry.
      CREATE TABLE {schema}.documents (
        doc_id text PRIMARY KEY,
        last_seq bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        deleted_until timestamptz
      );
      -- The document's log: Yjs updates (entry-value.ts encoding); a compaction replaces a prefix
      -- by one snapshot stored under the prefix's last sequence number.
      CREATE TABLE {schema}.document_entries (
        doc_id text NOT NULL,
        seq bigint NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (doc_id, seq)
      );
    `
  },
  {
    version: 2,
    description: 'version history',
    sql: `
      -- A version is one row: its metadata and its state are written (and listed) together.
      CREATE TABLE {schema}.document_versions (
        doc_id text NOT NULL,
        id text NOT NULL,
        created_at timestamptz NOT NULL,
        reason text NOT NULL,
        label text,
        bytes integer NOT NULL,
        authors text[] NOT NULL DEFAULT '{}',
        state bytea NOT NULL,
        PRIMARY KEY (doc_id, id)
      );
    `
  },
  {
    version: 3,
    description: 'lz4 compression of stored states',
    sql: `
      -- Large values (snapshots, versions) are compressed by PostgreSQL. Its default, pglz, took
      -- 1.4 s of the database's CPU to store a 64 MiB snapshot and lz4 0.3 s, at the same ratio,
      -- and lz4 reads back faster. Values already stored keep their compression until rewritten.
      -- An optimisation, never a reason not to start: a server built without lz4, tables owned
      -- by another role, or a lock not granted within 5 s (the ALTER waits for every reader of the
      -- tables, such as an older node during a rolling upgrade) keep pglz, with a warning; the
      -- block's settings and changes are undone then. PostgreSQL before 14 has no per-column
      -- compression at all.
      DO $migration$
      DECLARE
        previous_lock_timeout text := current_setting('lock_timeout');
      BEGIN
        IF current_setting('server_version_num')::int >= 140000 THEN
          PERFORM set_config('lock_timeout', '5s', true);
          EXECUTE 'ALTER TABLE {schema}.document_entries ALTER COLUMN value SET COMPRESSION lz4';
          EXECUTE 'ALTER TABLE {schema}.document_versions ALTER COLUMN state SET COMPRESSION lz4';
          PERFORM set_config('lock_timeout', previous_lock_timeout, true);
        END IF;
      EXCEPTION WHEN feature_not_supported OR insufficient_privilege OR lock_not_available THEN
        RAISE WARNING 'stored states stay compressed with pglz: %', SQLERRM;
      END
      $migration$;
    `
  }
]

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

export function quoteIdentifier (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** Any number, the same on every node: they take turns at migrating. */
const MIGRATION_LOCK_KEY = 0x636f6c6c // "coll"

export interface MigrationResult {
  from: number
  to: number
  applied: number[]
}

/**
 * Creates the schema or brings it up to date, in one transaction under a transaction-level
 * advisory lock: nodes starting at once against an empty database wait for each other, and the
 * second finds everything done. A database whose schema is newer than this build refuses to start
 * (this build would not know its tables).
 */
export async function migrate (db: DatabasePool, schema: string): Promise<MigrationResult> {
  const quoted = quoteIdentifier(schema)
  return await db.transaction('migrate', async client => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY])
    // Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
    // schema exists, and an operator may have created it for a user without that right.
    const existing = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    if (existing.rowCount === 0) await client.query(`CREATE SCHEMA ${quoted}`)
    await client.query(`CREATE TABLE IF NOT EXISTS ${quoted}.schema_version (
      version integer PRIMARY KEY,
      description text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const { rows } = await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${quoted}.schema_version`)
    const from = rows[0]?.version ?? 0
    if (from > LATEST_SCHEMA_VERSION) {
      throw new Error(`schema "${schema}" is at version ${from}, newer than this build knows (${LATEST_SCHEMA_VERSION}): run a newer build`)
    }
    const applied: number[] = []
    for (const migration of MIGRATIONS) {
      if (migration.version <= from) continue
      await client.query(migration.sql.replaceAll('{schema}', quoted))
      await client.query(`INSERT INTO ${quoted}.schema_version (version, description) VALUES ($1, $2)`, [migration.version, migration.description])
      applied.push(migration.version)
    }
    return { from, to: Math.max(from, LATEST_SCHEMA_VERSION), applied }
  })
}
