/**
 * The y-websocket wire format, the only place that touches message bytes.
 *
 * Every message is `varUint messageType` followed by a type-specific body (see protocol.md):
 *   0 sync       varUint syncType (0 step 1 | 1 step 2 | 2 update), varUint8Array payload
 *   1 awareness  varUint8Array awarenessUpdate
 *   2 auth       varUint 0 (permission denied), varString reason      (server to client only)
 *   3 query-awareness (no body)                                       (client to server only)
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ExtensionMessageType } from './extensions.js'

export const MessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3
} as const

export const SyncType = {
  Step1: 0,
  Step2: 1,
  Update: 2
} as const

const AUTH_PERMISSION_DENIED = 0

export type ClientMessage =
  | { kind: 'sync-step1'; stateVector: Uint8Array }
  | { kind: 'sync-step2'; update: Uint8Array }
  | { kind: 'sync-update'; update: Uint8Array }
  | { kind: 'awareness'; update: Uint8Array }
  | { kind: 'query-awareness' }
  /** An extension message (protocol/extensions.ts); `body` is everything after the type. */
  | { kind: 'offline-batch'; body: Uint8Array }

/** A frame the server cannot decode. The connection that sent it is closed with 1007. */
export class MalformedMessageError extends Error {}

/**
 * Decodes one client frame. Payloads are views into `frame` (no copy): they are valid only as long
 * as the frame's buffer is, so callers copy whatever they keep past the current callback.
 */
export function decodeClientMessage (frame: Uint8Array): ClientMessage {
  try {
    const decoder = decoding.createDecoder(frame)
    const type = decoding.readVarUint(decoder)
    let message: ClientMessage
    switch (type) {
      case MessageType.Sync: {
        const syncType = decoding.readVarUint(decoder)
        const payload = decoding.readVarUint8Array(decoder)
        if (syncType === SyncType.Step1) message = { kind: 'sync-step1', stateVector: payload }
        else if (syncType === SyncType.Step2) message = { kind: 'sync-step2', update: payload }
        else if (syncType === SyncType.Update) message = { kind: 'sync-update', update: payload }
        else throw new MalformedMessageError(`unknown sync message type ${syncType}`)
        break
      }
      case MessageType.Awareness:
        message = { kind: 'awareness', update: decoding.readVarUint8Array(decoder) }
        break
      case MessageType.QueryAwareness:
        message = { kind: 'query-awareness' }
        break
      case ExtensionMessageType.OfflineBatch:
        // Parsed (and bounded) by the batch handler, which answers framing problems itself.
        return { kind: 'offline-batch', body: frame.subarray(decoder.pos) }
      default:
        throw new MalformedMessageError(`unsupported message type ${type}`)
    }
    if (decoding.hasContent(decoder)) {
      throw new MalformedMessageError('trailing bytes after message')
    }
    return message
  } catch (err) {
    if (err instanceof MalformedMessageError) throw err
    // lib0 throws plain Errors ("Unexpected end of array", "Integer out of Range") on truncation.
    throw new MalformedMessageError(`undecodable frame: ${(err as Error).message}`)
  }
}

function encodeSync (syncType: number, payload: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Sync)
  encoding.writeVarUint(encoder, syncType)
  encoding.writeVarUint8Array(encoder, payload)
  return encoding.toUint8Array(encoder)
}

export const encodeSyncStep1 = (stateVector: Uint8Array): Uint8Array => encodeSync(SyncType.Step1, stateVector)
export const encodeSyncStep2 = (update: Uint8Array): Uint8Array => encodeSync(SyncType.Step2, update)
export const encodeSyncUpdate = (update: Uint8Array): Uint8Array => encodeSync(SyncType.Update, update)

export function encodeAwareness (awarenessUpdate: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Awareness)
  encoding.writeVarUint8Array(encoder, awarenessUpdate)
  return encoding.toUint8Array(encoder)
}

/**
 * An awareness message with no entries: every client version reads it and changes nothing, and it
 * counts as "a message arrived" for the stock provider's 30 s reconnect timer.
 */
export const KEEP_ALIVE_FRAME = Uint8Array.of(MessageType.Awareness, 1, 0)

export function encodePermissionDenied (reason: string): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.Auth)
  encoding.writeVarUint(encoder, AUTH_PERMISSION_DENIED)
  encoding.writeVarString(encoder, reason)
  return encoding.toUint8Array(encoder)
}

/**
 * Turns a client's sync step 2 frame into an update frame for the other clients without
 * re-encoding its payload: both sync types are one-byte varUints at offset 1.
 */
export function step2FrameAsUpdateFrame (frame: Uint8Array): Uint8Array {
  const copy = frame.slice()
  copy[1] = SyncType.Update
  return copy
}

/** True for a Yjs v1 update that carries no structs and no deletions (encodes as [0, 0]). */
export function isEmptyUpdate (update: Uint8Array): boolean {
  return update.length === 2 && update[0] === 0 && update[1] === 0
}

/** A Yjs v1 update that carries nothing, as `Y.encodeStateAsUpdate(new Y.Doc())` gives it; a fresh copy. */
export function emptyUpdate (): Uint8Array {
  return Uint8Array.of(0, 0)
}
