import t from 'tap'
import WebSocket from 'ws'
import { AddressRateLimit } from '../src/server/address-rate-limit.js'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'

t.test('the bucket: a burst, then the sustained rate; addresses are independent; 0 turns it off', async t => {
  let now = 0
  const limit = new AddressRateLimit({ perSecond: 2, burst: 3, now: () => now })
  t.same([1, 2, 3, 4].map(() => limit.allow('a')), [true, true, true, false], 'a burst of three')
  t.equal(limit.allow('b'), true, 'another address has its own bucket')
  now += 500
  t.equal(limit.allow('a'), true, 'one token back after half a second at 2/s')
  t.equal(limit.allow('a'), false)
  const off = new AddressRateLimit({ perSecond: 0, burst: 1, now: () => now })
  t.ok(Array.from({ length: 100 }, () => off.allow('a')).every(Boolean))
})

t.test('the table of addresses stays bounded', async t => {
  let now = 0
  const limit = new AddressRateLimit({ perSecond: 1, burst: 1, maxAddresses: 10, now: () => now })
  for (let i = 0; i < 1_000; i++) limit.allow(`10.0.${i >> 8}.${i & 255}`)
  t.ok((limit as unknown as { buckets: Map<string, unknown> }).buckets.size <= 10)
  now += 10_000
  t.equal(limit.allow('fresh'), true)
})

t.test('a host opening connections too fast gets 429 with Retry-After; the server serves others', async t => {
  const ts = await startTestServer({ UPGRADE_RATE_LIMIT_PER_SECOND: '1', UPGRADE_RATE_LIMIT_BURST: '5' })
  t.teardown(ts.close)
  const token = await signToken()
  const statuses = []
  for (let i = 0; i < 8; i++) statuses.push((await upgradeStatus(`${ts.url}/flood?token=bad-${i}`)).status)
  t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401], 'the burst is verified (and refused for its bad tokens)')
  t.ok(statuses.slice(5).every(s => s === 429), `then 429 (${statuses.join(', ')})`)
  const refused = await upgradeStatus(`${ts.url}/flood?token=${token}`)
  t.equal(refused.status, 429, 'a good token from the same address waits too')
  t.match(refused.body, /too_many_upgrades/)
  // Another host (another loopback source address) is not affected.
  const other = await new Promise<number>(resolve => {
    const ws = new WebSocket(`${ts.url}/flood?token=${token}`, { localAddress: '127.0.0.2' })
    ws.on('open', () => { ws.close(); resolve(101) })
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('error', () => resolve(0))
  })
  t.equal(other, 101, 'a client from 127.0.0.2 still connects')
})

t.test('loopback peer addresses, as uWS writes them', async t => {
  const { isLoopbackAddress } = await import('../src/playground/loopback-host.js')
  for (const address of ['127.0.0.1', '127.1.2.3', '::1', '0000:0000:0000:0000:0000:0000:0000:0001', '0000:0000:0000:0000:0000:ffff:7f00:0001', '::ffff:127.0.0.1']) {
    t.ok(isLoopbackAddress(address), address)
  }
  for (const address of ['10.0.0.1', '192.168.1.2', '::2', 'fe80:0000:0000:0000:0000:0000:0000:0001', '0000:0000:0000:0000:0000:ffff:0a00:0001', '128.0.0.1']) {
    t.notOk(isLoopbackAddress(address), address)
  }
})
