import t from 'tap'
import { rawClient, upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

// Connection limits under concurrent upgrades: each upgrade awaits its token's verification and
// the document's load, so a limit read before those awaits let every concurrent upgrade through.

async function openConcurrently (url: string, count: number): Promise<{ opened: Array<ReturnType<typeof rawClient>>, refused: number }> {
  const clients = Array.from({ length: count }, () => rawClient(url))
  const results = await Promise.all(clients.map(async c => await c.opened.then(() => true, () => false)))
  return { opened: clients.filter((_, i) => results[i]), refused: results.filter(ok => !ok).length }
}

t.test('MAX_CONNECTIONS holds against 20 concurrent upgrades, and refused ones leave no slot taken', async t => {
  const ts = await startTestServer({ MAX_CONNECTIONS: '5' })
  t.teardown(ts.close)
  const token = await signToken()
  const { opened, refused } = await openConcurrently(`${ts.url}/many?token=${token}`, 20)
  t.equal(opened.length, 5, 'exactly five opened')
  t.equal(refused, 15)
  t.equal(ts.server.connectionCount, 5)
  for (const c of opened) c.ws.close()
  await waitFor(() => ts.server.connectionCount === 0, 'all closed')
  // Failed upgrades of every kind must give their slot back.
  t.equal((await upgradeStatus(`${ts.url}/many?token=bad`)).status, 401)
  t.equal((await upgradeStatus(`${ts.url}/many?token=${await signToken({ docs: { other: 'read-write' } })}`)).status, 403)
  const again = await openConcurrently(`${ts.url}/many?token=${token}`, 5)
  t.equal(again.opened.length, 5, 'all five slots are free again')
  for (const c of again.opened) c.ws.close()
})

t.test('MAX_CONNECTIONS_PER_DOCUMENT holds against 20 concurrent upgrades to one document', async t => {
  const ts = await startTestServer({ MAX_CONNECTIONS_PER_DOCUMENT: '5' })
  t.teardown(ts.close)
  const token = await signToken()
  const { opened, refused } = await openConcurrently(`${ts.url}/crowded?token=${token}`, 20)
  t.equal(opened.length, 5, 'exactly five opened')
  t.equal(refused, 15)
  const other = await openConcurrently(`${ts.url}/elsewhere?token=${token}`, 3)
  t.equal(other.opened.length, 3, 'another document is not affected')
  for (const c of [...opened, ...other.opened]) c.ws.close()
})
