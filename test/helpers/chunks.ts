import type { ChunkSequence } from '../../src/documents/state-chunks.js'

/** Every chunk a sequence hands out, in order (none for null: the answer fits one message). */
export function drainChunks (sequence: ChunkSequence | null): Uint8Array[] {
  const chunks: Uint8Array[] = []
  for (let chunk = sequence?.next() ?? null; chunk !== null; chunk = sequence?.next() ?? null) chunks.push(chunk)
  return chunks
}
