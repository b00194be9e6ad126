/**
 * A y-websocket client that shows presence the way the stock provider does, for the presence
 * scenario: on open it asks for the document (an empty sync step 1) and announces its state; each
 * move() renews the state (a cursor of the size y-prosemirror sends, with the send time in it)
 * under the next clock; and every state of another client that is new to it is sent back to the
 * server, as the stock provider's awareness handler does for every change it applies (the echo
 * every server has to read and drop).
 *
 * Receiving records each new state's latency (arrival minus the send time it carries) and counts
 * it as a delivery.
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import type { LatencyHistogram } from './stats.js'
import { EMPTY_SYNC_STEP1, RawWebSocket, type Endpoint } from './wsraw.js'
import { now } from './yclient.js'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const SYNC_STEP2 = 1

export interface PresenceClientOptions {
  endpoint: Endpoint
  onSynced: () => void
  onClose: (reason: string) => void
}

/** Where every presence client of a process records latencies (null: not recording). */
export const presenceLatency: { hist: LatencyHistogram | null } = { hist: null }

export class PresenceClient {
  readonly ws: RawWebSocket
  /** A random awareness client id, as Yjs draws one. */
  readonly clientId = Math.floor(Math.random() * 0xffffffff)
  private clock = 0
  synced = false
  moves = 0
  /** States of other clients received that were new to this one. */
  deliveries = 0
  echoes = 0
  /** The latest clock seen of each other client. */
  private readonly clocks = new Map<number, number>()

  constructor (options: PresenceClientOptions) {
    this.ws = new RawWebSocket(options.endpoint, {
      mode: 'full',
      onOpen: () => {
        this.ws.send(EMPTY_SYNC_STEP1)
        this.move()
      },
      onMessage: message => { this.onMessage(message, options) },
      onClose: reason => { options.onClose(reason) }
    })
  }

  /** Renews this client's state under the next clock: its cursor moved. */
  move (): void {
    this.clock++
    const at = this.clock * 7
    const position = (offset: number): object => ({ type: { client: 1234567890, clock: 17 }, tname: null, item: { client: this.clientId, clock: at + offset }, assoc: 0 })
    const state = { t: now(), user: { name: `Person ${this.clientId % 1000}`, color: '#30bced', colorLight: '#30bced33' }, cursor: { anchor: position(0), head: position(3) } }
    this.send([[this.clientId, this.clock, JSON.stringify(state)]])
    if (this.clock > 1) this.moves++
  }

  private onMessage (message: Uint8Array, options: PresenceClientOptions): void {
    if (message[0] === MESSAGE_SYNC) {
      if (message[1] === SYNC_STEP2 && !this.synced) {
        this.synced = true
        options.onSynced()
      }
      return
    }
    if (message[0] !== MESSAGE_AWARENESS) return
    const decoder = decoding.createDecoder(message)
    decoding.readVarUint(decoder)
    const update = decoding.createDecoder(decoding.readVarUint8Array(decoder))
    const fresh: Array<[number, number, string]> = []
    const count = decoding.readVarUint(update)
    for (let i = 0; i < count; i++) {
      const clientId = decoding.readVarUint(update)
      const clock = decoding.readVarUint(update)
      const json = decoding.readVarString(update)
      if (clientId === this.clientId || clock <= (this.clocks.get(clientId) ?? 0)) continue
      this.clocks.set(clientId, clock)
      fresh.push([clientId, clock, json])
      const sentAt = (JSON.parse(json) as { t?: number } | null)?.t
      if (sentAt === undefined) continue
      this.deliveries++
      presenceLatency.hist?.record(now() - sentAt)
    }
    if (fresh.length === 0) return
    this.send(fresh)
    this.echoes += fresh.length
  }

  private send (entries: Array<[number, number, string]>): void {
    if (this.ws.state !== 'open') return
    const update = encoding.createEncoder()
    encoding.writeVarUint(update, entries.length)
    for (const [clientId, clock, json] of entries) {
      encoding.writeVarUint(update, clientId)
      encoding.writeVarUint(update, clock)
      encoding.writeVarString(update, json)
    }
    const frame = encoding.createEncoder()
    encoding.writeVarUint(frame, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(frame, encoding.toUint8Array(update))
    this.ws.send(encoding.toUint8Array(frame))
  }

  close (): void {
    this.ws.close()
  }
}
