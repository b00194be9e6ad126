// A Hocuspocus server as the bench measures it against ours: no authentication, no persistence,
// no logging; with REDIS_URL its nodes share documents through @hocuspocus/extension-redis, the way
// Hocuspocus scales horizontally. HOST and PORT say where it listens.
import { Redis } from '@hocuspocus/extension-redis'
import { Server } from '@hocuspocus/server'

const host = process.env.HOST ?? '127.0.0.1'
const port = Number(process.env.PORT ?? 1234)
const extensions = []
if (process.env.REDIS_URL !== undefined) {
  const redis = new URL(process.env.REDIS_URL)
  extensions.push(new Redis({ host: redis.hostname, port: Number(redis.port) }))
}

const server = new Server({ address: host, port, quiet: true, extensions })
await server.listen()

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => { void server.destroy().finally(() => process.exit(0)) })
}
