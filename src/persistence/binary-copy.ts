/**
 * Reads PostgreSQL's binary COPY format (`COPY (...) TO STDOUT (FORMAT binary)`) as it streams
 * in: a signature, flags and a header extension, then tuples of length-prefixed fields, then a
 * trailer. node-postgres receives every result column as text, so a bytea arrives as hex, twice
 * its size, and is decoded again on this side; COPY's binary format carries the bytes as they
 * are. A field is copied once, into a buffer of its own size, however many chunks it spans.
 */

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

/** One row: each field's bytes, or null for SQL NULL. */
export type CopyRow = Array<Buffer | null>

export class BinaryCopyReader {
  readonly rows: CopyRow[] = []
  /** Bytes received but not yet consumed (a header, a length or a small field split by a chunk). */
  private pending: Buffer = Buffer.alloc(0)
  private headerRead = false
  private ended = false
  private row: CopyRow | null = null
  private fieldsLeft = 0
  /** The field being filled across chunks, and how much of it is filled. */
  private field: Buffer | null = null
  private filled = 0

  /** Whether the trailer has been read (every row is in `rows`). */
  get done (): boolean {
    return this.ended
  }

  push (chunk: Buffer): void {
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = Buffer.alloc(0)
    let at = 0
    for (;;) {
      if (this.field !== null) {
        const take = Math.min(this.field.length - this.filled, data.length - at)
        data.copy(this.field, this.filled, at, at + take)
        this.filled += take
        at += take
        if (this.filled < this.field.length) return
        this.finishField(this.field)
        this.field = null
        continue
      }
      const left = data.length - at
      if (this.ended) {
        if (left > 0) throw new Error('binary COPY: data after the trailer')
        return
      }
      if (!this.headerRead) {
        if (left < SIGNATURE.length + 8) break
        if (!data.subarray(at, at + SIGNATURE.length).equals(SIGNATURE)) throw new Error('binary COPY: not a binary COPY stream')
        const extension = data.readUInt32BE(at + SIGNATURE.length + 4)
        if (left < SIGNATURE.length + 8 + extension) break
        at += SIGNATURE.length + 8 + extension
        this.headerRead = true
        continue
      }
      if (this.row === null) {
        if (left < 2) break
        const count = data.readInt16BE(at)
        at += 2
        if (count === -1) {
          this.ended = true
          continue
        }
        if (count < 0) throw new Error(`binary COPY: bad field count ${count}`)
        this.row = []
        this.fieldsLeft = count
        if (count === 0) this.finishRow()
        continue
      }
      if (left < 4) break
      const length = data.readInt32BE(at)
      at += 4
      if (length === -1) {
        this.finishField(null)
        continue
      }
      if (length < 0) throw new Error(`binary COPY: bad field length ${length}`)
      this.field = Buffer.allocUnsafe(length)
      this.filled = 0
      if (length === 0) {
        this.finishField(this.field)
        this.field = null
      }
    }
    data = data.subarray(at)
    // Only a few header bytes wait here: a field's own bytes go straight into its buffer.
    this.pending = Buffer.from(data)
  }

  private finishField (value: Buffer | null): void {
    this.row!.push(value)
    if (--this.fieldsLeft === 0) this.finishRow()
  }

  private finishRow (): void {
    this.rows.push(this.row!)
    this.row = null
  }
}

/** A bigint column's 8 bytes as the decimal string node-postgres gives for bigint. */
export function readBigint (field: Buffer): string {
  return field.readBigInt64BE(0).toString()
}

/** A boolean column's byte. */
export function readBoolean (field: Buffer): boolean {
  return field[0] === 1
}
