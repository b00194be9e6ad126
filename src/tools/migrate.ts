import { connectAtStart, DatabasePool, DatabaseStartError, describeTarget, explainDatabaseError } from '../persistence/postgres-pool.js'
import { migrate } from '../persistence/postgres-migrations.js'
import { fail, toolConfig } from './tool-env.js'

// `npm run migrate`: creates or upgrades the PostgreSQL schema of DATABASE_URL / DATABASE_SCHEMA and
// exits, for operators who run migrations as a deployment step of their own. The server does the
// same at every start, so running it is never required.

const { database } = toolConfig()
if (database === null) fail('configuration error: DATABASE_URL is not set (postgres://user:password@host:port/database)', 2)
const db = new DatabasePool(database, undefined, 'yjs-uws-collab-migrate')
try {
  await connectAtStart(db, 9_000)
  const result = await migrate(db, database.schema)
  const what = result.applied.length === 0 ? 'already up to date' : `applied ${result.applied.join(', ')}`
  process.stdout.write(`schema "${database.schema}" in ${describeTarget(database.url)}: version ${result.from} -> ${result.to} (${what})\n`)
} catch (err) {
  await db.close().catch(() => {})
  fail(`migration failed for schema "${database.schema}" in ${describeTarget(database.url)}: ${err instanceof DatabaseStartError ? err.message : explainDatabaseError(err)}`)
}
await db.close()
