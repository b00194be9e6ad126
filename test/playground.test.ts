import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import uWS from 'uWebSockets.js'
import type { InspectedNode } from '../playground/src/inspect-types.js'
import { createLogger } from '../src/log/logger.js'
import { registerPlaygroundRoutes } from '../src/playground/routes.js'
import type { NodeSnapshot } from '../src/server/node-snapshot.js'
import { awarenessFrame } from './helpers/awareness.js'
import { browserUnavailable, ensureWebBundle, launchBrowser, openPlayground, saveArtifact, sideBySide, type PlaygroundPage, type TestBrowser } from './helpers/browser.js'
import { freePort } from './helpers/ports.js'
import { rawClient } from './helpers/raw-socket.js'
import { spawnServer } from './helpers/process.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer, tempDir, type TestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

// Compile-time check: the inspector reads exactly what the server's snapshot provides.
const snapshotFitsInspector = (node: NodeSnapshot): InspectedNode => node
void snapshotFitsInspector

const ROOT = fileURLToPath(new URL('..', import.meta.url))
ensureWebBundle()

const get = async (base: string, path: string, headers: Record<string, string> = {}): Promise<Response> => await fetch(`${base}${path}`, { headers })
const base = (server: TestServer): string => `http://127.0.0.1:${server.port}`

t.test('routes: playground switchable, inspector page, dev token only in development mode', async t => {
  // Development mode is "no authentication configured": the server generates its own secret.
  const dev = await startTestServer({ JWT_SECRET: undefined, NODE_ID: 'dev-node' })
  const prod = await startTestServer({})
  const devNoPlayground = await startTestServer({ JWT_SECRET: undefined, PLAYGROUND: 'false' })
  const prodWithPlayground = await startTestServer({ PLAYGROUND: 'true' })
  t.teardown(async () => { for (const s of [dev, prod, devNoPlayground, prodWithPlayground]) await s.close() })

  // Development mode: the playground is on by default and gets its tokens from /dev/token.
  const page = await get(base(dev), '/')
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(page.headers.get('content-security-policy'), /script-src 'self'/)
  const html = await page.text()
  t.match(html, /"devMode":true/)
  t.match(html, /"nodeId":"dev-node"/)
  const script = /src="(\/static\/playground\.js\?v=[0-9a-f]+)"/.exec(html)?.[1]
  t.ok(script, 'page links the bundle with a content hash')
  const bundle = await get(base(dev), script!, { 'accept-encoding': 'gzip' })
  t.equal(bundle.status, 200)
  t.match(bundle.headers.get('content-type'), /^text\/javascript/)
  t.match(bundle.headers.get('cache-control'), /immutable/)
  t.ok((await bundle.text()).length > 100_000, 'bundle holds the editor, Yjs and the provider')
  t.equal((await get(base(dev), '/static/styles.css')).status, 200)
  t.equal((await get(base(dev), '/static/nope.js')).status, 404)

  const devToken = await (await get(base(dev), '/dev/token?user=alice')).json() as { token: string, userId: string, admin: boolean }
  t.equal(devToken.userId, 'alice')
  t.equal(devToken.admin, false)
  const devAdmin = await (await get(base(dev), '/dev/token?user=ops&admin=1')).json() as { token: string, admin: boolean }
  t.equal(devAdmin.admin, true)

  // The inspector page is plain HTML; its data needs an admin token.
  const inspect = await get(base(dev), '/inspect')
  t.equal(inspect.status, 200)
  t.match(await inspect.text(), /\/static\/inspect\.js\?v=/)
  t.equal((await get(base(dev), '/inspect.json')).status, 401, 'no token')
  t.equal((await get(base(dev), '/inspect.json', { authorization: `Bearer ${devToken.token}` })).status, 403, 'not an admin')
  const data = await (await get(base(dev), '/inspect.json', { authorization: `Bearer ${devAdmin.token}` })).json() as { self: NodeSnapshot, nodes: NodeSnapshot[] }
  t.equal(data.self.nodeId, 'dev-node')
  t.equal(data.nodes.length, 1)

  // Not in development mode (an auth key is configured): no playground, no token endpoint.
  t.equal((await get(base(prod), '/')).status, 404, 'GET / is off outside development mode')
  t.equal((await get(base(prod), '/dev/token?user=mallory')).status, 404, 'no token endpoint')
  t.equal((await get(base(prod), '/dev/token?user=mallory&admin=1')).status, 404, 'no admin token endpoint')
  t.equal((await get(base(prod), '/static/playground.js')).status, 404, 'no playground bundle either')
  t.equal((await get(base(prod), '/inspect')).status, 200, 'the inspector page is served (its data is guarded)')
  t.match(await (await get(base(prod), '/inspect')).text(), /"devMode":false/)
  t.equal((await get(base(prod), '/static/inspect.js')).status, 200)

  // PLAYGROUND=false switches the page off even in development mode.
  t.equal((await get(base(devNoPlayground), '/')).status, 404)
  t.equal((await get(base(devNoPlayground), '/dev/token?user=a')).status, 200, 'the token endpoint follows DEV_MODE, not PLAYGROUND')

  // PLAYGROUND=true with real auth: the page asks for a token instead of fetching one.
  const realAuthPage = await get(base(prodWithPlayground), '/')
  t.equal(realAuthPage.status, 200)
  t.match(await realAuthPage.text(), /"devMode":false/)
  t.equal((await get(base(prodWithPlayground), '/dev/token')).status, 404)
})

t.test('npm start with nothing configured serves the playground and the dev token endpoint', async t => {
  const dataDir = tempDir()
  const proc = await spawnServer({ JWT_SECRET: undefined, DATA_DIR: dataDir })
  t.teardown(async () => {
    proc.kill('SIGTERM')
    await proc.exited
    rmSync(dataDir, { recursive: true, force: true })
  })
  const url = `http://127.0.0.1:${proc.port}`
  t.equal((await get(url, '/')).status, 200)
  t.equal((await get(url, '/dev/token?user=newcomer')).status, 200)
})

t.test('an unbuilt bundle gets a hint, not a broken page', async t => {
  const app = uWS.App()
  registerPlaygroundRoutes(app, { playground: true, devSecret: null, devMode: false, nodeId: 'n', log: createLogger('silent'), webDir: join(ROOT, 'does-not-exist') })
  const port = await freePort()
  const socket = await new Promise<uWS.us_listen_socket | false>(resolve => app.listen('127.0.0.1', port, resolve))
  t.ok(socket)
  t.teardown(() => { if (socket !== false) uWS.us_listen_socket_close(socket); app.close() })
  const res = await get(`http://127.0.0.1:${port}`, '/')
  t.equal(res.status, 503)
  t.match(await res.text(), /npm run build/)
})

const unavailable = browserUnavailable()
// In CI the browser must be there (.ci/run installs it); a developer without it gets a skip.
const skip = unavailable !== null && process.env.CI !== 'true' ? unavailable : false

/**
 * Two people on one document, each in their own browser context: they type at the same time and
 * converge, see each other in the presence list and as remote cursors, and Alice's offline
 * round trip lands every edit with an acknowledgement.
 */
async function collaborate (t: Test, browser: TestBrowser, urls: { alice: string, bob: string }, docId: string, adminBase: string,
  tokens: { alice?: string, bob?: string, admin: string }): Promise<{ alice: PlaygroundPage, bob: PlaygroundPage }> {
  const alice = await openPlayground(browser.browser, urls.alice, { doc: docId, user: 'Alice', color: '#4f46e5', ...(tokens.alice === undefined ? {} : { token: tokens.alice }) })
  const bob = await openPlayground(browser.browser, urls.bob, { doc: docId, user: 'Bob', color: '#e11d48', ...(tokens.bob === undefined ? {} : { token: tokens.bob }) })

  await waitFor(async () => (await alice.people()).includes('Bob') && (await bob.people()).includes('Alice'), 'each page lists the other person')
  t.same((await alice.people()).sort(), ['Alice', 'Bob'])
  t.same((await bob.people()).sort(), ['Alice', 'Bob'])

  await alice.type('# Launch notes\n')
  await waitFor(async () => await bob.text() === '# Launch notes\n', 'the heading reaches Bob')

  // Both type at once, at different places (Bob after the heading, Alice at the end).
  await Promise.all([
    alice.type('- Alice: release build is green\n'),
    (async () => {
      await bob.page.locator('.cm-content').click()
      await bob.page.keyboard.press('Control+Home')
      await bob.page.keyboard.press('End')
      await bob.page.keyboard.type('\n- Bob: docs reviewed', { delay: 10 })
    })()
  ])
  const expected = '# Launch notes\n- Bob: docs reviewed\n- Alice: release build is green\n'
  await waitFor(async () => await alice.text() === expected && await bob.text() === expected, 'both pages converge')
  t.equal(await alice.text(), expected)
  t.equal(await bob.text(), expected)
  // What a person sees: the editor shows the text, and the other person's cursor with their name.
  t.match(await bob.page.locator('.cm-content').innerText(), /Alice: release build is green/)
  await bob.page.locator('.cm-ySelectionInfo', { hasText: 'Alice' }).waitFor()
  await alice.page.locator('.cm-ySelectionInfo', { hasText: 'Bob' }).waitFor()

  // Offline round trip: Alice disconnects, both keep editing, Alice reconnects.
  await alice.page.locator('label.switch').click()
  await alice.page.locator('[data-testid=status][data-state=offline]').waitFor()
  t.equal(await alice.page.evaluate(() => (globalThis as unknown as { playground: { connected: boolean } }).playground.connected), false, 'provider disconnected')
  await waitFor(async () => !(await bob.people()).includes('Alice'), 'Bob sees Alice leave')

  await alice.type('- Alice (offline): changelog drafted\n')
  await alice.type('- Alice (offline): screenshots updated\n')
  t.ok(Number(await alice.page.locator('[data-testid=recorded]').textContent()) > 0, 'offline edits are recorded')
  await bob.page.locator('.cm-content').click()
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type('- Bob: tagged v1.0 meanwhile\n', { delay: 10 })
  await sleep(300)
  t.notMatch(await bob.text(), /offline/, 'Bob does not get offline edits')
  t.notMatch(await alice.text(), /tagged/, 'Alice does not get Bob\'s edits while offline')

  await alice.page.locator('label.switch').click()
  const ack = alice.page.locator('[data-testid=acks] li[data-batch-id]').first()
  await ack.waitFor()
  const outcome = await ack.getAttribute('data-outcome')
  const batchId = await ack.getAttribute('data-batch-id')
  t.equal(outcome, 'applied', 'the server acknowledged the batch as applied')
  t.match(batchId, /^[0-9a-f]{24}$/)
  t.equal(await alice.page.locator('[data-testid=recorded]').textContent(), '0')
  t.equal(await alice.page.locator('[data-testid=pending]').textContent(), '0')
  t.match(await ack.textContent(), /applied/, 'the acknowledgement is on the page')

  const lines = ['# Launch notes', '- Bob: docs reviewed', '- Alice: release build is green', '- Alice (offline): changelog drafted',
    '- Alice (offline): screenshots updated', '- Bob: tagged v1.0 meanwhile']
  const hasAll = (text: string): boolean => lines.every(line => text.includes(line))
  await waitFor(async () => { const a = await alice.text(); return hasAll(a) && a === await bob.text() }, 'every edit lands on both pages')
  t.ok(hasAll(await bob.text()), 'Bob has every offline edit')
  await alice.page.locator('[data-testid=status][data-state=synced]').waitFor()
  await waitFor(async () => (await bob.people()).includes('Alice'), 'Alice is back in Bob\'s presence list')

  // Acknowledged means stored: the server's copy has everything.
  const json = await (await get(adminBase, `/admin/documents/${docId}/json`, { authorization: `Bearer ${tokens.admin}` })).json() as { codemirror?: string }
  t.ok(hasAll(json.codemirror ?? ''), 'the server holds every edit')

  t.same(alice.errors, [], 'no errors on Alice\'s page')
  t.same(bob.errors, [], 'no errors on Bob\'s page')
  return { alice, bob }
}

async function screenshot (browser: TestBrowser, pages: { alice: PlaygroundPage, bob: PlaygroundPage }, captions: [string, string], name: string): Promise<string> {
  // Park both cursors where the labels read well.
  for (const p of [pages.alice, pages.bob]) await p.page.mouse.move(0, 0)
  const png = await sideBySide(browser.browser, [
    { png: await pages.alice.page.screenshot(), caption: captions[0] },
    { png: await pages.bob.page.screenshot(), caption: captions[1] }
  ])
  return saveArtifact(name, png)
}

/** UPDATE_README_SCREENSHOTS=1 refreshes the copies in docs/ that the README shows. */
function publishForReadme (artifact: string, docsName: string): void {
  if (process.env.UPDATE_README_SCREENSHOTS !== '1') return
  mkdirSync(join(ROOT, 'docs'), { recursive: true })
  copyFileSync(artifact, join(ROOT, 'docs', docsName))
}

t.test('browser: two people edit one document, see each other, and go offline and back', { skip, timeout: 120_000 }, async t => {
  // Development mode (no auth configured): the pages fetch their tokens from /dev/token.
  const server = await startTestServer({ JWT_SECRET: undefined, NODE_ID: 'node-1', LOG_LEVEL: 'warn' })
  t.teardown(server.close)
  const browser = await launchBrowser()
  t.teardown(browser.close)

  const admin = (await (await get(base(server), '/dev/token?user=ops&admin=1')).json() as { token: string }).token
  const pages = await collaborate(t, browser, { alice: base(server), bob: base(server) }, 'launch-notes', base(server), { admin })
  await screenshot(browser, pages, ['Alice · node-1', 'Bob · node-1'], 'playground.png')

  // The inspector, fetching its own development admin token, shows the document and both people.
  const inspector = await browser.browser.newPage({ viewport: { width: 1280, height: 640 } })
  const errors: string[] = []
  inspector.on('pageerror', err => errors.push(err.message))
  await inspector.goto(`${base(server)}/inspect`)
  const row = inspector.locator('[data-testid=documents] tr[data-doc="launch-notes"]')
  await row.waitFor()
  t.match(await row.textContent(), /launch-notes/)
  await waitFor(async () => (await row.locator('td').allTextContents()).slice(1, 4).join(' ') === 'node-1 2 2', 'two connections and two participants')
  // Rates appear from the second sample on.
  await waitFor(async () => !/…/.test(await inspector.locator('[data-testid=tile-in]').textContent() ?? '…'), 'message rate computed', 10_000)
  saveArtifact('inspector.png', await inspector.screenshot())
  t.same(errors, [])
})

t.test('browser: the same against a two-node cluster, each person on another node', { skip, timeout: 150_000 }, async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  // Two nodes share one JWT_SECRET, so this is not development mode (that signs with a secret of
  // its own per process): PLAYGROUND=true serves the page, and each person's token is in the address.
  const env = { PLAYGROUND: 'true', REDIS_URL: redis.url, BRIDGE_HEARTBEAT_MS: '200', LOG_LEVEL: 'warn' }
  const node1 = await startTestServer({ ...env, NODE_ID: 'node-1' })
  const node2 = await startTestServer({ ...env, NODE_ID: 'node-2' })
  t.teardown(async () => { await node1.close(); await node2.close() })
  const browser = await launchBrowser()
  t.teardown(browser.close)

  const tokens = {
    alice: await signToken({ sub: 'alice' }),
    bob: await signToken({ sub: 'bob' }),
    admin: await signToken({ sub: 'ops', extra: { admin: true } })
  }
  const pages = await collaborate(t, browser, { alice: base(node1), bob: base(node2) }, 'cluster-notes', base(node2), tokens)
  t.equal(await pages.alice.page.locator('[data-testid=node-id]').textContent(), 'node-1')
  t.equal(await pages.bob.page.locator('[data-testid=node-id]').textContent(), 'node-2')
  publishForReadme(await screenshot(browser, pages, ['Alice · node-1', 'Bob · node-2'], 'playground-cluster.png'), 'playground.png')

  // The inspector on one node lists both nodes and where the document is loaded.
  const inspector = await browser.browser.newPage({ viewport: { width: 1280, height: 640 } })
  await inspector.goto(`${base(node1)}/inspect#token=${tokens.admin}`)
  await waitFor(async () => await inspector.locator('[data-testid=nodes] tr[data-node]').count() === 2, 'both nodes listed', 15_000)
  await inspector.locator('[data-testid=documents] tr[data-doc="cluster-notes"][data-node="node-2"]').waitFor({ timeout: 15_000 })
  await waitFor(async () => !/…/.test(await inspector.locator('[data-testid=nodes] tbody').textContent() ?? '…'), 'rates of both nodes', 15_000)
  publishForReadme(saveArtifact('inspector-cluster.png', await inspector.screenshot()), 'inspector.png')
})

t.test('browser: with real authentication the playground asks for a token, and a refused one is explained', { skip, timeout: 60_000 }, async t => {
  const server = await startTestServer({ PLAYGROUND: 'true', LOG_LEVEL: 'warn', JWT_CLOCK_TOLERANCE_SECONDS: '0' })
  t.teardown(server.close)
  const browser = await launchBrowser()
  t.teardown(browser.close)
  const page = await browser.browser.newPage({ viewport: { width: 1000, height: 700 } })
  page.setDefaultTimeout(15_000)

  await page.goto(`${base(server)}/#doc=private&token=not-a-jwt`)
  await page.locator('[data-testid=status][data-state=error]').waitFor()
  t.match(await page.locator('[data-testid=status]').textContent(), /check the token/)
  t.ok(await page.locator('#token-panel').isVisible(), 'the page asks for another token')
  t.equal(await page.evaluate(() => (globalThis as unknown as { playground: { connected: boolean } }).playground.connected), false)

  await page.locator('#token-input').fill(await signToken({ sub: 'carol', docs: { private: 'read-write' } }))
  await page.locator('#token-form button').click()
  await page.locator('[data-testid=status][data-state=synced]').waitFor()
  t.equal(await page.locator('#user-id').textContent(), 'carol', 'the user id is the token subject')
  t.notOk(await page.locator('#token-panel').isVisible())

  // A token that expires while connected: the server closes with 4401 and the page says so.
  await page.locator('#change-token').click()
  // Tokens with less than 5 s left are refused at the upgrade (401), so this one lives a little longer.
  await page.locator('#token-input').fill(await signToken({ sub: 'carol', docs: { private: 'read-write' }, expiresIn: 8 }))
  await page.locator('#token-form button').click()
  await page.locator('[data-testid=status][data-state=synced]').waitFor()
  await page.locator('[data-testid=status][data-state=error]').waitFor({ timeout: 20_000 })
  t.match(await page.locator('[data-testid=status]').textContent(), /Token expired/)
  t.ok(await page.locator('#token-panel').isVisible(), 'the page asks for a new token')
})

t.test('browser: a hostile presence state cannot style or break the people list', { skip, timeout: 60_000 }, async t => {
  const server = await startTestServer({ JWT_SECRET: undefined, LOG_LEVEL: 'warn' })
  t.teardown(server.close)
  const browser = await launchBrowser()
  t.teardown(browser.close)
  const alice = await openPlayground(browser.browser, base(server), { doc: 'hostile-presence', user: 'Alice' })
  // Another client announces a name that is not text and a colour that is not a colour.
  const token = (await (await get(base(server), '/dev/token?user=mallory')).json() as { token: string }).token
  const mallory = rawClient(`ws://127.0.0.1:${server.port}/ws/document/hostile-presence?token=${token}`)
  await mallory.opened
  mallory.ws.send(awarenessFrame([[777, 1, JSON.stringify({ user: { name: { toString: 'x' }, color: 'red;background-image:url(/dev/token)' } })]]))
  await waitFor(async () => (await alice.people()).length === 2, 'the page lists both')
  t.same((await alice.people()).sort(), ['Alice', 'Anonymous'], 'a name that is not text shows as Anonymous')
  const styles = await alice.page.locator('[data-testid=people] li[data-name] .avatar').evaluateAll(items => items.map(item => item.getAttribute('style') ?? ''))
  t.notOk(styles.some(s => s.includes('url(')), `no injected style (${styles.join(' | ')})`)
  t.same(alice.errors, [], 'no errors on the page')
  mallory.ws.close()
})

t.test('browser: the history panel saves a version, previews what changed since, and restores it for everyone', { skip, timeout: 90_000 }, async t => {
  const server = await startTestServer({ JWT_SECRET: undefined, NODE_ID: 'node-1', LOG_LEVEL: 'warn' })
  t.teardown(server.close)
  const browser = await launchBrowser()
  t.teardown(browser.close)
  const alice = await openPlayground(browser.browser, base(server), { doc: 'history-notes', user: 'Alice', color: '#4f46e5' })
  const bob = await openPlayground(browser.browser, base(server), { doc: 'history-notes', user: 'Bob', color: '#e11d48' })
  const first = 'Plan: ship on Friday\nOwner: Alice\n'
  await alice.type(first)
  await waitFor(async () => await bob.text() === first, 'Bob has the first draft')

  await alice.page.locator('[data-testid=version-label]').fill('First draft')
  await alice.page.locator('[data-testid=save-version]').click()
  const saved = alice.page.locator('[data-testid=versions] li[data-reason=named]', { hasText: 'First draft' })
  await saved.waitFor()
  t.match(await saved.textContent(), /First draft.*Named · alice/s, 'listed with its label, reason and author')

  // Bob rewrites part of it; his page lists the version too (it polls).
  await bob.page.locator('.cm-content').click()
  await bob.page.keyboard.press('Control+Home')
  await bob.page.keyboard.press('Shift+End')
  await bob.page.keyboard.type('Plan: ship on Monday', { delay: 10 })
  await waitFor(async () => (await alice.text()).startsWith('Plan: ship on Monday'), 'Alice sees Bob\'s change')
  await bob.page.locator('[data-testid=versions] li', { hasText: 'First draft' }).waitFor({ timeout: 10_000 })

  await saved.click()
  const preview = alice.page.locator('[data-testid=preview-text]')
  await preview.locator('del').first().waitFor()
  t.match(await preview.locator('del').allTextContents(), ['Friday'], 'what the version had that is gone since')
  t.match((await preview.locator('ins').allTextContents()).join(''), /Monday/, 'what was added since')
  t.match(await preview.innerText(), /Owner: Alice/, 'with the unchanged text around it')
  saveArtifact('playground-history.png', await alice.page.screenshot({ fullPage: true }))

  await alice.page.locator('[data-testid=restore-version]').click()
  await waitFor(async () => await alice.text() === first && await bob.text() === first, 'both editors show the restored version, without a reload')
  await alice.page.locator('[data-testid=versions] li[data-reason=before-restore]').waitFor()
  t.equal(await alice.status(), 'synced', 'still connected')
  t.same(alice.errors, [])
  t.same(bob.errors, [])

  // The inspector lists the document's versions.
  const inspector = await browser.browser.newPage({ viewport: { width: 1280, height: 800 } })
  await inspector.goto(`${base(server)}/inspect`)
  await inspector.locator('[data-testid=documents] tr[data-doc="history-notes"]').click()
  await inspector.locator('[data-testid=doc-versions] tr[data-reason=before-restore]').waitFor()
  t.match(await inspector.locator('[data-testid=doc-versions] tr[data-reason=named]').textContent(), /First draft/)
})
