import type * as decoding from 'lib0/decoding'
import type * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { byteRuns } from '../shared/byte-runs.js'
import {
  encodeOfflineBatch,
  EXTENSIONS_PARAM,
  ExtensionErrorCode,
  ExtensionMessageType,
  readBatchAckBody,
  readExtensionErrorBody,
  type BatchAck,
  type ExtensionError
} from '../protocol/extensions.js'

/** Add these to the provider's `params` so the server sends acknowledgements to this connection. */
export const OFFLINE_BATCH_PARAMS: Record<string, string> = { [EXTENSIONS_PARAM.name]: EXTENSIONS_PARAM.value }

/** y-websocket calls handlers as (encoder, decoder, provider, emitSynced, messageType). */
type ProviderMessageHandler = (...args: never[]) => void
type StatusHandler = (event: { status: 'connected' | 'disconnected' | 'connecting' }) => void

/**
 * The part of y-websocket's WebsocketProvider this helper uses; a WebsocketProvider is one as is
 * (no cast needed).
 */
export interface ProviderLike {
  doc: Y.Doc
  ws: { send: (data: Uint8Array) => void, readyState: number } | null
  wsconnected: boolean
  messageHandlers: ProviderMessageHandler[]
  on (event: 'status', handler: StatusHandler): void
  off (event: 'status', handler: StatusHandler): void
}

export interface OfflineBatchOptions {
  /** Record local updates made while the provider is disconnected (default true). */
  record?: boolean
  /** Send recorded updates as a batch as soon as the connection is back (default true). */
  autoSend?: boolean
  /** Larger batches are split; keep below the server's OFFLINE_BATCH_MAX_BYTES (default 1 MiB). */
  maxBatchBytes?: number
}

/** The server refused a batch for good (malformed, too large, read-only): resending will not help. */
export class BatchRejectedError extends Error {
  constructor (readonly error: ExtensionError) {
    super(`batch ${error.batchId} rejected (${error.code}): ${error.message}`)
  }
}

interface PendingBatch {
  batchId: string
  frame: Uint8Array
  resolve: (ack: BatchAck) => void
  reject: (err: Error) => void
  sent: boolean
}

const RETRYABLE: number[] = [ExtensionErrorCode.StoreUnavailable, ExtensionErrorCode.Internal]
const WS_OPEN = 1

/**
 * Sends offline edits as batches that the server acknowledges only once they are durable, next
 * to a stock y-websocket provider (created with `params: { token, ...OFFLINE_BATCH_PARAMS }`).
 *
 * Updates the document makes while the provider is disconnected are recorded; when the connection
 * is back they are merged and sent as one batch (split if large). Every batch is resent after a
 * disconnect until the server acknowledges it; resends are harmless (same batch id, and Yjs
 * updates are idempotent). Works in browsers and Node: no Node APIs.
 */
export class OfflineBatchClient {
  private recorded: Uint8Array[] = []
  /** The document's state vector when the connection was last lost (sent with recorded edits). */
  private syncedStateVector: Uint8Array | undefined
  private readonly pending: PendingBatch[] = []
  private readonly ackListeners = new Set<(ack: BatchAck) => void>()
  private readonly options: Required<OfflineBatchOptions>
  private readonly onUpdate = (update: Uint8Array, origin: unknown): void => {
    if (this.options.record && !this.provider.wsconnected && origin !== this.provider) this.recorded.push(update)
  }

  private readonly onStatus: StatusHandler = event => {
    if (event.status === 'disconnected' && this.recorded.length === 0) this.syncedStateVector = Y.encodeStateVector(this.provider.doc)
    if (event.status === 'connected') {
      for (const batch of this.pending) batch.sent = false
      if (this.options.autoSend && this.recorded.length > 0) void this.sendRecorded().catch(() => {})
      this.pump()
    }
  }

  constructor (private readonly provider: ProviderLike, options: OfflineBatchOptions = {}) {
    this.options = { record: true, autoSend: true, maxBatchBytes: 1024 * 1024, ...options }
    const onAck = (_encoder: encoding.Encoder, decoder: decoding.Decoder): void => this.acknowledged(readBatchAckBody(decoder))
    const onError = (_encoder: encoding.Encoder, decoder: decoding.Decoder): void => this.failed(readExtensionErrorBody(decoder))
    provider.messageHandlers[ExtensionMessageType.BatchAck] = onAck as ProviderMessageHandler
    provider.messageHandlers[ExtensionMessageType.Error] = onError as ProviderMessageHandler
    provider.doc.on('update', this.onUpdate)
    provider.on('status', this.onStatus)
  }

  /** Local updates recorded while offline and not yet sent. */
  get recordedUpdates (): number {
    return this.recorded.length
  }

  /** Batches sent (or waiting to be sent) and not yet acknowledged. */
  get pendingBatches (): number {
    return this.pending.length
  }

  /** Called with every acknowledgement, including those of automatically sent batches. */
  onAck (listener: (ack: BatchAck) => void): () => void {
    this.ackListeners.add(listener)
    return () => this.ackListeners.delete(listener)
  }

  /**
   * Sends the recorded offline updates now (or as soon as connected). Resolves with the last
   * acknowledgement, or null when nothing was recorded.
   */
  async sendRecorded (): Promise<BatchAck | null> {
    if (this.recorded.length === 0) return null
    const updates = this.recorded
    this.recorded = []
    return await this.send(updates, randomBatchId(), this.syncedStateVector)
  }

  /**
   * Sends updates as one or more batches (split to stay under maxBatchBytes) and resolves with the
   * acknowledgement of the last one, once every one is acknowledged: then they are all durable.
   * Rejects with BatchRejectedError if the server refuses a batch for good.
   */
  async send (updates: Uint8Array[], batchId = randomBatchId(), syncedStateVector?: Uint8Array): Promise<BatchAck> {
    const groups = this.split(updates)
    const acks = await Promise.all(groups.map(async (group, i) => await this.enqueue(groups.length === 1 ? batchId : `${batchId}.${i}`, group, syncedStateVector)))
    return acks[acks.length - 1]!
  }

  destroy (): void {
    this.provider.doc.off('update', this.onUpdate)
    this.provider.off('status', this.onStatus)
    for (const batch of this.pending.splice(0)) batch.reject(new Error('offline batch client destroyed'))
  }

  private split (updates: Uint8Array[]): Uint8Array[][] {
    const merged = updates.length > 1 ? Y.mergeUpdates(updates) : updates[0]
    if (merged !== undefined && merged.length <= this.options.maxBatchBytes) return [[merged]]
    return byteRuns(updates, this.options.maxBatchBytes)
  }

  private async enqueue (batchId: string, updates: Uint8Array[], syncedStateVector?: Uint8Array): Promise<BatchAck> {
    return await new Promise<BatchAck>((resolve, reject) => {
      const frame = encodeOfflineBatch(syncedStateVector === undefined ? { batchId, updates } : { batchId, updates, syncedStateVector })
      this.pending.push({ batchId, frame, resolve, reject, sent: false })
      this.pump()
    })
  }

  private pump (): void {
    const ws = this.provider.ws
    if (ws === null || !this.provider.wsconnected || ws.readyState !== WS_OPEN) return
    for (const batch of this.pending) {
      if (batch.sent) continue
      ws.send(batch.frame)
      batch.sent = true
    }
  }

  private acknowledged (ack: BatchAck): void {
    const index = this.pending.findIndex(b => b.batchId === ack.batchId)
    if (index < 0) return
    const [batch] = this.pending.splice(index, 1)
    batch!.resolve(ack)
    for (const listener of this.ackListeners) listener(ack)
  }

  private failed (error: ExtensionError): void {
    const batch = this.pending.find(b => b.batchId === error.batchId)
    if (batch === undefined) return
    if (RETRYABLE.includes(error.code)) {
      // Not durable yet: send it again a little later.
      batch.sent = false
      setTimeout(() => this.pump(), 1000)
      return
    }
    this.pending.splice(this.pending.indexOf(batch), 1)
    batch.reject(new BatchRejectedError(error))
  }
}

function randomBatchId (): string {
  const bytes = new Uint8Array(12)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}
