import t from 'tap'
import { rmSync } from 'node:fs'
import { Redis } from 'ioredis'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { BatchOutcome, BatchRejectedError, ExtensionErrorCode } from '../src/client/index.js'
import { RedisStore } from '../src/persistence/redis-store.js'
import { decodeBatchAckFrame, decodeExtensionErrorFrame, encodeOfflineBatch } from './helpers/batch-frames.js'
import { connectBatchClient, type BatchTestClient } from './helpers/batch-clients.js'
import { connectSynced, waitSynced } from './helpers/clients.js'
import { spawnServer } from './helpers/process.js'
import { rawClient } from './helpers/raw-socket.js'
import { startRedis } from './helpers/redis.js'
import { startTestServer, tempDir } from './helpers/server.js'
import { STORE_KINDS, stopStoreServers } from './helpers/store-kinds.js'
import { signToken } from './helpers/tokens.js'
import { sleep, waitFor } from './helpers/wait.js'

t.teardown(stopStoreServers)

for (const kind of STORE_KINDS) {
  t.test(`${kind.name}: ten clients edit offline, reconnect at once, get durable acks; kill -9 and restart keeps every edit`, async t => {
    const dataDir = tempDir()
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
    // A one-minute write-behind interval: only the acknowledgement's own write (a commit in
    // PostgreSQL, an fsync of LevelDB) can make edits durable.
    const env = { ...await kind.env(dataDir), FLUSH_INTERVAL_MS: '60000' }
    const server = await spawnServer(env)
    t.teardown(() => server.kill('SIGKILL'))
    const token = await signToken()
    const clients: BatchTestClient[] = []
    for (let i = 0; i < 10; i++) clients.push(connectBatchClient(server.url, 'offline-doc', token))
    t.teardown(() => clients.forEach(c => c.destroy()))
    await Promise.all(clients.map(async c => await waitSynced(c)))

    clients.forEach(c => c.provider.disconnect())
    clients.forEach((c, i) => {
      for (let k = 0; k < 300; k++) c.doc.getArray('edits').push([`${i}:${k}`])
      c.doc.getText('t').insert(0, `client ${i} was offline. `)
    })
    t.ok(clients.every(c => c.batches.recordedUpdates === 301), 'every offline edit was recorded')

    const acks = clients.map(async c => await new Promise<number>(resolve => { c.batches.onAck(ack => resolve(ack.outcome)) }))
    clients.forEach(c => c.provider.connect())
    const outcomes = await Promise.all(acks)
    t.equal(outcomes.length, 10, 'every client received its acknowledgement')
    await waitFor(() => clients.every(c => c.doc.getArray('edits').length === 3000), 'all converge')
    const reference = JSON.stringify(clients[0]!.doc.getArray('edits').toJSON())
    t.ok(clients.every(c => JSON.stringify(c.doc.getArray('edits').toJSON()) === reference), 'identical everywhere')

    server.kill('SIGKILL')
    await server.exited
    clients.forEach(c => c.destroy())
    const restarted = await spawnServer(env)
    t.teardown(() => restarted.kill('SIGKILL'))
    const reader = await connectSynced(restarted.url, 'offline-doc', token)
    t.teardown(() => reader.destroy())
    t.equal(reader.doc.getArray('edits').length, 3000, 'every acknowledged edit survived kill -9')
    t.equal(reader.text().split('was offline').length - 1, 10)
    restarted.kill('SIGTERM')
    await restarted.exited
  })
}

t.test('a batch with one corrupt update is rejected whole; the document is unchanged', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const client = connectBatchClient(ts.url, 'strict', token)
  t.teardown(() => client.destroy())
  await waitSynced(client)
  client.doc.getText('t').insert(0, 'base')
  await waitFor(() => ts.server.registry.get('strict')?.ydoc.getText('t').toString() === 'base', 'base applied')

  const source = new Y.Doc()
  source.getText('t').insert(0, 'good content that must not land')
  const good = Y.encodeStateAsUpdate(source)
  const corrupt = good.slice(0, good.length - 5)
  // The helper would refuse to merge a corrupt update itself; put the batch on the wire directly.
  const raw = rawClient(`${ts.url}/strict?token=${token}&ext=offline-batch`)
  await raw.opened
  t.teardown(() => raw.ws.close())
  raw.ws.send(encodeOfflineBatch('bad-batch', [good, corrupt]))
  await waitFor(() => raw.messages.some(m => m[0] === 72), 'error message')
  const error = decodeExtensionErrorFrame(raw.messages.find(m => m[0] === 72)!)
  t.equal(error.batchId, 'bad-batch')
  t.equal(error.code, ExtensionErrorCode.MalformedBatch)
  t.equal(ts.server.registry.get('strict')?.ydoc.getText('t').toString(), 'base', 'server document unchanged')

  // The connection stays usable: the good half alone is accepted.
  raw.ws.send(encodeOfflineBatch('good-batch', [good]))
  await waitFor(() => raw.messages.some(m => m[0] === 71), 'ack for the good batch')
  t.equal(decodeBatchAckFrame(raw.messages.find(m => m[0] === 71)!).outcome, BatchOutcome.Applied)
  await waitFor(() => client.text().includes('good content'), 'the good batch reached other clients')
})

t.test('resending an acknowledged batch changes nothing and is acknowledged again', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const client = connectBatchClient(ts.url, 'resend', token)
  const observer = await connectSynced(ts.url, 'resend', token)
  t.teardown(() => { client.destroy(); observer.destroy() })
  await waitSynced(client)
  const source = new Y.Doc()
  source.getArray('a').push(['x', 'y'])
  const update = Y.encodeStateAsUpdate(source)
  const first = await client.batches.send([update], 'batch-1')
  t.equal(first.outcome, BatchOutcome.Applied)
  t.not(Buffer.from(first.stateVectorBefore).toString('hex'), Buffer.from(first.stateVectorAfter).toString('hex'), 'ack reports what changed')
  await waitFor(() => observer.doc.getArray('a').length === 2, 'observer got it')
  let observed = 0
  observer.doc.on('update', () => { observed++ })

  const again = await client.batches.send([update], 'batch-1')
  t.same(again, first, 'same acknowledgement again')
  // A different id with the same content: Yjs has it already, so nothing changes either.
  const other = await client.batches.send([update], 'batch-2')
  t.equal(other.outcome, BatchOutcome.AlreadyApplied)
  await sleep(100)
  t.equal(observed, 0, 'no second effect reached other clients')
  t.equal(ts.server.registry.get('resend')?.ydoc.getArray('a').length, 2)
})

t.test('limits and permissions answer with extension errors; stock clients never see extension messages', async t => {
  const ts = await startTestServer({ OFFLINE_BATCH_MAX_UPDATES: '3', OFFLINE_BATCH_MAX_BYTES: '2048' })
  t.teardown(ts.close)
  const token = await signToken()
  const stock = rawClient(`${ts.url}/limits?token=${token}`)
  await stock.opened
  t.teardown(() => stock.ws.close())
  const client = connectBatchClient(ts.url, 'limits', token)
  t.teardown(() => client.destroy())
  await waitSynced(client)

  const small = (label: string): Uint8Array => { const d = new Y.Doc(); d.getArray('a').push([label]); return Y.encodeStateAsUpdate(d) }
  const tooMany = client.batches.send([small('1'), small('2'), small('3'), small('4')].map(u => u), 'many')
  // send() merges before sending; bypass merging to exceed the count limit on the wire.
  const raw = rawClient(`${ts.url}/limits?token=${token}&ext=offline-batch`)
  await raw.opened
  t.teardown(() => raw.ws.close())
  raw.ws.send(encodeOfflineBatch('many-raw', [small('1'), small('2'), small('3'), small('4')]))
  await waitFor(() => raw.messages.some(m => m[0] === 72), 'count limit error')
  const countError = raw.messages.find(m => m[0] === 72)!
  t.match(Buffer.from(countError).toString(), /at most 3 are accepted/)
  raw.ws.send(encodeOfflineBatch('big', [new Uint8Array(3000)]))
  await waitFor(() => raw.messages.filter(m => m[0] === 72).length === 2, 'byte limit error')
  t.match(Buffer.from(raw.messages.filter(m => m[0] === 72)[1]!).toString(), /at most 2048 are accepted/)
  t.equal((await tooMany).outcome, BatchOutcome.Applied, 'the helper merged four updates into one batch')

  // Read-only connection.
  const readerToken = await signToken({ docs: { limits: 'read-only' } })
  const reader = connectBatchClient(ts.url, 'limits', readerToken)
  t.teardown(() => reader.destroy())
  await waitSynced(reader)
  const refused = await reader.batches.send([small('ro')]).catch((err: BatchRejectedError) => err)
  t.ok(refused instanceof BatchRejectedError)
  t.equal((refused as BatchRejectedError).error.code, ExtensionErrorCode.PermissionDenied)

  // A connection without the opt-in that sends an extension message is closed as malformed.
  const plain = rawClient(`${ts.url}/limits?token=${token}`)
  await plain.opened
  plain.ws.send(encodeOfflineBatch('x', [small('z')]))
  t.equal((await plain.closed).code, 1007)

  await sleep(100)
  t.notOk(stock.messages.some(m => m[0]! >= 70), 'the stock connection never received an extension message')
  t.ok(stock.messages.some(m => m[0] === 0 && m[1] === 2), 'while it did receive the merged updates')
})

t.test('cluster mode: a batch sent to node A reaches clients on node B and is in Redis when acknowledged', async t => {
  const redis = await startRedis()
  t.teardown(redis.cleanup)
  const env = { REDIS_URL: redis.url, FLUSH_INTERVAL_MS: '60000', BRIDGE_HEARTBEAT_MS: '200' }
  const a = await startTestServer({ ...env, NODE_ID: 'node-a' })
  const b = await startTestServer({ ...env, NODE_ID: 'node-b' })
  t.teardown(async () => { await a.close(); await b.close() })
  const token = await signToken()
  const onB = await connectSynced(b.url, 'clustered', token)
  const sender = connectBatchClient(a.url, 'clustered', token)
  t.teardown(() => { onB.destroy(); sender.destroy() })
  await waitSynced(sender)
  sender.provider.disconnect()
  for (let i = 0; i < 200; i++) sender.doc.getArray('o').push([i])
  const ack = new Promise(resolve => sender.batches.onAck(resolve))
  sender.provider.connect()
  await ack
  // Durable in Redis at the moment of the acknowledgement (the interval write is a minute away).
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const stored = await new RedisStore(client, 'collab:', 0).load('clustered')
  const doc = new Y.Doc()
  stored.updates.forEach(u => Y.applyUpdate(doc, u))
  t.equal(doc.getArray('o').length, 200, 'in Redis when acknowledged')
  await waitFor(() => onB.doc.getArray('o').length === 200, 'visible on node B')
})

t.test('extension frames: malformed batch framing closes the connection with 1007', async t => {
  const ts = await startTestServer()
  t.teardown(ts.close)
  const token = await signToken()
  const raw = rawClient(`${ts.url}/framing?token=${token}&ext=offline-batch`)
  await raw.opened
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 70)
  encoding.writeVarString(encoder, 'id')
  encoding.writeVarUint(encoder, 2)
  encoding.writeVarUint(encoder, 999) // claims 999 bytes, has none
  raw.ws.send(encoding.toUint8Array(encoder))
  t.equal((await raw.closed).code, 1007)
})
