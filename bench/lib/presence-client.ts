/**
 * A y-websocket client that shows presence as the stock provider does, for the presence scenario:
 * it holds a y-protocols `Awareness` and wires it the way the provider does. On open it asks for
 * the document (an empty sync step 1) and announces its state; every awareness update it applies,
 * its own or a received one, is sent to the server (which is how every stock client echoes each
 * state it receives); move() renews its state (a cursor of the size y-prosemirror sends, with the
 * send time in it).
 *
 * Each received state new to this client is a delivery, with its latency (arrival minus the send
 * time it carries).
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { applyAwarenessUpdate, Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness'
import * as Y from 'yjs'
import type { LatencyHistogram } from './stats.js'
import { EMPTY_SYNC_STEP1, RawWebSocket, type Endpoint } from './wsraw.js'
import { now } from './yclient.js'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const SYNC_STEP2 = 1
const REMOTE = 'remote'

export interface PresenceClientOptions {
  endpoint: Endpoint
  onSynced: () => void
  onClose: (reason: string) => void
}

/** Where every presence client of a process records latencies (null: not recording). */
export const presenceLatency: { hist: LatencyHistogram | null } = { hist: null }

interface Changes { added: number[], updated: number[], removed: number[] }

export class PresenceClient {
  readonly ws: RawWebSocket
  private readonly awareness = new Awareness(new Y.Doc())
  synced = false
  moves = 0
  /** States of other clients received that were new to this one. */
  deliveries = 0
  /** Received states sent back to the server. */
  echoes = 0

  constructor (options: PresenceClientOptions) {
    const awareness = this.awareness
    awareness.setLocalState(this.state())
    awareness.on('update', ({ added, updated, removed }: Changes, origin: unknown) => {
      const changed = added.concat(updated, removed)
      if (origin === REMOTE) this.received(added.concat(updated), changed.length)
      this.send(encodeAwarenessUpdate(awareness, changed))
    })
    this.ws = new RawWebSocket(options.endpoint, {
      mode: 'full',
      onOpen: () => {
        this.ws.send(EMPTY_SYNC_STEP1)
        this.send(encodeAwarenessUpdate(awareness, [awareness.clientID]))
      },
      onMessage: message => { this.onMessage(message, options) },
      onClose: reason => { options.onClose(reason) }
    })
  }

  /** Renews this client's state: its cursor moved. */
  move (): void {
    this.awareness.setLocalState(this.state())
    this.moves++
  }

  private state (): object {
    const at = this.moves * 7
    const position = (offset: number): object => ({ type: { client: 1234567890, clock: 17 }, tname: null, item: { client: this.awareness.clientID, clock: at + offset }, assoc: 0 })
    return { t: now(), user: { name: `Person ${this.awareness.clientID % 1000}`, color: '#30bced', colorLight: '#30bced33' }, cursor: { anchor: position(0), head: position(3) } }
  }

  private received (ids: number[], echoed: number): void {
    const at = now()
    for (const id of ids) {
      const sentAt = (this.awareness.getStates().get(id) as { t?: number } | undefined)?.t
      if (sentAt === undefined) continue
      this.deliveries++
      presenceLatency.hist?.record(at - sentAt)
    }
    this.echoes += echoed
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
    applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), REMOTE)
  }

  private send (update: Uint8Array): void {
    if (this.ws.state !== 'open') return
    const frame = encoding.createEncoder()
    encoding.writeVarUint(frame, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(frame, update)
    this.ws.send(encoding.toUint8Array(frame))
  }

  close (): void {
    this.ws.close()
    this.awareness.destroy()
  }
}
