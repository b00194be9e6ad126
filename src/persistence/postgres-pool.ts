import pg from 'pg'
import copyStreams from 'pg-copy-streams'
import type { DatabaseConfig } from '../config/config.js'
import type { Metrics } from '../metrics/metrics.js'
import { BinaryCopyReader, type CopyRow } from './binary-copy.js'
import { DatabaseStartError, describeTarget, explainDatabaseError, isConnectionError } from './database-errors.js'

export { DatabaseStartError, describeTarget, explainDatabaseError }

/** Operation names as labelled in the database metrics. */
export type DatabaseOperation = 'load' | 'append' | 'compact' | 'delete' | 'ping' | 'migrate' | 'version'

/**
 * The node's connection pool. Every query goes through `query`, which times it and counts its
 * failures for the metrics. A pool's idle connections can fail at any time (the database
 * restarted): pg reports that as an 'error' event, which must be handled or the process would
 * exit; the pool drops the connection and opens a new one for the next query.
 */
export class DatabasePool {
  readonly pool: pg.Pool
  readonly target: string
  /** How long this side waits for a query's answer (the server's statement timeout, and some). */
  private readonly queryTimeoutMs: number

  constructor (config: DatabaseConfig, private readonly metrics?: Metrics, applicationName = 'yjs-uws-collab') {
    this.target = describeTarget(config.url)
    this.queryTimeoutMs = config.statementTimeoutMs + 5_000
    this.pool = new pg.Pool({
      connectionString: config.url,
      max: config.poolSize,
      connectionTimeoutMillis: config.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
      // Bounded on the server (statement_timeout) and here (a database that stopped answering
      // without closing the connection): a stuck query fails and the write-behind retries it.
      statement_timeout: config.statementTimeoutMs,
      query_timeout: this.queryTimeoutMs,
      application_name: applicationName,
      keepAlive: true
    })
    this.pool.on('error', () => { /* an idle connection failed: the pool replaces it */ })
    metrics?.watchDatabasePool(this.pool)
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow> (operation: DatabaseOperation, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return await this.measured(operation, async () => await this.pool.query<R>(text, values))
  }

  /**
   * Reads the rows of `COPY (query) TO STDOUT (FORMAT binary)`, for results with large bytea
   * values: node-postgres would receive those as hex text. `statement` is given the connection to
   * quote literals with (COPY takes no parameters). A connection whose COPY failed is discarded.
   */
  async copyOut (operation: DatabaseOperation, statement: (quote: (value: string) => string) => string): Promise<CopyRow[]> {
    return await this.measured(operation, async () => {
      const client = await this.pool.connect()
      let failed: Error | undefined
      try {
        return await this.readCopy(client, statement(value => client.escapeLiteral(value)))
      } catch (err) {
        failed = err as Error
        throw err
      } finally {
        client.release(failed)
      }
    })
  }

  private async readCopy (client: pg.PoolClient, text: string): Promise<CopyRow[]> {
    const reader = new BinaryCopyReader()
    const stream = client.query(copyStreams.to(text))
    await new Promise<void>((resolve, reject) => {
      // The pool's query_timeout does not cover a COPY: a database that stops answering must not
      // hold the load (and the document's clients) forever.
      const timer = setTimeout(() => { stream.destroy(new Error(`COPY timed out after ${this.queryTimeoutMs} ms`)) }, this.queryTimeoutMs)
      stream.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk)
        } catch (err) {
          stream.destroy(err as Error)
        }
      })
      stream.on('end', () => { clearTimeout(timer); resolve() })
      stream.on('error', err => { clearTimeout(timer); reject(err) })
    })
    if (!reader.done) throw new Error('COPY ended before its trailer')
    return reader.rows
  }

  /** Runs `work` in one transaction on one connection; rolls back if it throws. */
  async transaction<T> (operation: DatabaseOperation, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return await this.measured(operation, async () => {
      const client = await this.pool.connect()
      try {
        await client.query('BEGIN')
        const result = await work(client)
        await client.query('COMMIT')
        return result
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      } finally {
        client.release()
      }
    })
  }

  /** Times an operation and counts its failure, for the metrics. */
  private async measured<T> (operation: DatabaseOperation, run: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      return await run()
    } catch (err) {
      this.metrics?.databaseErrors.labels(operation).inc()
      throw err
    } finally {
      this.metrics?.databaseQuerySeconds.labels(operation).observe((performance.now() - started) / 1000)
    }
  }

  async close (): Promise<void> {
    await this.pool.end()
  }
}

/**
 * Waits for the database at start: a database that is starting too (docker compose, a restart)
 * gets until `deadlineMs`; errors that waiting cannot fix (credentials, a missing database,
 * permissions) fail at once. Throws a DatabaseStartError naming the database and the problem.
 */
export async function connectAtStart (db: DatabasePool, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    try {
      await db.pool.query('SELECT 1')
      return
    } catch (err) {
      if (!isConnectionError(err) || Date.now() + 500 >= deadline) {
        throw new DatabaseStartError(`cannot use ${db.target}: ${explainDatabaseError(err)}`)
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  }
}
