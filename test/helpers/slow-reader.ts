import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/**
 * A WebSocket client that completes the upgrade and then never reads its socket again, like a
 * client on a stalled network: everything the server sends piles up in the server's buffers.
 */
export async function slowReader (port: number, path: string): Promise<{ socket: Socket, closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1')
  // A small receive buffer makes the kernel stop accepting data early.
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write([
    `GET ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    '', ''
  ].join('\r\n'))
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData)
        if (!head.startsWith('HTTP/1.1 101')) reject(new Error(`upgrade failed: ${head.split('\r\n')[0]}`))
        else resolve()
      }
    }
    socket.on('data', onData)
  })
  socket.pause()
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  socket.on('error', () => {})
  return { socket, closed }
}
