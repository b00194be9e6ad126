/**
 * An empty map that many owners share until one of them needs a map of its own: an empty `Map` is
 * about 190 bytes of heap, paid by every loaded document for each map it rarely uses. The owner
 * replaces it before writing; a write that reaches it anyway is a bug that must not spread to the
 * other owners, so it throws.
 */
export class SharedEmptyMap<K, V> extends Map<K, V> {
  constructor (private readonly what: string) {
    super()
  }

  override set (): never {
    throw new Error(`a write reached the shared empty ${this.what}`)
  }
}
