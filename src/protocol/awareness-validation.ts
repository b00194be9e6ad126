import * as decoding from 'lib0/decoding'
import { MalformedMessageError } from './messages.js'

/**
 * Checks an awareness update completely before it is applied. y-protocols applies entries one by
 * one and throws midway on bad JSON, which would leave some entries applied and the rest not.
 * Returns the number of entries.
 */
export function validateAwarenessUpdate (update: Uint8Array): number {
  try {
    const decoder = decoding.createDecoder(update)
    const count = decoding.readVarUint(decoder)
    for (let i = 0; i < count; i++) {
      decoding.readVarUint(decoder) // client id
      decoding.readVarUint(decoder) // clock
      const state: unknown = JSON.parse(decoding.readVarString(decoder))
      if (state !== null && typeof state !== 'object') {
        throw new MalformedMessageError('awareness state must be an object or null')
      }
    }
    if (decoding.hasContent(decoder)) throw new MalformedMessageError('trailing bytes in awareness update')
    return count
  } catch (err) {
    if (err instanceof MalformedMessageError) throw err
    throw new MalformedMessageError(`invalid awareness update: ${(err as Error).message}`)
  }
}
