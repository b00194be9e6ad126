import { createServer } from 'node:net'

/** Asks the kernel for a free loopback port. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') return reject(new Error('no port'))
      server.close(() => resolve(address.port))
    })
  })
}

async function canListen (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const probe = createServer()
    probe.once('error', () => resolve(false))
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)))
  })
}

/**
 * A free loopback port for a Redis Cluster node, not in `taken`: its cluster bus port (port +
 * 10000) must be free too, so it is drawn from 20000-28999 rather than given by the kernel.
 */
export async function freeClusterPort (taken: number[] = []): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 9000)
    if (!taken.includes(port) && await canListen(port) && await canListen(port + 10000)) return port
  }
}
