/**
 * The bench runs end to end: a tiny steady scenario against the real server (from src, via tsx)
 * with real generator worker processes. Checks only that the result is well formed; figures and
 * timings belong to the bench, not to tests.
 */
import t from 'tap'
import { SCENARIOS } from '../bench/scenarios/index.js'
import type { ScenarioContext } from '../bench/scenarios/types.js'

/** 2 documents × 4 clients for 2 s against our server from src, without waiting for a quiet machine. */
function tinyLoad (): ScenarioContext {
  return {
    flags: { compare: false, docs: 2, clients: 4, rate: 5, duration: 2, warmup: 0.5, workers: 1, quietWait: 0 },
    targetOptions: { build: 'src', env: {} },
    log: () => {}
  }
}

t.test('a tiny steady scenario delivers edits and ends consistent', async t => {
  const scenario = SCENARIOS.steady
  t.ok(scenario, 'the steady scenario exists')
  const ctx = tinyLoad()
  const run = await scenario!.run(ctx, { kind: 'ours', nodes: 1 })
  t.equal(run.error, undefined, 'no error')
  t.equal(run.target, 'ours')
  t.ok((run.metrics.delivered_per_s ?? 0) > 0, 'edits were delivered')
  t.ok((run.metrics.delivery_ratio ?? 0) > 0, 'delivery ratio is reported')
  t.equal(run.metrics.consistency_ok, 1, 'writer and observer documents are equal')
  t.type(run.metrics.latency_p99_ms, 'number', 'latency percentiles are reported')
  t.type(run.metrics.cpu_user_s_per_1k, 'number', 'server CPU per delivered edit is reported')
})

t.test('a tiny presence scenario delivers moves to the others, and the clients echo them', async t => {
  const run = await SCENARIOS.presence!.run(tinyLoad(), { kind: 'ours', nodes: 1 })
  t.equal(run.error, undefined, 'no error')
  t.ok((run.metrics.moves_per_s ?? 0) > 0, 'cursors moved')
  t.ok((run.metrics.states_delivered_per_s ?? 0) > 0, 'states were delivered')
  t.ok((run.metrics.echoes_per_s ?? 0) > 0, 'the clients echoed them, as the stock provider does')
  t.equal((run.details as { disconnects: number }).disconnects, 0, 'nobody was disconnected')
  t.type(run.metrics.cpu_user_s_per_1k, 'number', 'server CPU per delivered state is reported')
})

// The bench's clients speak Hocuspocus's framing too (every message led by the document's name,
// the document opened by an authentication message): a peer measured in cross-node runs.
t.test('the same load against Hocuspocus, alone and as two nodes over Redis, delivers and ends consistent', async t => {
  const scenario = SCENARIOS.steady
  const ctx = tinyLoad()
  const single = await scenario!.run(ctx, { kind: 'hocuspocus', nodes: 1 })
  t.equal(single.error, undefined, 'no error')
  t.equal(single.target, 'hocuspocus')
  t.ok((single.metrics.delivered_per_s ?? 0) > 0, 'edits were delivered')
  t.equal(single.metrics.consistency_ok, 1, 'writer and observer documents are equal')
  const cross = SCENARIOS['cross-node']!
  const two = await cross.run({ ...ctx, flags: { ...ctx.flags, nodes: [2] } }, { kind: 'hocuspocus', nodes: 2 })
  t.equal(two.target, 'hocuspocus-2-nodes')
  t.equal(two.metrics.consistency_ok, 1, 'edits crossed between the two Hocuspocus nodes')
  t.type(two.metrics.redis_cpu_s_per_1k, 'number', 'Redis\'s CPU per delivered edit is reported')
})
