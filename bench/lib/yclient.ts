/**
 * y-websocket protocol clients holding a real Y.Doc, on the raw socket of wsraw.ts.
 *
 * They speak exactly what the stock WebsocketProvider speaks for document sync (minus awareness):
 * on open a sync step 1 with the local state vector, a step 2 in answer to the server's step 1,
 * every local change as a sync update; remote steps 2 and updates are applied with origin 'remote'.
 *
 * - Writer: inserts entries at the start of the Y.Text `log`; each entry is the send time in epoch
 *   milliseconds with microsecond digits (performance.timeOrigin + performance.now(), a clock every
 *   process on this machine shares) and a `;`, so a receiver in another process can compute the
 *   propagation latency.
 *   Why the start: Yjs merges one client's consecutive appends into one item, and encoding an update
 *   of a merged Y.Text item slices (flattens) its whole string, a Y.Array item concatenates its whole
 *   array. Appending would make every edit O(document length) for whoever listens to 'update' (the
 *   reference server, every client), a bench artefact. Inserts at the start never merge and stay
 *   O(1) for everyone.
 * - Observer: applies every update to its Y.Doc, then records (send time, now - send time); the
 *   send time is read from the update's last bytes (see embeddedSendTime), because computing a
 *   Y.Text event's delta walks the whole text (O(document length) again).
 * - Joiner: connects, syncs, reports how long that took (the large-document scenario).
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import * as Y from 'yjs'
import { embeddedSendTime, RawWebSocket, type Endpoint } from './wsraw.js'

export const now = (): number => performance.timeOrigin + performance.now()

const MESSAGE_SYNC = 0
const REMOTE = 'remote'

export interface YClientOptions {
  endpoint: Endpoint
  /** A document that already holds content (made offline); a fresh one otherwise. */
  doc?: Y.Doc
  onSynced?: () => void
  onClose?: (reason: string) => void
}

export class YClient {
  readonly doc: Y.Doc
  readonly ws: RawWebSocket
  synced = false
  /** When the client started connecting and when it received its first sync step 2 (epoch ms). */
  readonly startedAt = now()
  syncedAt = 0
  /** When the first sync step 2 arrived, before it was applied (epoch ms). */
  step2ReceivedAt = 0
  /**
   * Bytes of the sync messages received up to the first sync step 2: the step 2 alone from a server
   * that answers in one message, every chunk from one that answers a large document in chunks.
   */
  step2Bytes = 0
  errors: string[] = []

  constructor (options: YClientOptions) {
    this.doc = options.doc ?? new Y.Doc()
    this.ws = new RawWebSocket(options.endpoint, {
      mode: 'full',
      onOpen: () => {
        const encoder = encoding.createEncoder()
        encoding.writeVarUint(encoder, MESSAGE_SYNC)
        syncProtocol.writeSyncStep1(encoder, this.doc)
        this.ws.send(encoding.toUint8Array(encoder))
      },
      onMessage: message => this.onMessage(message, options),
      onClose: reason => options.onClose?.(reason)
    })
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === REMOTE) return
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeUpdate(encoder, update)
      this.ws.send(encoding.toUint8Array(encoder))
    })
  }

  private onMessage (message: Uint8Array, options: YClientOptions): void {
    const decoder = decoding.createDecoder(message)
    const type = decoding.readVarUint(decoder)
    if (type !== MESSAGE_SYNC) return // awareness, auth: not needed for the bench
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    const syncType = message[1]
    if (syncType !== syncProtocol.messageYjsSyncStep1 && !this.synced) this.step2Bytes += message.length
    if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) this.step2ReceivedAt = now()
    syncProtocol.readSyncMessage(decoder, encoder, this.doc, REMOTE, err => { this.errors.push(err.message) })
    if (encoding.length(encoder) > 1) this.ws.send(encoding.toUint8Array(encoder))
    if (syncType === syncProtocol.messageYjsUpdate) this.afterRemoteUpdate(message)
    if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) {
      this.synced = true
      this.syncedAt = now()
      options.onSynced?.()
    }
  }

  /** Called after a remote sync update was applied. */
  protected afterRemoteUpdate (_message: Uint8Array): void {}

  /** Entry count and state vector: what the consistency check compares. */
  digest (): { length: number; stateVector: string; sum: number } {
    const log = this.doc.getText('log').toString()
    let sum = 0
    for (let i = 0; i < log.length; i++) sum = (sum * 31 + log.charCodeAt(i)) >>> 0
    return {
      length: log.length,
      stateVector: Buffer.from(Y.encodeStateVector(this.doc)).toString('base64'),
      sum
    }
  }

  close (): void {
    this.ws.close()
    this.doc.destroy()
  }
}

/**
 * Writes `bytes` of filler text into the document's Y.Text `body`, one transaction per chunk:
 * appended, or with `scatter` each chunk inserted at a random place, which Yjs keeps as separate
 * items (consecutive appends merge into one), the way a text people wrote is stored.
 */
export function fillBody (doc: Y.Doc, bytes: number, chunkBytes: number, scatter = false): void {
  const body = doc.getText('body')
  const line = 'The quick brown fox jumps over the lazy dog. 0123456789\n'
  let written = 0
  while (written < bytes) {
    const size = Math.min(chunkBytes, bytes - written)
    const chunk = line.repeat(Math.ceil(size / line.length)).slice(0, size)
    body.insert(scatter ? Math.floor(Math.random() * (body.length + 1)) : body.length, chunk)
    written += size
  }
}

/** Appends timestamped entries, one Yjs transaction (one sync update message) per entry. */
export class Writer extends YClient {
  sent = 0
  private readonly log = this.doc.getText('log')

  /** Appends `bytes` of filler text to the Y.Text `body`, one update per chunk. */
  fillText (bytes: number, chunkBytes: number, scatter = false): void {
    fillBody(this.doc, bytes, chunkBytes, scatter)
  }

  /** Resolves once everything written so far left the process (the server has it or is reading it). */
  async flushed (timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.ws.bufferedBytes > 0 && this.ws.state === 'open') {
      if (Date.now() > deadline) throw new Error('writer could not flush its updates')
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  write (): void {
    this.log.insert(0, `${now().toFixed(3)};`)
    this.sent++
  }
}

/** Records the propagation latency of every entry it receives while `recording` is on. */
export class Observer extends YClient {
  recording = false
  received = 0
  /** Pairs (send time epoch ms, latency ms), flattened. */
  samples: number[] = []

  protected override afterRemoteUpdate (message: Uint8Array): void {
    if (!this.recording) return
    const appliedAt = now()
    const sentAt = embeddedSendTime(message, 0, message.length)
    if (sentAt <= 0) return
    this.received++
    this.samples.push(sentAt, appliedAt - sentAt)
  }

  takeSamples (): number[] {
    const samples = this.samples
    this.samples = []
    return samples
  }
}
