import t from 'tap'
import { connectSynced } from './helpers/clients.js'
import { metricValue, scrape } from './helpers/metrics.js'
import { upgradeStatus } from './helpers/raw-socket.js'
import { startTestServer } from './helpers/server.js'
import { signToken } from './helpers/tokens.js'
import { waitFor } from './helpers/wait.js'

const value = metricValue

t.test('/metrics counters move as expected during a short load', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const before = (await scrape(ts.port)).text
  t.equal(value(before, 'collab_connections'), 0)

  await upgradeStatus(`${ts.url}/m?token=bad`)
  const a = await connectSynced(ts.url, 'm', token)
  const b = await connectSynced(ts.url, 'm', token)
  for (let i = 0; i < 100; i++) a.doc.getArray('x').push([i])
  await waitFor(() => b.doc.getArray('x').length === 100, 'delivery')
  // A flush takes its documents off the pending list before its write completes: wait for the
  // write's own observation instead.
  await waitFor(async () => value((await scrape(ts.port)).text, 'collab_store_flush_seconds_count') >= 1, 'a flush completed')

  const during = (await scrape(ts.port)).text
  t.equal(value(during, 'collab_connections'), 2, 'open connections')
  t.equal(value(during, 'collab_documents_loaded'), 1, 'documents loaded')
  t.ok(value(during, 'collab_messages_in_total{kind="sync-update"}') >= 100, 'updates in')
  t.ok(value(during, 'collab_bytes_in_total{kind="sync-update"}') > 0, 'bytes in')
  t.ok(value(during, 'collab_messages_out_total{kind="sync-update"}') >= 100, 'updates out')
  // Timings are sampled (one update in 32).
  t.ok(value(during, 'collab_update_apply_seconds_count') >= 3, 'apply time observed')
  t.ok(value(during, 'collab_fanout_seconds_count') >= 3, 'fan-out time observed')
  t.equal(value(during, 'collab_update_apply_seconds_bucket{le="+Inf"}'), value(during, 'collab_update_apply_seconds_count'), 'the +Inf bucket counts every observation')
  t.ok(value(during, 'collab_update_apply_seconds_sum') > 0, 'apply time summed')
  t.ok(value(during, 'collab_store_flush_seconds_count') >= 1, 'flushes observed')
  t.equal(value(during, 'collab_upgrades_total{status="101"}'), 2, 'upgrades')
  t.equal(value(during, 'collab_auth_failures_total{reason="invalid"}'), 1, 'auth failures by reason')
  t.match(during, /collab_process_resident_memory_bytes/, 'process metrics')

  a.destroy(); b.destroy()
  await waitFor(async () => value((await scrape(ts.port)).text, 'collab_connections') === 0, 'connections back to 0')
  const after = (await scrape(ts.port)).text
  t.ok(Object.keys(after).length > 0)
  t.ok(after.split('\n').some(l => l.startsWith('collab_closes_total{code=')), 'closes by code')
})

t.test('event-loop metrics: utilization and delay, without a 100 Hz timer; a stall shows up', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const first = (await scrape(ts.port)).text
  t.match(first, /^collab_nodejs_eventloop_lag_seconds /m, 'the scrape-time lag gauge stays')
  t.notMatch(first, /collab_nodejs_eventloop_lag_p99_seconds/, "prom-client's timer-fed delay gauges are replaced")
  const utilization = value(first, 'collab_event_loop_utilization')
  t.ok(utilization >= 0 && utilization <= 1, `utilization ${utilization} is a share`)

  // The server runs in this process: blocking this thread blocks its event loop.
  const until = performance.now() + 350
  while (performance.now() < until) { /* a 350 ms stall */ }
  await waitFor(async () => {
    const text = (await scrape(ts.port)).text
    return value(text, 'collab_event_loop_delay_seconds_count') - value(text, 'collab_event_loop_delay_seconds_bucket{le="0.25"}') >= 1
  }, 'the stall observed as a delay over 250 ms')
  const after = (await scrape(ts.port)).text
  t.ok(value(after, 'collab_event_loop_delay_seconds_sum') >= 0.25, 'delay summed')
})

t.test('METRICS_TOKEN guards /metrics', async t => {
  const ts = await startTestServer({ METRICS_TOKEN: 'scrape-secret' })
  t.teardown(ts.close)
  t.equal((await scrape(ts.port)).status, 401)
  t.equal((await scrape(ts.port, 'wrong')).status, 401)
  t.equal((await scrape(ts.port, 'scrape-secret')).status, 200)
})

t.test('cluster mode: envelopes and the lag of peer updates are counted', async t => {
  const { startRedis } = await import('./helpers/redis.js')
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const nodes = [
    await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'metrics-a' }),
    await startTestServer({ REDIS_URL: redis.url, NODE_ID: 'metrics-b' })
  ]
  t.teardown(async () => { for (const node of nodes) await node.close() })
  const token = await signToken()
  const a = await connectSynced(nodes[0]!.url, 'lag', token)
  const b = await connectSynced(nodes[1]!.url, 'lag', token)
  t.teardown(() => { a.destroy(); b.destroy() })
  for (let i = 0; i < 20; i++) a.doc.getArray('x').push([i])
  await waitFor(() => b.doc.getArray('x').length === 20, 'delivery across nodes')
  const sender = (await scrape(nodes[0]!.port)).text
  const receiver = (await scrape(nodes[1]!.port)).text
  t.ok(value(sender, 'collab_bridge_published_total') >= 20, 'updates published to the other node')
  t.ok(value(receiver, 'collab_bridge_received_total') >= 20, 'updates received from the other node')
  const lagCount = value(receiver, 'collab_bridge_lag_seconds_count')
  t.ok(lagCount >= 20, `lag observed for every peer update (${lagCount})`)
  t.equal(value(receiver, 'collab_bridge_lag_seconds_bucket{le="+Inf"}'), lagCount, 'the +Inf bucket counts every observation')
  t.ok(value(receiver, 'collab_bridge_lag_seconds_bucket{le="1"}') <= lagCount, 'buckets are cumulative')
})
