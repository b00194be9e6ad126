import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Redis } from 'ioredis'
import { freePort } from './helpers/ports.js'
import { createDatabase, POSTGRES_PASSWORD, startPostgres, type PostgresProcess } from './helpers/postgres.js'
import { runUntilExit, spawnServer } from './helpers/process.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis } from './helpers/redis.js'
import { tempDir } from './helpers/server.js'
import { signToken, TEST_SECRET } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
let server: PostgresProcess

t.before(async () => {
  server = await startPostgres()
  await server.sql('CREATE DATABASE locked')
  await server.sql(`CREATE ROLE limited LOGIN PASSWORD '${POSTGRES_PASSWORD}'`)
  await server.sql('REVOKE CREATE ON DATABASE locked FROM PUBLIC')
})
t.teardown(async () => { await server.cleanup() })

/** Runs one of src/tools/ with the given variables; resolves with its exit code and output. */
async function runTool (tool: string, env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', `src/tools/${tool}.ts`], { cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const code = await new Promise<number | null>(resolve => proc.on('exit', resolve))
  return { code, stdout, stderr }
}

t.test('a start that cannot use the database exits within 15 s with one line naming the database and the problem', async t => {
  const deadPort = await freePort()
  const cases = [
    { name: 'unreachable', url: `postgres://postgres:${POSTGRES_PASSWORD}@127.0.0.1:${deadPort}/postgres`, problem: /database "postgres" on 127\.0\.0\.1:\d+ as user "postgres": connection refused/ },
    { name: 'bad password', url: server.urlFor({ password: 'wrong-password-123' }), problem: /password authentication failed/ },
    { name: 'missing database', url: server.urlFor({ database: 'nosuchdb' }), problem: /database "nosuchdb".*does not exist: create it first/ },
    { name: 'no permission to create the schema', url: server.urlFor({ database: 'locked', user: 'limited' }), problem: /cannot set up schema "collab" in database "locked".*as user "limited": missing permission/ }
  ]
  for (const c of cases) {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const started = Date.now()
    const { code, stdout, stderr } = await runUntilExit({ DATA_DIR: dataDir, DATABASE_URL: c.url }, 20_000)
    const seconds = (Date.now() - started) / 1000
    t.equal(code, 1, `${c.name}: exit code 1`)
    t.ok(seconds < 15, `${c.name}: exited after ${seconds.toFixed(1)} s`)
    const lines = stderr.split('\n').filter(line => line.startsWith('startup error: '))
    t.equal(lines.length, 1, `${c.name}: one line on stderr`)
    t.match(lines[0], c.problem, `${c.name}: ${lines[0]}`)
    t.notMatch(stdout + stderr, /wrong-password-123|collab-test-password/, `${c.name}: the password is never printed`)
    t.notMatch(stderr, /\n\s+at /, `${c.name}: no stack trace`)
  }
})

t.test('TLS from DATABASE_URL: verify-full with the server\'s CA connects encrypted; an untrusted certificate or a server without TLS is one clear line', async t => {
  const secure = await startPostgres({ tls: true })
  t.teardown(secure.cleanup)
  await secure.sql('CREATE DATABASE tls_docs')
  const ca = secure.caFile!
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const node = await spawnServer({ DATA_DIR: dataDir, DATABASE_URL: `${secure.urlFor({ database: 'tls_docs' })}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}` })
  t.teardown(() => node.kill('SIGKILL'))
  const person = stockProvider('3.1.0', node.url, 'tls-doc', { token: await signToken({ sub: 'writer' }) })
  t.teardown(() => { person.provider.destroy(); person.doc.destroy() })
  await waitFor(() => person.provider.synced, 'a client synced through a node on the TLS database')
  person.doc.getText('t').insert(0, 'stored over TLS')
  const connections = await secure.sql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'tls_docs' AND a.application_name = 'yjs-uws-collab'")
  t.ok(connections.rows.length > 0, 'the node holds connections to the database')
  t.ok(connections.rows.every(row => row.ssl === true), 'every one of them encrypted')

  const cases = [
    { name: 'a certificate nobody vouched for', url: `${secure.urlFor({ database: 'tls_docs' })}?sslmode=verify-full`, problem: /TLS certificate is not trusted.*sslrootcert/ },
    { name: 'require, as node-postgres reads it (verify-full)', url: `${secure.urlFor({ database: 'tls_docs' })}?sslmode=require`, problem: /TLS certificate is not trusted/ },
    { name: 'a server without TLS', url: `${server.urlFor({})}?sslmode=verify-full`, problem: /does not support SSL.*enable ssl on the server or drop sslmode/ }
  ]
  for (const c of cases) {
    const { code, stderr } = await runUntilExit({ DATA_DIR: dataDir, DATABASE_URL: c.url }, 20_000)
    t.equal(code, 1, `${c.name}: exit code 1`)
    const lines = stderr.split('\n').filter(line => line.startsWith('startup error: '))
    t.equal(lines.length, 1, `${c.name}: one line on stderr`)
    t.match(lines[0], c.problem, `${c.name}: ${lines[0]}`)
  }
})

t.test('npm run migrate creates the schema of an empty database and a second run changes nothing', async t => {
  const url = await createDatabase(server, 'migrate_tool')
  const first = await runTool('migrate', { DATABASE_URL: url, DATABASE_SCHEMA: 'collab_tool' })
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /schema "collab_tool" in database "migrate_tool" on 127\.0\.0\.1:\d+ as user "postgres": version 0 -> 3 \(applied 1, 2, 3\)/)
  const second = await runTool('migrate', { DATABASE_URL: url, DATABASE_SCHEMA: 'collab_tool' })
  t.equal(second.code, 0)
  t.match(second.stdout, /version 3 -> 3 \(already up to date\)/)
  const missing = await runTool('migrate', {})
  t.equal(missing.code, 2)
  t.match(missing.stderr, /DATABASE_URL is not set/)
  const denied = await runTool('migrate', { DATABASE_URL: server.urlFor({ database: 'locked', user: 'limited' }) })
  t.equal(denied.code, 1)
  t.match(denied.stderr, /migration failed for schema "collab" in database "locked".*missing permission/)
})

t.test('copy-redis-to-postgres moves every document out of Redis; nodes on PostgreSQL serve them after Redis is wiped', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const token = await signToken({ sub: 'mover' })
  const onRedis = await spawnServer({ DATA_DIR: dataDir, REDIS_URL: redis.url, FLUSH_INTERVAL_MS: '50' })
  t.teardown(() => onRedis.kill('SIGKILL'))
  const docs = ['copy-a', 'copy-b', 'copy-c']
  for (const [i, docId] of docs.entries()) {
    const person = stockProvider('3.1.0', onRedis.url, docId, { token })
    await waitFor(() => person.provider.synced, `${docId} synced`)
    for (let n = 0; n <= i * 20; n++) person.doc.getArray<string>('items').push([`${docId}-${n}`])
    person.doc.getText('title').insert(0, `Title of ${docId}`)
    await waitFor(() => onRedis.output.join('').length > 0, 'running')
    await new Promise(resolve => setTimeout(resolve, 300))
    person.provider.destroy(); person.doc.destroy()
  }
  const named = await fetch(`http://127.0.0.1:${onRedis.port}/documents/copy-a/versions`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ label: 'moved along' }) })
  t.equal(named.status, 201, 'a version to move too')
  const versionId = (await named.json() as { id: string }).id
  onRedis.kill('SIGTERM')
  t.equal(await onRedis.exited, 0, 'the Redis-store node stopped cleanly')

  const url = await createDatabase(server, 'copy_target')
  const copy = await runTool('copy-redis-to-postgres', { DATABASE_URL: url, REDIS_URL: redis.url })
  t.equal(copy.code, 0, copy.stderr)
  t.match(copy.stdout, /copied 3 documents \(\d+ bytes\) and 1 versions from redis \(prefix "collab:"\) to schema "collab" in database "copy_target".*every copy verified/)
  const again = await runTool('copy-redis-to-postgres', { DATABASE_URL: url, REDIS_URL: redis.url })
  t.equal(again.code, 0, 'running it again is harmless')

  const wipe = new Redis(redis.url)
  await wipe.flushall()
  wipe.disconnect()
  const onPostgres = await spawnServer({ DATA_DIR: dataDir, REDIS_URL: redis.url, DATABASE_URL: url, JWT_SECRET: TEST_SECRET })
  t.teardown(() => onPostgres.kill('SIGKILL'))
  for (const [i, docId] of docs.entries()) {
    const reader = stockProvider('3.1.0', onPostgres.url, docId, { token })
    await waitFor(() => reader.provider.synced, `${docId} synced from PostgreSQL`)
    t.equal(reader.doc.getArray('items').length, i * 20 + 1, `${docId}: every item, each once`)
    t.equal(reader.doc.getText('title').toString(), `Title of ${docId}`)
    reader.provider.destroy(); reader.doc.destroy()
  }
  const listed = await (await fetch(`http://127.0.0.1:${onPostgres.port}/documents/copy-a/versions`, { headers: { authorization: `Bearer ${token}` } })).json() as { versions: Array<{ id: string, label: string }> }
  t.same(listed.versions.map(v => [v.id, v.label]), [[versionId, 'moved along']], 'the version history moved with its ids, once')
  onPostgres.kill('SIGTERM')
  t.equal(await onPostgres.exited, 0)
})

t.test('two nodes starting at once against an empty database both come up on one schema, and report the pool in /metrics', async t => {
  const url = await createDatabase(server, 'simultaneous')
  const dirs = [tempDir(), tempDir()]
  t.teardown(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) })
  const nodes = await Promise.all(dirs.map(async (dir, i) => await spawnServer({ DATA_DIR: dir, DATABASE_URL: url, NODE_ID: `simul-${i}` })))
  t.teardown(() => { for (const node of nodes) node.kill('SIGKILL') })
  for (const node of nodes) t.equal((await fetch(`http://127.0.0.1:${node.port}/readyz`)).status, 200, 'ready')
  const check = new (await import('pg')).default.Client({ connectionString: url })
  await check.connect()
  t.teardown(async () => { await check.end() })
  const applied = await check.query('SELECT version FROM collab.schema_version ORDER BY version')
  t.same(applied.rows.map(r => r.version), [1, 2, 3], 'each migration applied once')
  const metrics = await (await fetch(`http://127.0.0.1:${nodes[0]!.port}/metrics`)).text()
  t.match(metrics, /collab_database_connections_idle \d+/)
  t.match(metrics, /collab_database_connections_in_use \d+/)
  t.match(metrics, /collab_database_waiting_queries 0/)
  t.match(metrics, /collab_database_query_seconds_count\{operation="ping"\} \d+/, 'query latency by operation')
})
