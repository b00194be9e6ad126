/**
 * Extension messages for offline-edit batches (protocol.md, "Offline batches"). They use message
 * types stock y-websocket clients never send or receive, and the server sends them only to
 * connections that opted in with the query parameter `ext=offline-batch`.
 *
 * This module has no Node dependencies: the browser client helper uses it too.
 *
 *   70 offline batch   C->S  varString batchId, varUint count, count x varUint8Array update
 *   71 batch ack       S->C  varString batchId, varUint outcome, varUint8Array stateVectorBefore,
 *                            varUint8Array stateVectorAfter
 *   72 error           S->C  varString batchId ("" if none), varUint code, varString message
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

export const ExtensionMessageType = {
  OfflineBatch: 70,
  BatchAck: 71,
  Error: 72
} as const

/** The query parameter (name and value) with which a connection opts in to extension messages. */
export const EXTENSIONS_PARAM = { name: 'ext', value: 'offline-batch' } as const

export const BatchOutcome = {
  /** The batch changed the document; the change is durable. */
  Applied: 0,
  /** The document already contained everything in the batch (e.g. a resend); nothing changed. */
  AlreadyApplied: 1
} as const
export type BatchOutcomeValue = typeof BatchOutcome[keyof typeof BatchOutcome]

export const ExtensionErrorCode = {
  /** An update in the batch does not decode: the whole batch was rejected, nothing changed. */
  MalformedBatch: 1,
  /** The connection is read-only. */
  PermissionDenied: 2,
  /** More updates or bytes than the server accepts in one batch. */
  BatchTooLarge: 3,
  /** The merge could not be made durable; the batch may be resent later. */
  StoreUnavailable: 4,
  /** Anything else; the batch may be resent. */
  Internal: 5,
  /** Applying the batch would grow the document past MAX_DOCUMENT_BYTES. */
  DocumentTooLarge: 6
} as const
export type ExtensionErrorCodeValue = typeof ExtensionErrorCode[keyof typeof ExtensionErrorCode]

export const MAX_BATCH_ID_LENGTH = 128

export interface OfflineBatch {
  batchId: string
  updates: Uint8Array[]
  /**
   * Optional: the state vector the client's document had when it last lost its connection. When
   * the server's document gained nothing from others since, the merge needs no version first.
   */
  syncedStateVector?: Uint8Array
}

export interface BatchAck {
  batchId: string
  outcome: BatchOutcomeValue
  stateVectorBefore: Uint8Array
  stateVectorAfter: Uint8Array
  /** The `before-offline-merge` version taken (or reused) for this merge; '' when none was needed. */
  versionId: string
}

export interface ExtensionError {
  batchId: string
  code: ExtensionErrorCodeValue | number
  message: string
}

export function encodeOfflineBatch (batch: OfflineBatch): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, ExtensionMessageType.OfflineBatch)
  encoding.writeVarString(encoder, batch.batchId)
  encoding.writeVarUint(encoder, batch.updates.length)
  for (const update of batch.updates) encoding.writeVarUint8Array(encoder, update)
  if (batch.syncedStateVector !== undefined) encoding.writeVarUint8Array(encoder, batch.syncedStateVector)
  return encoding.toUint8Array(encoder)
}

/**
 * Reads the body of an offline batch (after the message type). Update payloads are views into
 * the decoder's buffer. Throws on any framing problem, including more updates than `maxUpdates`
 * (checked before reading them, so a huge count cannot make the server allocate).
 */
export function readOfflineBatchBody (decoder: decoding.Decoder, maxUpdates: number): OfflineBatch {
  const batchId = decoding.readVarString(decoder)
  if (batchId.length === 0 || batchId.length > MAX_BATCH_ID_LENGTH) throw new Error(`batch id must be 1-${MAX_BATCH_ID_LENGTH} characters`)
  const count = decoding.readVarUint(decoder)
  if (count > maxUpdates) throw new BatchTooLargeError(batchId, `batch has ${count} updates, at most ${maxUpdates} are accepted`)
  const updates: Uint8Array[] = []
  for (let i = 0; i < count; i++) updates.push(decoding.readVarUint8Array(decoder))
  const syncedStateVector = decoding.hasContent(decoder) ? decoding.readVarUint8Array(decoder) : undefined
  if (decoding.hasContent(decoder)) throw new Error('trailing bytes after offline batch')
  return syncedStateVector === undefined ? { batchId, updates } : { batchId, updates, syncedStateVector }
}

export class BatchTooLargeError extends Error {
  constructor (readonly batchId: string, message: string) {
    super(message)
  }
}

export function encodeBatchAck (ack: BatchAck): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, ExtensionMessageType.BatchAck)
  encoding.writeVarString(encoder, ack.batchId)
  encoding.writeVarUint(encoder, ack.outcome)
  encoding.writeVarUint8Array(encoder, ack.stateVectorBefore)
  encoding.writeVarUint8Array(encoder, ack.stateVectorAfter)
  // Last, so that a client reading only the fields before it is unaffected.
  encoding.writeVarString(encoder, ack.versionId)
  return encoding.toUint8Array(encoder)
}

export function readBatchAckBody (decoder: decoding.Decoder): BatchAck {
  const batchId = decoding.readVarString(decoder)
  const outcome = decoding.readVarUint(decoder) as BatchOutcomeValue
  const stateVectorBefore = decoding.readVarUint8Array(decoder)
  const stateVectorAfter = decoding.readVarUint8Array(decoder)
  // Servers before version history send no version id.
  const versionId = decoding.hasContent(decoder) ? decoding.readVarString(decoder) : ''
  return { batchId, outcome, stateVectorBefore, stateVectorAfter, versionId }
}

export function encodeExtensionError (error: ExtensionError): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, ExtensionMessageType.Error)
  encoding.writeVarString(encoder, error.batchId)
  encoding.writeVarUint(encoder, error.code)
  encoding.writeVarString(encoder, error.message)
  return encoding.toUint8Array(encoder)
}

export function readExtensionErrorBody (decoder: decoding.Decoder): ExtensionError {
  const batchId = decoding.readVarString(decoder)
  const code = decoding.readVarUint(decoder)
  const message = decoding.readVarString(decoder)
  return { batchId, code, message }
}
