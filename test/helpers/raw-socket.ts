import WebSocket from 'ws'

/** Attempts an upgrade and reports the HTTP status (101 when it upgraded) and the error body. */
export async function upgradeStatus (url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return await new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    ws.on('open', () => {
      ws.close()
      resolve({ status: 101, body: '' })
    })
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', chunk => { body += String(chunk) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    ws.on('error', err => { if (!/Unexpected server response/.test(err.message)) reject(err) })
  })
}

/** A raw WebSocket that records every binary message and its close code. */
export interface RawClient {
  ws: WebSocket
  messages: Uint8Array[]
  closed: Promise<{ code: number; reason: string }>
  opened: Promise<void>
}

export function rawClient (url: string): RawClient {
  const ws = new WebSocket(url)
  const messages: Uint8Array[] = []
  ws.binaryType = 'nodebuffer'
  ws.on('message', data => { messages.push(new Uint8Array(data as Buffer)) })
  const closed = new Promise<{ code: number; reason: string }>(resolve => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve())
    ws.on('error', reject)
  })
  return { ws, messages, closed, opened }
}
