/**
 * Log redaction must hold at any depth: a shallow filter (pino's `*.token` paths) lets a token two
 * levels down, in an array, in an error message or in a URL string through. These tests log such
 * records through the real logger into a sink, and make the real process log a URL with a token.
 */
import t from 'tap'
import { rmSync } from 'node:fs'
import { Writable } from 'node:stream'
import { createLogger } from '../src/log/logger.js'
import { spawnServer } from './helpers/process.js'
import { tempDir } from './helpers/server.js'

function captured (): { log: ReturnType<typeof createLogger>, text: () => string, entries: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  const sink = new Writable({ write (chunk, _encoding, callback) { lines.push(String(chunk)); callback() } })
  const log = createLogger('trace', sink)
  return {
    log,
    text: () => lines.join(''),
    entries: () => lines.join('').split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)
  }
}

t.test('sensitive fields are censored at every depth, and only they are', async t => {
  const { log, text, entries } = captured()
  log.info({ docId: 'keep-me', a: { b: { c: { token: 'S-deep-token' } } } }, 'nested three levels')
  log.info({ users: [{ name: 'ada', password: 'S-array-password' }, { credentials: { secret: 'S-array-secret' } }] }, 'arrays')
  log.warn({ request: { headers: { Authorization: 'Bearer S-header-bearer', 'x-api-key': 'S-api-key', cookie: 'sid=S-cookie' } } }, 'headers')
  log.info({ config: { auth: { jwtSecret: 'S-jwt-secret', accessToken: 'S-access-token' } } }, 'camelCase keys')
  log.child({ session: { refresh_token: 'S-child-binding' } }).info('child bindings')

  const all = text()
  for (const secret of ['S-deep-token', 'S-array-password', 'S-array-secret', 'S-header-bearer', 'S-api-key', 'S-cookie', 'S-jwt-secret', 'S-access-token', 'S-child-binding']) {
    t.notOk(all.includes(secret), `${secret} is censored`)
  }
  const first = entries()[0] as { docId: string, a: { b: { c: { token: string } } } }
  t.equal(first.docId, 'keep-me', 'other fields stay')
  t.equal(first.a.b.c.token, '[redacted]', 'the field is kept, its value censored')
  t.equal((entries()[1] as { users: Array<{ name: string }> }).users[0]!.name, 'ada')
})

t.test('token values inside strings (URLs, messages, errors) are cut', async t => {
  const { log, text, entries } = captured()
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA'
  log.info({ url: 'ws://host/ws/document/d?doc=1&token=S-query-token&x=2' }, 'a URL field')
  log.info('GET /ws/document/d?token=S-in-message failed')
  log.info({ deep: { urls: ['https://auth.example/validate?access_token=S-array-url'] } }, 'URL in an array')
  log.error({ err: new Error('fetch http://jwks.example/keys?token=S-error-message failed') }, 'an error')
  log.error(new Error('upstream said Bearer S-bearer-in-error'))
  log.info({ upstream: new URL('https://u:S-url-password@redis.example:6379/?key=S-url-key') }, 'a URL object')
  log.info(`token pasted raw: ${jwt}`)

  const all = text()
  for (const secret of ['S-query-token', 'S-in-message', 'S-array-url', 'S-error-message', 'S-bearer-in-error', 'S-url-password', 'S-url-key', jwt.split('.')[2]!]) {
    t.notOk(all.includes(secret), `${secret.slice(0, 24)} is cut`)
  }
  const first = entries()[0] as { url: string }
  t.equal(first.url, 'ws://host/ws/document/d?doc=1&token=[redacted]&x=2', 'the rest of the URL stays readable')
  const fromError = entries().find(e => e.msg === 'upstream said Bearer [redacted]')
  t.ok(fromError, 'log.error(err) keeps its message (scrubbed) as msg')
  t.match((fromError as { err: { stack: string } }).err.stack, /Error: upstream said Bearer \[redacted\]/, 'and its stack, scrubbed')
})

t.test('the real process logs its auth service URL with the token in it cut', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  // Some auth services take an API key in the query; the start-up log names the URL without it.
  const server = await spawnServer({ JWT_SECRET: undefined, AUTH_SERVICE_URL: 'http://127.0.0.1:9/validate?token=S-service-api-key&v=1', DATA_DIR: dataDir })
  server.kill('SIGTERM')
  await server.exited
  const output = server.output.join('')
  t.notOk(output.includes('S-service-api-key'), 'the key is not in the output')
  t.match(output, /"authSource":"http:\/\/127\.0\.0\.1:9\/validate\?token=\[redacted\]&v=1"/, 'the URL is logged, censored')
})

t.test('passwords with slashes or @ in URLs, and Token authorization values, are cut too', async t => {
  const { redactString } = await import('../src/log/redact.js')
  const line = redactString('connecting to redis://:ab/cd+ef==@cache.internal:6379 and http://user:p@ss@host/x with Authorization: Token s3cr3tvalue')
  t.notMatch(line, /ab\/cd/, 'a base64 password with a slash')
  t.notMatch(line, /p@ss|ss@host/, 'a password with an @')
  t.notMatch(line, /s3cr3tvalue/, 'a Token scheme value')
  t.match(line, /cache\.internal:6379/, 'the host stays readable')
})
