import type pg from 'pg'
import { DocumentDeletedError, NOTHING_LOST, type AppendEntry, type AppendOutcome, type DocumentStore, type StoredDocument, type VersionMeta, type VersionReason } from './document-store.js'
import { readBigint, readBoolean } from './binary-copy.js'
import { decodeEntryValue } from './entry-value.js'
import { connectAtStart, DatabaseStartError, explainDatabaseError, type DatabasePool } from './postgres-pool.js'
import { migrate, quoteIdentifier } from './postgres-migrations.js'

/** Entries per INSERT statement (two parameters each; PostgreSQL allows 65535 per statement). */
const ENTRIES_PER_STATEMENT = 1_000
/** How long a start waits for a database that is not reachable yet. */
const START_DEADLINE_MS = 9_000
/** /readyz must notice a database that stopped answering within seconds. */
const PING_TIMEOUT_MS = 2_000

/**
 * Documents in PostgreSQL (DATABASE_URL), for one node or for every node of a cluster. Tables (see
 * postgres-migrations.ts): `documents` (one row per document: the last sequence number handed out
 * and the deletion tombstone) and `document_entries` (the log: one row per entry, keyed by
 * (doc_id, seq)).
 *
 * An append takes each document's row lock while it hands out sequence numbers, so the entries of
 * one document commit in sequence order on every node: a load, one statement and so one snapshot,
 * always sees a gap-free prefix of the log, and compaction can delete everything below the
 * cursor it loaded. Locks are taken in document-id order, so two nodes flushing the same documents
 * wait for each other instead of deadlocking.
 *
 * Cursor handed to compact(): the sequence number of the last entry loaded.
 */
export class PostgresStore implements DocumentStore {
  readonly name = 'postgres'
  private readonly documents: string
  private readonly entries: string
  private readonly versions: string

  constructor (private readonly db: DatabasePool, private readonly schema: string) {
    const quoted = quoteIdentifier(schema)
    this.documents = `${quoted}.documents`
    this.entries = `${quoted}.document_entries`
    this.versions = `${quoted}.document_versions`
  }

  /** Waits for the database (briefly), then creates or upgrades the schema. */
  async open (): Promise<void> {
    await connectAtStart(this.db, START_DEADLINE_MS)
    try {
      await migrate(this.db, this.schema)
    } catch (err) {
      throw new DatabaseStartError(`cannot set up schema "${this.schema}" in ${this.db.target}: ${explainDatabaseError(err)}`)
    }
  }

  async load (docId: string): Promise<StoredDocument> {
    // One statement, one snapshot: the tombstone and the log as of the same moment. Read through
    // binary COPY: a large document's entries arrive as bytes, not as hex text (binary-copy.ts).
    const rows = await this.db.copyOut('load', quote => `COPY (
      SELECT NULL::bigint AS seq, NULL::bytea AS value, (deleted_until IS NOT NULL AND deleted_until > now()) AS deleted
        FROM ${this.documents} WHERE doc_id = ${quote(docId)}
      UNION ALL
      SELECT seq, value, NULL FROM ${this.entries} WHERE doc_id = ${quote(docId)}
      ORDER BY seq NULLS FIRST) TO STDOUT (FORMAT binary)`)
    const updates: Uint8Array[] = []
    let bytes = 0
    let cursor: string | null = null
    for (const [seq, value, deleted] of rows) {
      if (seq === null || seq === undefined) {
        if (deleted != null && readBoolean(deleted)) throw new DocumentDeletedError(docId)
        continue
      }
      for (const update of decodeEntryValue(value!)) updates.push(update)
      bytes += value!.length
      cursor = readBigint(seq)
    }
    return { updates, cursor: updates.length === 0 ? null : cursor, bytes }
  }

  async exists (docId: string): Promise<boolean> {
    const { rows } = await this.db.query<{ found: boolean }>('load', `SELECT EXISTS (SELECT 1 FROM ${this.entries} WHERE doc_id = $1) AS found`, [docId])
    return rows[0]?.found === true
  }

  async append (entries: AppendEntry[]): Promise<AppendOutcome> {
    if (entries.length === 0) return NOTHING_LOST
    // Lock order is document-id order; within a document the entries keep theirs.
    const ordered = entries.map((entry, index) => ({ entry, index }))
      .sort((a, b) => a.entry.docId < b.entry.docId ? -1 : a.entry.docId > b.entry.docId ? 1 : a.index - b.index)
      .map(({ entry }) => entry)
    if (ordered.length <= ENTRIES_PER_STATEMENT) {
      // One statement is one transaction and one round trip.
      const [text, values] = this.appendStatement(ordered)
      await this.db.query('append', text, values)
      return NOTHING_LOST
    }
    // A document's entries may span two statements: the second one continues the numbering the
    // first left in the same transaction.
    await this.db.transaction('append', async client => {
      for (let start = 0; start < ordered.length; start += ENTRIES_PER_STATEMENT) {
        const [text, values] = this.appendStatement(ordered.slice(start, start + ENTRIES_PER_STATEMENT))
        await client.query(text, values)
      }
    })
    return NOTHING_LOST
  }

  /**
   * Hands out the documents' next sequence numbers (skipping documents whose tombstone is still
   * valid: their entries are not written) and inserts the entries, in one statement.
   */
  private appendStatement (entries: AppendEntry[]): [string, unknown[]] {
    const values: unknown[] = []
    const rows: string[] = []
    for (let i = 0; i < entries.length; i++) {
      const { docId, value } = entries[i]!
      values.push(docId, Buffer.from(value.buffer, value.byteOffset, value.byteLength))
      rows.push(`($${2 * i + 1}::text, $${2 * i + 2}::bytea, ${i})`)
    }
    const text = `
      WITH input (doc_id, value, ord) AS (VALUES ${rows.join(', ')}),
      counts AS (SELECT doc_id, count(*) AS n FROM input GROUP BY doc_id),
      bumped AS (
        INSERT INTO ${this.documents} AS d (doc_id, last_seq)
        SELECT doc_id, n FROM counts ORDER BY doc_id
        ON CONFLICT (doc_id) DO UPDATE SET last_seq = d.last_seq + EXCLUDED.last_seq, updated_at = now(), deleted_until = NULL
          WHERE d.deleted_until IS NULL OR d.deleted_until <= now()
        RETURNING d.doc_id, d.last_seq
      )
      INSERT INTO ${this.entries} (doc_id, seq, value)
      SELECT i.doc_id, b.last_seq - c.n + row_number() OVER (PARTITION BY i.doc_id ORDER BY i.ord), i.value
        FROM input i JOIN bumped b ON b.doc_id = i.doc_id JOIN counts c ON c.doc_id = i.doc_id`
    return [text, values]
  }

  /**
   * Replaces the entries up to `cursor` by the snapshot, stored under the cursor's sequence
   * number, in one statement. If another node compacted past this cursor meanwhile, the entry is
   * gone and nothing is changed (that node's snapshot already holds it all).
   */
  async compact (docId: string, snapshot: Uint8Array, cursor: string): Promise<void> {
    await this.db.query('compact', `
      WITH target AS (UPDATE ${this.entries} SET value = $3 WHERE doc_id = $1 AND seq = $2 RETURNING seq)
      DELETE FROM ${this.entries} WHERE doc_id = $1 AND seq < $2 AND EXISTS (SELECT 1 FROM target)`,
    [docId, cursor, Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength)])
  }

  /** Shared by every node: another node may have appended entries this one has not applied. */
  lastCursor (_docId: string): string | null {
    return null
  }

  forget (_docId: string): void {
    // Nothing is kept per document in this process.
  }

  async saveVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void> {
    // Not for a document deleted meanwhile: its content must not come back through a version.
    const { rowCount } = await this.db.query('version', `
      INSERT INTO ${this.versions} (doc_id, id, created_at, reason, label, bytes, authors, state)
      SELECT $1, $2, $3, $4, $5, $6, $7, $8
       WHERE NOT EXISTS (SELECT 1 FROM ${this.documents} WHERE doc_id = $1 AND deleted_until IS NOT NULL AND deleted_until > now())
      ON CONFLICT (doc_id, id) DO NOTHING`,
    [docId, meta.id, meta.createdAt, meta.reason, meta.label, meta.bytes, meta.authors, Buffer.from(state.buffer, state.byteOffset, state.byteLength)])
    if (rowCount === 0 && await this.deleted(docId)) throw new DocumentDeletedError(docId)
  }

  private async deleted (docId: string): Promise<boolean> {
    const { rows } = await this.db.query<{ deleted: boolean }>('version', `SELECT EXISTS (SELECT 1 FROM ${this.documents} WHERE doc_id = $1 AND deleted_until IS NOT NULL AND deleted_until > now()) AS deleted`, [docId])
    return rows[0]?.deleted === true
  }

  async listVersions (docId: string, options: { limit: number, before?: string }): Promise<VersionMeta[]> {
    const { rows } = await this.db.query<{ id: string, created_at: Date, reason: VersionReason, label: string | null, bytes: number, authors: string[] }>('version', `
      SELECT id, created_at, reason, label, bytes, authors FROM ${this.versions}
       WHERE doc_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3`, [docId, options.before ?? null, options.limit])
    return rows.map(row => ({ id: row.id, createdAt: row.created_at.toISOString(), reason: row.reason, label: row.label, bytes: row.bytes, authors: row.authors }))
  }

  async loadVersion (docId: string, id: string): Promise<Uint8Array | null> {
    // A version is a whole document's state: bytes through binary COPY, not hex (load above).
    const rows = await this.db.copyOut('version', quote => `COPY (SELECT state FROM ${this.versions} WHERE doc_id = ${quote(docId)} AND id = ${quote(id)}) TO STDOUT (FORMAT binary)`)
    return rows[0]?.[0] ?? null
  }

  async deleteVersions (docId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return
    await this.db.query('version', `DELETE FROM ${this.versions} WHERE doc_id = $1 AND id = ANY($2::text[])`, [docId, ids])
  }

  async delete (docId: string, tombstoneSeconds = 0): Promise<void> {
    await this.db.transaction('delete', async (client: pg.PoolClient) => {
      // The row lock first: appends in flight finish before, later ones see the tombstone. The
      // row stays (its last_seq is never reused).
      await client.query(`
        INSERT INTO ${this.documents} AS d (doc_id, deleted_until) VALUES ($1, CASE WHEN $2::integer > 0 THEN now() + $2::integer * interval '1 second' END)
        ON CONFLICT (doc_id) DO UPDATE SET deleted_until = EXCLUDED.deleted_until, updated_at = now()`, [docId, tombstoneSeconds])
      // A new statement: it sees entries committed while the lock was awaited.
      await client.query(`DELETE FROM ${this.entries} WHERE doc_id = $1`, [docId])
      await client.query(`DELETE FROM ${this.versions} WHERE doc_id = $1`, [docId])
    })
  }

  async ping (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.db.query('ping', 'SELECT 1'),
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`postgres did not answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS) })
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
