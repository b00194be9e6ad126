import * as decoding from 'lib0/decoding'
import { encodeOfflineBatch as encode, readBatchAckBody, readExtensionErrorBody, type BatchAck, type ExtensionError } from '../../src/protocol/extensions.js'

export function encodeOfflineBatch (batchId: string, updates: Uint8Array[]): Uint8Array {
  return encode({ batchId, updates })
}

export function decodeBatchAckFrame (frame: Uint8Array): BatchAck {
  const decoder = decoding.createDecoder(frame)
  decoding.readVarUint(decoder)
  return readBatchAckBody(decoder)
}

export function decodeExtensionErrorFrame (frame: Uint8Array): ExtensionError {
  const decoder = decoding.createDecoder(frame)
  decoding.readVarUint(decoder)
  return readExtensionErrorBody(decoder)
}
