import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { OFFLINE_BATCH_PARAMS, OfflineBatchClient } from '../../src/client/index.js'
import type { TestClient } from './clients.js'

export interface BatchTestClient extends TestClient {
  batches: OfflineBatchClient
}

/** A stock provider opted in to extension messages, with the offline batch helper next to it. */
export function connectBatchClient (serverUrl: string, docId: string, token: string): BatchTestClient {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(serverUrl, docId, doc, {
    params: { token, ...OFFLINE_BATCH_PARAMS },
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
    maxBackoffTime: 200
  })
  // No cast: the stock provider must satisfy ProviderLike as it is.
  const batches = new OfflineBatchClient(provider)
  return {
    doc,
    provider,
    batches,
    text: () => doc.getText('t').toString(),
    destroy: () => {
      batches.destroy()
      provider.destroy()
      doc.destroy()
    }
  }
}
