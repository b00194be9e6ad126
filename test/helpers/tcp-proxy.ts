import { createConnection, createServer, type Socket } from 'node:net'

export interface TcpProxy {
  port: number
  /** Routes new connections to another port and cuts the open ones, like a load balancer whose backend died. */
  retarget: (port: number) => void
  close: () => Promise<void>
}

/** A minimal TCP load balancer on loopback, standing in for HAProxy in tests. */
export async function startTcpProxy (targetPort: number): Promise<TcpProxy> {
  let target = targetPort
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = createConnection({ host: '127.0.0.1', port: target })
    sockets.add(client)
    sockets.add(upstream)
    client.pipe(upstream)
    upstream.pipe(client)
    const cleanup = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', cleanup)
    upstream.on('error', cleanup)
    client.on('close', cleanup)
    upstream.on('close', cleanup)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no port')
  return {
    port: address.port,
    retarget: port => {
      target = port
      for (const socket of sockets) socket.destroy()
    },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
