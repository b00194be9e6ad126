import type { DocumentStore } from '../../src/persistence/document-store.js'
import { LevelDbStore } from '../../src/persistence/leveldb-store.js'
import { DatabasePool } from '../../src/persistence/postgres-pool.js'
import { PostgresStore } from '../../src/persistence/postgres-store.js'
import type { TestEnv } from './env.js'
import { createDatabase, startPostgres, type PostgresProcess } from './postgres.js'

// The stores a single node can keep documents in, for tests that must hold with each: the embedded
// one (a DATA_DIR) and PostgreSQL (a fresh database of a server started on first use; call
// stopStoreServers in the test file's teardown).

let postgres: PostgresProcess | null = null
let databases = 0

export interface StoreKind {
  name: string
  /** The variables that select a fresh store of this kind; keep them for a restart. */
  env: (dataDir: string) => Promise<TestEnv>
  /** The store as the server would open it, to look at what was written. */
  open: (env: TestEnv) => DocumentStore
}

export const STORE_KINDS: StoreKind[] = [
  { name: 'embedded store', env: async dataDir => ({ DATA_DIR: dataDir }), open: env => new LevelDbStore(env.DATA_DIR!) },
  {
    name: 'PostgreSQL store',
    env: async dataDir => {
      postgres ??= await startPostgres()
      return { DATA_DIR: dataDir, DATABASE_URL: await createDatabase(postgres, `store_kind_${process.pid}_${++databases}`) }
    },
    open: env => new PostgresStore(new DatabasePool({ url: env.DATABASE_URL!, schema: 'collab', poolSize: 1, statementTimeoutMs: 10_000, connectTimeoutMs: 2_000 }), 'collab')
  }
]

export async function stopStoreServers (): Promise<void> {
  await postgres?.cleanup()
  postgres = null
}
