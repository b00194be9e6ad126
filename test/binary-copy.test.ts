import t from 'tap'
import { BinaryCopyReader, readBigint, readBoolean } from '../src/persistence/binary-copy.js'

// PostgreSQL's binary COPY format, built by hand: signature, flags, header extension, tuples of
// (int16 field count, then int32 length and bytes per field, -1 for NULL), int16 -1 trailer.
function copyStream (rows: Array<Array<Buffer | null>>, extension = Buffer.alloc(0)): Buffer {
  const parts: Buffer[] = [Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')]
  const header = Buffer.alloc(8)
  header.writeUInt32BE(extension.length, 4)
  parts.push(header, extension)
  for (const row of rows) {
    const count = Buffer.alloc(2)
    count.writeInt16BE(row.length)
    parts.push(count)
    for (const field of row) {
      const length = Buffer.alloc(4)
      length.writeInt32BE(field === null ? -1 : field.length)
      parts.push(length)
      if (field !== null) parts.push(field)
    }
  }
  const trailer = Buffer.alloc(2)
  trailer.writeInt16BE(-1)
  parts.push(trailer)
  return Buffer.concat(parts)
}

function bigint (value: bigint): Buffer {
  const field = Buffer.alloc(8)
  field.writeBigInt64BE(value)
  return field
}

const ROWS = [
  [null, null, Buffer.from([1])],
  [bigint(1n), Buffer.from('first entry'), null],
  [bigint(9_007_199_254_740_993n), Buffer.alloc(0), null],
  [bigint(3n), Buffer.alloc(70_000, 7), null]
]

t.test('rows come back whole however the stream is cut', async t => {
  const stream = copyStream(ROWS, Buffer.from('ext'))
  for (const size of [1, 2, 3, 5, 7, 64, 1000, stream.length]) {
    const reader = new BinaryCopyReader()
    let doneEarly = false
    for (let at = 0; at < stream.length; at += size) {
      doneEarly ||= reader.done
      reader.push(stream.subarray(at, at + size))
    }
    t.notOk(doneEarly, `chunks of ${size}: not done before the trailer`)
    t.ok(reader.done, `chunks of ${size}: the trailer is read`)
    t.same(reader.rows, ROWS, `chunks of ${size}: the same rows`)
  }
})

t.test('field readers: bigint as node-postgres gives it, boolean', async t => {
  t.equal(readBigint(bigint(9_007_199_254_740_993n)), '9007199254740993', 'beyond 2^53, exact')
  t.equal(readBigint(bigint(-5n)), '-5')
  t.equal(readBoolean(Buffer.from([1])), true)
  t.equal(readBoolean(Buffer.from([0])), false)
})

t.test('a stream that is not binary COPY, or has data after its trailer, is refused', async t => {
  t.throws(() => { new BinaryCopyReader().push(Buffer.from('id,value\n1,abc\n................')) }, /not a binary COPY stream/)
  const reader = new BinaryCopyReader()
  t.throws(() => { reader.push(Buffer.concat([copyStream([]), Buffer.from([0])])) }, /data after the trailer/)
  const negative = copyStream([[Buffer.from('x')]])
  negative.writeInt32BE(-7, 19 + 2)
  t.throws(() => { new BinaryCopyReader().push(negative) }, /bad field length -7/)
})

t.test('a stream cut short is not done', async t => {
  const stream = copyStream(ROWS)
  const reader = new BinaryCopyReader()
  reader.push(stream.subarray(0, stream.length - 2))
  t.notOk(reader.done)
  t.equal(reader.rows.length, ROWS.length, 'the whole rows before the cut are there')
})
