/**
 * The server as it ships: `npm start` and the Docker image run the bundle `npm run build` makes
 * (scripts/bundle-server.mjs, into dist/bundle/) with the shipped node flags, while the other
 * tests run src/main.ts through tsx (but for test/local-cluster.test.ts, whose nodes run the bundle
 * too). This file runs the bundle in each configuration whose code loads apart from the start-up:
 * the PostgreSQL store and cluster mode (chunks loaded on first use), the state worker's thread (an
 * entry of its own, found by its URL), the playground's files and the development token
 * (development mode), a public key and a JWKS (jose's key import and remote key set). The build
 * itself refuses a bundle that holds a development dependency or CommonJS's __dirname.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { SERVER_ENTRY } from '../scripts/server-node-flags.js'
import { spawnServer, type ServerProcess } from './helpers/process.js'
import { stockProvider } from './helpers/providers.js'
import { startRedis } from './helpers/redis.js'
import { tempDir, type TestEnv } from './helpers/server.js'
import { STORE_KINDS, stopStoreServers } from './helpers/store-kinds.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

t.teardown(stopStoreServers)

/** The newest modification time of a file under `dir`. */
function newest (dir: string): number {
  return Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map(entry => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? newest(path) : statSync(path).mtimeMs
  }))
}

// Run alone after an edit, this file would otherwise test the bundle of an older src/.
if (!existsSync(SERVER_ENTRY) || statSync(SERVER_ENTRY).mtimeMs < newest('src')) {
  throw new Error(`${SERVER_ENTRY} is missing or older than src/: run \`npm run build\` first (npm test does)`)
}

async function shipped (t: Test, env: TestEnv): Promise<ServerProcess> {
  const node = await spawnServer(env, { shipped: true })
  t.teardown(async () => { node.kill('SIGKILL'); await node.exited })
  return node
}

/** A stock client (y-websocket 3.1.0) of `docId`, synced. */
async function person (t: Test, node: ServerProcess, docId: string, token: string): Promise<ReturnType<typeof stockProvider>> {
  const client = stockProvider('3.1.0', node.url, docId, { token })
  t.teardown(() => { client.provider.destroy(); client.doc.destroy() })
  await waitFor(() => client.provider.synced, `synced on port ${node.port}`)
  return client
}

async function api (node: ServerProcess, method: string, path: string, token: string, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(`http://127.0.0.1:${node.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, json: (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text }
}

for (const kind of STORE_KINDS) {
  t.test(`${kind.name}: edits sync and survive a restart, a version reads through the worker thread, metrics scrape`, async t => {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    const env = await kind.env(dataDir)
    const token = await signToken({ sub: 'writer' })

    const node = await shipped(t, env)
    const alice = await person(t, node, 'shipped-doc', token)
    const bob = await person(t, node, 'shipped-doc', token)
    alice.doc.getText('body').insert(0, 'written to the bundle')
    await waitFor(() => bob.doc.getText('body').toString() === 'written to the bundle', 'the other client has the edit')

    const version = await api(node, 'POST', '/documents/shipped-doc/versions', token, { label: 'bundled' })
    t.equal(version.status, 201, 'a named version')
    const json = await api(node, 'GET', `/documents/shipped-doc/versions/${String(version.json.id)}/json`, token)
    t.equal(json.status, 200, 'its JSON, computed on the state worker thread')
    t.match(JSON.stringify(json.json), /written to the bundle/)
    const metrics = await fetch(`http://127.0.0.1:${node.port}/metrics`)
    t.equal(metrics.status, 200)
    t.match(await metrics.text(), /^collab_connections 2$/m, 'metrics count the two connections')

    node.kill('SIGTERM')
    t.equal(await node.exited, 0, 'a clean shutdown')
    const again = await shipped(t, env)
    const carol = await person(t, again, 'shipped-doc', token)
    t.equal(carol.doc.getText('body').toString(), 'written to the bundle', 'loaded from the store after the restart')
  })
}

t.test('cluster mode: two nodes over Redis bridge an edit', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const dirs = [tempDir(), tempDir()]
  t.teardown(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) })
  const token = await signToken({ sub: 'writer' })
  const [one, two] = await Promise.all(dirs.map(async (dir, i) => await shipped(t, { DATA_DIR: dir, REDIS_URL: redis.url, NODE_ID: `shipped-${i + 1}` })))
  const alice = await person(t, one!, 'bridged-doc', token)
  const bob = await person(t, two!, 'bridged-doc', token)
  alice.doc.getText('body').insert(0, 'across nodes')
  await waitFor(() => bob.doc.getText('body').toString() === 'across nodes', 'the edit reached the other node')
})

t.test('development mode: the playground page and its script, a development token that connects', async t => {
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const node = await shipped(t, { DATA_DIR: dataDir, JWT_SECRET: undefined })
  const page = await fetch(`http://127.0.0.1:${node.port}/`)
  t.equal(page.status, 200, 'the playground')
  const script = /src="(\/static\/playground\.js\?v=[0-9a-f]+)"/.exec(await page.text())?.[1]
  t.ok(script, 'the page links its script')
  t.equal((await fetch(`http://127.0.0.1:${node.port}${script ?? '/'}`)).status, 200, 'the script is served from dist/web/')
  const dev = await (await fetch(`http://127.0.0.1:${node.port}/dev/token?user=alice`)).json() as { token: string }
  await person(t, node, 'dev-doc', dev.token)
})

t.test('a public key: a token signed with its private key connects', async t => {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const node = await shipped(t, { DATA_DIR: dataDir, JWT_SECRET: undefined, JWT_PUBLIC_KEY: await exportSPKI(publicKey), JWT_ALGORITHMS: 'ES256' })
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('key-user').setExpirationTime('1h').sign(privateKey)
  await person(t, node, 'key-doc', token)
})

t.test('a JWKS: a token signed with its key connects', async t => {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...(await exportJWK(publicKey)), kid: 'shipped-1', alg: 'RS256', use: 'sig' }
  const keys = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [jwk] }))
  })
  await new Promise<void>(resolve => keys.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { keys.close() })
  const address = keys.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const dataDir = tempDir()
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const node = await shipped(t, {
    DATA_DIR: dataDir,
    JWT_SECRET: undefined,
    JWKS_URL: `http://127.0.0.1:${address.port}/jwks.json`,
    JWT_ISSUER: 'https://issuer.test',
    JWT_AUDIENCE: 'collab'
  })
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'shipped-1' })
    .setSubject('jwks-user').setIssuer('https://issuer.test').setAudience('collab').setExpirationTime('1h').sign(privateKey)
  await person(t, node, 'jwks-doc', token)
})
