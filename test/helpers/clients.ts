import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { waitFor } from './wait.js'

export interface TestClient {
  doc: Y.Doc
  provider: WebsocketProvider
  text: () => string
  destroy: () => void
}

/** A stock y-websocket client (with `ws`), as a front end would create it. */
export function connectClient (serverUrl: string, docId: string, token: string, doc = new Y.Doc()): TestClient {
  const provider = new WebsocketProvider(serverUrl, docId, doc, {
    params: { token },
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    // In Node, providers in one process would otherwise sync through an in-memory channel,
    // bypassing the server under test.
    disableBc: true,
    maxBackoffTime: 200
  })
  return {
    doc,
    provider,
    text: () => doc.getText('t').toString(),
    destroy: () => {
      provider.destroy()
      doc.destroy()
    }
  }
}

export async function waitSynced (client: TestClient, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => client.provider.synced, 'client sync', timeoutMs)
}

export async function connectSynced (serverUrl: string, docId: string, token: string): Promise<TestClient> {
  const client = connectClient(serverUrl, docId, token)
  await waitSynced(client)
  return client
}
