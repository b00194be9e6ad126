import t from 'tap'

t.test('the client helper is importable through the package subpath, from the built output', async t => {
  const client = await import('yjs-uws-collab/client')
  t.type(client.OfflineBatchClient, 'function')
  t.same(client.OFFLINE_BATCH_PARAMS, { ext: 'offline-batch' })
  t.equal(client.BatchOutcome.Applied, 0)
})
