import { EnvelopeKind, type Envelope } from './envelope.js'

type Part = Extract<Envelope, { t: typeof EnvelopeKind.Part }>

/**
 * Redis disconnects a pub/sub subscriber whose output buffer passes its hard limit (32 MiB by
 * default) and holds one message whole in it: an envelope carrying a large document would cut every
 * peer off. Such an envelope crosses as parts of PART_BYTES, published back to back and put
 * together by the receiver.
 */
export const PART_BYTES = 512 * 1024

/** The parts of an encoded envelope larger than `partBytes`, or null when it fits in one message. */
export function splitEnvelope (encoded: Uint8Array, from: { n: string, d: string }, series: number, partBytes = PART_BYTES): Part[] | null {
  if (encoded.length <= partBytes) return null
  const count = Math.ceil(encoded.length / partBytes)
  const parts: Part[] = []
  for (let k = 0; k < count; k++) {
    parts.push({ t: EnvelopeKind.Part, n: from.n, d: from.d, i: series, k, c: count, b: encoded.subarray(k * partBytes, (k + 1) * partBytes) })
  }
  return parts
}

/**
 * Puts parts back together, one series per sending node at a time. A node publishes a series back
 * to back on one connection, so its parts arrive in order and unmixed: a part out of order (pub/sub
 * lost one) drops the series, and the lost envelope is found like any other (a sequence gap, then
 * a re-sync). At most `maxBytes` per series are held.
 */
export class PartAssembly {
  private readonly series = new Map<string, { i: number, next: number, count: number, bytes: number, parts: Uint8Array[] }>()

  constructor (private readonly maxBytes: number) {}

  /** The whole envelope once its last part arrived; null before that or for a dropped series. */
  add (part: Part): Uint8Array | null {
    let series = this.series.get(part.n)
    if (part.k === 0) {
      series = { i: part.i, next: 0, count: part.c, bytes: 0, parts: [] }
      this.series.set(part.n, series)
    }
    if (series === undefined || series.i !== part.i || series.next !== part.k || series.count !== part.c) {
      this.series.delete(part.n)
      return null
    }
    series.bytes += part.b.length
    if (series.bytes > this.maxBytes) {
      this.series.delete(part.n)
      return null
    }
    series.parts.push(part.b)
    series.next++
    if (series.next < series.count) return null
    this.series.delete(part.n)
    return Buffer.concat(series.parts)
  }

}
