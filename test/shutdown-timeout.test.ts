import t from 'tap'
import { connectSynced } from './helpers/clients.js'
import { spawnServer } from './helpers/process.js'
import { startRedis } from './helpers/redis.js'
import { signToken } from './helpers/tokens.js'
import { sleep } from './helpers/wait.js'

// SHUTDOWN_TIMEOUT_MS bounds the shutdown whatever Redis does: a node whose Redis hangs (stopped,
// not refusing: commands wait forever) or is gone still exits in time, and says what it could
// not write.

for (const [how, fault] of [['hangs (SIGSTOP)', 'SIGSTOP'], ['is gone (killed)', 'SIGKILL']] as const) {
  t.test(`a node whose Redis ${how} exits within SHUTDOWN_TIMEOUT_MS (plus a second) of SIGTERM`, async t => {
    const redis = await startRedis()
    t.teardown(async () => {
      if (redis.pid !== undefined) try { process.kill(redis.pid, 'SIGCONT') } catch {}
      await redis.cleanup()
    })
    const node = await spawnServer({ REDIS_URL: redis.url, NODE_ID: 'stuck', SHUTDOWN_TIMEOUT_MS: '2000', FLUSH_INTERVAL_MS: '60000' })
    t.teardown(() => node.kill('SIGKILL'))
    const client = await connectSynced(node.url, 'unsaved', await signToken())
    t.teardown(() => client.destroy())
    client.doc.getText('t').insert(0, 'written while Redis is down')
    await sleep(200)
    if (fault === 'SIGSTOP') process.kill(redis.pid!, 'SIGSTOP')
    else await redis.stop('SIGKILL')
    await sleep(200)
    const started = Date.now()
    node.kill('SIGTERM')
    const code = await node.exited
    const took = Date.now() - started
    t.ok(took < 2000 + 3000, `exited ${took} ms after SIGTERM`)
    t.equal(code, 1, 'with exit code 1: not everything was stored')
    const log = node.output.join('')
    t.match(log, /shutdown (timed out|failed)/, 'the log says the shutdown did not store everything')
    t.match(log, /unwrittenDocuments|some updates could not be stored/, 'and what was left')
  })
}
