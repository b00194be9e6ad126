import { createRequire } from 'node:module'
import WebSocket from 'ws'
import { WebsocketProvider as ProviderV3 } from 'y-websocket'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import { WebsocketProvider as ProviderV4 } from '@y/websocket'
import * as Y14 from '@y/y'
import * as Y from 'yjs'

/**
 * The stock y-websocket provider versions the server is tested with (see the README): y-websocket
 * 1.5.4, 2.1.0 and 3.1.0 on Yjs 13, and the release candidate @y/websocket 4.0.0-3 on its Yjs 14
 * release candidate (@y/y 14.0.0-rc.7), whose updates are wire-compatible with the server's Yjs 13.
 */
export const PROVIDER_VERSIONS = ['1.5.4', '2.1.0', '3.1.0', '4.0.0-3'] as const
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
  if (existing !== undefined && (version === '1.5.4' || version === '4.0.0-3')) throw new Error(`y-websocket ${version} runs on another Yjs build: make its document with it`)
  const doc = existing ?? (version === '1.5.4' ? new YjsCjs.Doc() : version === '4.0.0-3' ? new Y14.Doc() as unknown as Y.Doc : new Y.Doc())
  const Provider = version === '1.5.4'
    ? ProviderV1
    : version === '2.1.0'
      ? ProviderV2 as unknown as typeof ProviderV3
      : version === '4.0.0-3' ? ProviderV4 as unknown as typeof ProviderV3 : ProviderV3
  const provider = new Provider(serverUrl, docId, doc, {
    params,
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    // In Node, providers in one process would otherwise sync through an in-memory channel.
    disableBc: true,
    maxBackoffTime: 200
  })
  return { doc, provider }
}

/** A shared text or array of a provider's document, whichever Yjs (13 or 14) it runs on. */
export interface SharedSequence {
  insert: (index: number, text: string) => void
  push: (values: unknown[]) => void
  readonly length: number
  toString: () => string
}

/**
 * The named shared type of a document as text/array operations: Yjs 13 has Y.Text and Y.Array
 * (getText, getArray), Yjs 14 one type for both (get).
 */
export function shared (doc: Y.Doc, name: string, kind: 'text' | 'array'): SharedSequence {
  const y14 = doc as unknown as { get?: (name: string) => { insert: (i: number, c: unknown) => void, push: (c: unknown[]) => void, length: number, toString: () => string, toArray: () => unknown[] } }
  if (typeof y14.get === 'function' && typeof (doc as { getText?: unknown }).getText !== 'function') {
    const type = y14.get(name)
    return {
      insert: (index, text) => { type.insert(index, text) },
      push: values => { type.push(values) },
      get length () { return type.length },
      toString: () => kind === 'text' ? type.toString() : JSON.stringify(type.toArray())
    }
  }
  if (kind === 'text') {
    const text = doc.getText(name)
    return { insert: (i, s) => { text.insert(i, s) }, push: () => { throw new Error('a text has no push') }, get length () { return text.length }, toString: () => text.toString() }
  }
  const array = doc.getArray(name)
  return { insert: () => { throw new Error('an array has no text insert') }, push: values => { array.push(values) }, get length () { return array.length }, toString: () => JSON.stringify(array.toJSON()) }
}
