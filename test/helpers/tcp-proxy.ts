import { createConnection, createServer, type Socket } from 'node:net'

export interface TcpProxy {
  port: number
  /** Routes new connections to another port and cuts the open ones, like a load balancer whose backend died. */
  retarget: (port: number) => void
  /**
   * A network partition that neither end notices: open connections stay open but nothing crosses
   * them any more in either direction, and connections opened from now on reach nothing.
   */
  partition: () => void
  /** Bytes that arrived at the proxy during the partition and were dropped (both directions). */
  readonly droppedBytes: number
  close: () => Promise<void>
}

export interface TcpProxyOptions {
  /** Server-to-client bytes per second per connection, like a slow network link (default: unthrottled). */
  downstreamBytesPerSecond?: number
}

/** A minimal TCP load balancer on loopback, standing in for HAProxy in tests. */
export async function startTcpProxy (targetPort: number, options: TcpProxyOptions = {}): Promise<TcpProxy> {
  let target = targetPort
  let partitioned = false
  let droppedBytes = 0
  const drop = (chunk: Buffer): void => { droppedBytes += chunk.length }
  const sockets = new Set<Socket>()
  const cuts = new Set<() => void>()
  const server = createServer(client => {
    if (partitioned) {
      sockets.add(client)
      client.on('data', drop)
      client.on('error', () => client.destroy())
      client.on('close', () => sockets.delete(client))
      return
    }
    const upstream = createConnection({ host: '127.0.0.1', port: target })
    sockets.add(client)
    sockets.add(upstream)
    client.pipe(upstream)
    const rate = options.downstreamBytesPerSecond
    let refill: NodeJS.Timeout | null = null
    if (rate === undefined) {
      upstream.pipe(client)
    } else {
      // A budget per 100 ms; reading pauses when it is spent, so the server's socket backs up.
      let budget = rate / 10
      refill = setInterval(() => {
        budget = rate / 10
        upstream.resume()
      }, 100)
      upstream.on('data', (chunk: Buffer) => {
        client.write(chunk)
        budget -= chunk.length
        if (budget <= 0) upstream.pause()
      })
    }
    const cut = (): void => {
      if (refill !== null) clearInterval(refill)
      client.unpipe(upstream)
      upstream.unpipe(client)
      upstream.removeAllListeners('data')
      client.on('data', drop)
      upstream.on('data', drop)
      client.resume()
      upstream.resume()
    }
    cuts.add(cut)
    const cleanup = (): void => {
      cuts.delete(cut)
      if (refill !== null) clearInterval(refill)
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
    partition: () => {
      partitioned = true
      for (const cut of cuts) cut()
    },
    get droppedBytes () { return droppedBytes },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
