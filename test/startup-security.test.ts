/**
 * Start-up behaviour of the real process (src/main.ts): configurations that must be refused with
 * exit code 2 and one line naming the variable, development mode's loopback binding and its
 * DNS-rebinding guard, and the warnings a weak JWT configuration earns.
 */
import t, { type Test } from 'tap'
import { readFileSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { fileURLToPath } from 'node:url'
import { runUntilExit, spawnServer, type ServerProcess } from './helpers/process.js'
import { tempDir } from './helpers/server.js'
import type { TestEnv } from './helpers/env.js'
import { waitFor } from './helpers/wait.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Runs the process with `env` and checks that it refused to start: exit 2, one line matching `line`. */
async function refused (t: Test, env: TestEnv, line: RegExp, what: string): Promise<void> {
  const { code, stdout, stderr } = await runUntilExit({ DATA_DIR: '/nonexistent/never-created', ...env })
  const lines = stderr.trim().split('\n')
  t.equal(code, 2, `${what}: exit code 2`)
  t.equal(lines.length, 1, `${what}: one line (${stderr.trim()})`)
  t.match(lines[0], /^configuration error: /, `${what}: a configuration error`)
  t.match(lines[0], line, `${what}: names the variable`)
  t.equal(stdout, '', `${what}: nothing else was printed`)
}

/** GET with an arbitrary Host header (fetch does not allow setting one); '' sends none at all. */
async function getWithHost (port: number, path: string, host: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const options = host === '' ? { setHost: false } : { headers: { host } }
    const req = request({ host: '127.0.0.1', port, path, ...options }, res => {
      let body = ''
      res.on('data', chunk => { body += String(chunk) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

function listeningHost (server: ServerProcess): string | undefined {
  for (const line of server.output.join('').split('\n')) {
    if (!line.startsWith('{')) continue
    const entry = JSON.parse(line) as { msg?: string, host?: string }
    if (entry.msg === 'listening') return entry.host
  }
  return undefined
}

async function stop (server: ServerProcess): Promise<void> {
  server.kill('SIGTERM')
  await server.exited
}

t.test('a variable that is set but empty or blank is refused, naming it', async t => {
  await refused(t, { JWT_SECRET: '' }, /JWT_SECRET/, 'JWT_SECRET=')
  await refused(t, { JWT_SECRET: undefined, JWKS_URL: ' ' }, /JWKS_URL/, 'JWKS_URL=" "')
  await refused(t, { HOST: '' }, /HOST/, 'HOST=')
  await refused(t, { JWT_SECRET: undefined, DEV_MODE: '  ' }, /DEV_MODE/, 'DEV_MODE=" "')
})

t.test('NODE_ENV=production never enters development mode', async t => {
  await refused(t, { NODE_ENV: 'production', JWT_SECRET: undefined },
    /NODE_ENV=production.*JWT_SECRET, JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, JWKS_URL, AUTH_SERVICE_URL/, 'no auth under production')
  await refused(t, { NODE_ENV: 'production', JWT_SECRET: undefined, DEV_ALLOW_ANONYMOUS: 'true' }, /DEV_ALLOW_ANONYMOUS/, 'anonymous under production')
  await refused(t, { NODE_ENV: 'production', DEV_MODE: 'true' }, /DEV_MODE/, 'DEV_MODE under production')
  // With real auth configured, production starts as before.
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const server = await spawnServer({ NODE_ENV: 'production', DATA_DIR: dataDir })
  await stop(server)
  t.pass('production with JWT_SECRET starts')
})

t.test('DEV_MODE=true with configured authentication is refused: /dev/token never signs with a real key', async t => {
  await refused(t, { DEV_MODE: 'true' }, /DEV_MODE/, 'DEV_MODE with JWT_SECRET')
  await refused(t, { DEV_MODE: 'true', JWT_SECRET: undefined, AUTH_SERVICE_URL: 'http://127.0.0.1:9/validate' }, /DEV_MODE/, 'DEV_MODE with AUTH_SERVICE_URL')
})

t.test('placeholder secrets are refused as JWT_SECRET', async t => {
  const example = /^#?\s*JWT_SECRET=(\S+)/m.exec(readFileSync(`${ROOT}/.env.example`, 'utf8'))?.[1]
  t.ok(example, '.env.example shows a JWT_SECRET')
  await refused(t, { JWT_SECRET: example! }, /JWT_SECRET/, 'the .env.example value')
  await refused(t, { JWT_SECRET: 'changeme-changeme-changeme-changeme' }, /JWT_SECRET.*placeholder/, 'changeme')
  await refused(t, { JWT_SECRET: 'secretsecretsecretsecretsecretsecret' }, /JWT_SECRET/, '"secret" repeated')
  await refused(t, { JWT_SECRET: 'x'.repeat(40) }, /JWT_SECRET/, 'one character repeated')
})

t.test('development mode: loopback only by default, dev token and playground only for loopback Host names', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const server = await spawnServer({ JWT_SECRET: undefined, HOST: undefined, DATA_DIR: dataDir })
  t.teardown(async () => await stop(server))
  t.equal(listeningHost(server), '127.0.0.1', 'listens on 127.0.0.1 without HOST')
  await waitFor(() => server.output.join('').includes('Development token'), 'token printed')
  t.match(server.output.join(''), new RegExp(`ws://127\\.0\\.0\\.1:${server.port}/ws/document/my-doc\\?token=`), 'prints a URL that answers')

  for (const host of ['localhost', `localhost:${server.port}`, `127.0.0.1:${server.port}`, `[::1]:${server.port}`, 'LOCALHOST']) {
    t.equal((await getWithHost(server.port, '/dev/token?user=a', host)).status, 200, `/dev/token for Host ${host}`)
  }
  t.equal((await getWithHost(server.port, '/', `localhost:${server.port}`)).status, 200, 'playground for localhost')
  // A rebinding page's requests carry its own name; lookalikes must not pass either.
  for (const host of [`evil.example:${server.port}`, 'evil.example', 'localhost.evil.example', '127.0.0.1.evil.example', `127.0.0.2:${server.port}`]) {
    for (const path of ['/dev/token?user=a', '/']) {
      const res = await getWithHost(server.port, path, host)
      t.equal(res.status, 403, `${path} refused for Host ${JSON.stringify(host)}`)
      t.same(JSON.parse(res.body), { error: 'host_not_allowed' })
    }
  }
  // Without any Host header (HTTP/1.1 requires one) uWS itself answers 400: no token either.
  t.equal((await getWithHost(server.port, '/dev/token?user=a', '')).status, 400, '/dev/token refused without Host')
})

t.test('with real authentication HOST still defaults to 0.0.0.0', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const server = await spawnServer({ HOST: undefined, DATA_DIR: dataDir })
  t.teardown(async () => await stop(server))
  t.equal(listeningHost(server), '0.0.0.0')
})

t.test('loud warnings: JWKS without JWT_AUDIENCE / JWT_ISSUER, and JWT_REQUIRE_EXP=false', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  // The JWKS is fetched on first use, so nothing needs to listen there for the process to start.
  const jwks = await spawnServer({ JWT_SECRET: undefined, JWKS_URL: 'http://127.0.0.1:9/jwks.json', JWT_REQUIRE_EXP: 'false', DATA_DIR: dataDir })
  await stop(jwks)
  const warnings = jwks.output.join('').split('\n').filter(l => l.startsWith('{'))
    .map(l => JSON.parse(l) as { level: number, msg: string, variable?: string }).filter(e => e.level === 40)
  for (const variable of ['JWT_AUDIENCE', 'JWT_ISSUER', 'JWT_REQUIRE_EXP']) {
    const warning = warnings.find(w => w.variable === variable)
    t.ok(warning, `a warning names ${variable}`)
    t.match(warning?.msg, new RegExp(variable))
  }
  const quiet = await spawnServer({ JWT_SECRET: undefined, JWKS_URL: 'http://127.0.0.1:9/jwks.json', JWT_AUDIENCE: 'collab', JWT_ISSUER: 'https://issuer.test', DATA_DIR: dataDir })
  await stop(quiet)
  t.notMatch(quiet.output.join(''), /"level":40/, 'no warning when both are set and exp is required')
})

t.test('docker-compose keeps requiring JWT_SECRET; the image runs with NODE_ENV=production', async t => {
  t.match(readFileSync(`${ROOT}/docker-compose.yml`, 'utf8'), /JWT_SECRET: \$\{JWT_SECRET:\?/)
  t.match(readFileSync(`${ROOT}/Dockerfile`, 'utf8'), /NODE_ENV=production/)
})
