// PostgreSQL servers for tests: the same launcher `npm run cluster` uses.
export { createDatabase, POSTGRES_PASSWORD, postgresBinDir, startPostgres, type PostgresProcess } from '../../scripts/postgres-server.js'
