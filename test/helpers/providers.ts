import { createRequire } from 'node:module'
import WebSocket from 'ws'
import { WebsocketProvider as ProviderV3 } from 'y-websocket'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import * as Y from 'yjs'

/** The stock y-websocket provider versions the server is tested with (see the README). */
export const PROVIDER_VERSIONS = ['1.5.4', '2.1.0', '3.1.0'] as const
export type ProviderVersion = typeof PROVIDER_VERSIONS[number]

// y-websocket 1.5.4 is installed as y-websocket-v1. Under tap's loader only its CommonJS build
// loads, and that one brings the CommonJS build of Yjs: its documents come from there too.
const requireCjs = createRequire(import.meta.url)
const ProviderV1 = (requireCjs('y-websocket-v1') as { WebsocketProvider: typeof ProviderV3 }).WebsocketProvider
const YjsCjs = requireCjs('yjs') as typeof Y

export type StockProvider = ProviderV3

/**
 * A document and a stock provider of the given version, as a front end would create them; `doc`,
 * a document that already holds content (made offline), for 2.x and 3.x.
 */
export function stockProvider (version: ProviderVersion, serverUrl: string, docId: string, params: Record<string, string>, existing?: Y.Doc): { doc: Y.Doc, provider: StockProvider } {
  if (existing !== undefined && version === '1.5.4') throw new Error('y-websocket 1.5.4 runs on the CommonJS Yjs: make its document with it')
  const doc = existing ?? (version === '1.5.4' ? new YjsCjs.Doc() : new Y.Doc())
  const Provider = version === '1.5.4' ? ProviderV1 : version === '2.1.0' ? ProviderV2 as unknown as typeof ProviderV3 : ProviderV3
  const provider = new Provider(serverUrl, docId, doc, {
    params,
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    // In Node, providers in one process would otherwise sync through an in-memory channel.
    disableBc: true,
    maxBackoffTime: 200
  })
  return { doc, provider }
}
