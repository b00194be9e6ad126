/**
 * A minimal WebSocket client on a raw TCP socket, built for load generation.
 *
 * A `ws` client costs about as much CPU per received message as the server spends sending it, so a
 * generator built from them saturates before the server does. This client does the HTTP upgrade
 * itself and, in "count" mode, reads only frame headers plus the first two payload bytes (enough
 * to tell a y-websocket sync update from anything else). Every socket of a process reads into one
 * shared buffer (`net` `onread`), so receiving allocates nothing. Pings are answered with pongs and
 * a server close is answered, so each connection stays valid by the WebSocket spec.
 *
 * In "full" mode whole messages are reassembled and handed to `onMessage` (copied out of the
 * shared buffer): that is what the writer, observer and joiner clients use.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import type { LatencyHistogram } from './stats.js'

export interface Endpoint {
  host: string
  port: number
  /** Request path including the query, e.g. `/ws/document/doc-1?token=...`. */
  path: string
  /**
   * Hocuspocus multiplexes documents on one socket: every message in both directions starts with
   * the document's name (a lib0 var string), and a document is opened by an authentication
   * message. Set for a Hocuspocus server; the y-websocket messages are otherwise the same.
   */
  multiplexName?: string
}

/** lib0's var string: the UTF-8 length as a var uint, then the bytes. */
function varString (text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const length: number[] = []
  let n = bytes.length
  while (n > 0x7f) { length.push(0x80 | (n & 0x7f)); n >>>= 7 }
  length.push(n)
  return Buffer.concat([Buffer.from(length), bytes])
}

export type ConnState = 'connecting' | 'upgrading' | 'open' | 'closed'

/** Shared read buffer: reads are processed synchronously, so every socket of a process can share one. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

/** Pre-drawn random bytes for masking keys; a client must mask, the key need not be secret here. */
const MASK_POOL = randomBytes(64 * 1024)
let maskOffset = 0
function nextMask (): number {
  if (maskOffset + 4 > MASK_POOL.length) maskOffset = 0
  const offset = maskOffset
  maskOffset += 4
  return offset
}

const OP_CONT = 0x0
const OP_BINARY = 0x2
const OP_CLOSE = 0x8
const OP_PING = 0x9
const OP_PONG = 0xa

/**
 * Where count-mode sockets record the latency of the updates they receive (null: not recording).
 * One holder per process, so recording is switched on and off for every sink at once.
 */
export const sinkLatency: { hist: LatencyHistogram | null } = { hist: null }

const SEMICOLON = 0x3b
const DOT = 0x2e

/**
 * The send time the bench writer embeds in its updates. A Y.Text append of `<epoch ms>;` encodes
 * as an update that ends with that text followed by an empty delete set (byte 0), and every
 * server forwards or re-encodes it that way, so the timestamp sits right before the last two bytes.
 */
export function embeddedSendTime (buf: Uint8Array, start: number, end: number): number {
  if (end - start < 8 || buf[end - 1] !== 0 || buf[end - 2] !== SEMICOLON) return -1
  let value = 0
  let scale = 0
  let k = end - 3
  const stop = Math.max(start, end - 26)
  for (; k >= stop; k--) {
    const c = buf[k]!
    if (c === DOT) { scale = end - 3 - k; continue }
    if (c < 0x30 || c > 0x39) break
  }
  for (let j = k + 1; j < end - 2; j++) {
    const c = buf[j]!
    if (c !== DOT) value = value * 10 + (c - 0x30)
  }
  return k === end - 3 ? -1 : value / 10 ** scale
}

export interface RawWsOptions {
  mode: 'count' | 'full'
  /** Full mode: one reassembled message (a fresh copy). */
  onMessage?: (message: Uint8Array) => void
  onOpen?: () => void
  onClose?: (reason: string) => void
}

/**
 * One client connection. Counters are plain fields so a process with thousands of sinks can sum
 * them cheaply.
 */
export class RawWebSocket {
  state: ConnState = 'connecting'
  /** Data messages whose payload starts with 00 02 (y-websocket sync update). */
  updates = 0
  /** Data messages whose payload starts with 00 01 (sync step 2). */
  step2s = 0
  /** Any other data messages (sync step 1, awareness, auth). */
  others = 0
  pings = 0
  bytesIn = 0
  closeCode = 0
  closeReason = ''
  /** Set by the first sync step 2 received (the answer to our step 1). */
  onStep2: (() => void) | null = null

  private readonly socket: Socket
  private readonly mode: 'count' | 'full'
  private readonly options: RawWsOptions
  private carry: Buffer | null = null
  /** Count mode: payload bytes of the current frame still to skip. */
  private skip = 0
  /** Full mode: the message being reassembled. */
  private parts: Buffer[] = []
  private partsLength = 0
  private frameRemaining = 0
  private frameFin = true
  private httpHead = ''
  /** Bytes every message starts with (Hocuspocus's document name), empty for y-websocket. */
  private readonly prefix: Buffer

  constructor (endpoint: Endpoint, options: RawWsOptions) {
    this.options = options
    this.mode = options.mode
    this.prefix = endpoint.multiplexName === undefined ? Buffer.alloc(0) : varString(endpoint.multiplexName)
    this.socket = connect({
      host: endpoint.host,
      port: endpoint.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (nread: number, buf: Uint8Array): boolean => {
          this.bytesIn += nread
          try {
            this.onBytes(buf as Buffer, 0, nread)
          } catch (err) {
            this.fail(`client error: ${(err as Error).message}`)
          }
          return true
        }
      }
    })
    this.socket.on('connect', () => {
      this.state = 'upgrading'
      const key = randomBytes(16).toString('base64')
      this.socket.write(
        `GET ${endpoint.path} HTTP/1.1\r\n` +
        `Host: ${endpoint.host}:${endpoint.port}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    })
    this.socket.on('error', err => this.fail(`socket error: ${err.message}`))
    this.socket.on('close', () => this.fail(this.state === 'open' ? 'connection closed' : 'closed before upgrade'))
  }

  get bufferedBytes (): number {
    return this.socket.writableLength
  }

  /** Batches the writes of one scheduler tick into one syscall; frames stay separate messages. */
  cork (): void {
    this.socket.cork()
  }

  uncork (): void {
    this.socket.uncork()
  }

  /** Sends one binary message, masked as the spec requires of clients. */
  send (payload: Uint8Array): void {
    if (this.state !== 'open') return
    this.socket.write(encodeFrame(OP_BINARY, this.prefix.length === 0 ? payload : Buffer.concat([this.prefix, payload])))
  }

  /** Closes with a close frame, then ends the TCP connection. */
  close (code = 1000): void {
    if (this.state === 'open') {
      const body = Buffer.alloc(2)
      body.writeUInt16BE(code)
      this.socket.end(encodeFrame(OP_CLOSE, body))
      this.markClosed('closed by client')
    } else {
      this.socket.destroy()
      this.markClosed('closed by client')
    }
  }

  destroy (): void {
    this.socket.destroy()
    this.markClosed('destroyed')
  }

  private fail (reason: string): void {
    if (this.state === 'closed') return
    this.socket.destroy()
    this.markClosed(reason)
  }

  private markClosed (reason: string): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    if (this.closeReason === '') this.closeReason = reason
    this.options.onClose?.(this.closeReason)
  }

  private onBytes (buf: Buffer, start: number, end: number): void {
    if (this.state === 'upgrading' || this.state === 'connecting') {
      start = this.readHttpHead(buf, start, end)
      if (start < 0 || (this.state as ConnState) !== 'open') return
    }
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, buf.subarray(start, end)])
      this.carry = null
      start = 0
      end = buf.length
    }
    let i = start
    let readAt = 0
    // Continue the payload of a frame that spanned reads.
    if (this.skip > 0) {
      const n = Math.min(this.skip, end - i)
      this.skip -= n
      i += n
    } else if (this.frameRemaining > 0) {
      const n = Math.min(this.frameRemaining, end - i)
      this.parts.push(Buffer.from(buf.subarray(i, i + n)))
      this.partsLength += n
      this.frameRemaining -= n
      i += n
      if (this.frameRemaining === 0 && this.frameFin) this.deliver()
    }
    while (i < end && this.state === 'open') {
      const avail = end - i
      if (avail < 2) break
      const b0 = buf[i]!
      const b1 = buf[i + 1]!
      const opcode = b0 & 0x0f
      const fin = (b0 & 0x80) !== 0
      let len = b1 & 0x7f
      let headerLength = 2
      if ((b1 & 0x80) !== 0) throw new Error('server sent a masked frame')
      if (len === 126) {
        if (avail < 4) break
        len = buf.readUInt16BE(i + 2)
        headerLength = 4
      } else if (len === 127) {
        if (avail < 10) break
        len = buf.readUInt32BE(i + 2) * 0x100000000 + buf.readUInt32BE(i + 6)
        headerLength = 10
      }
      const payloadStart = i + headerLength
      const inBuffer = end - payloadStart
      if (opcode >= 0x8) {
        // Control frames are at most 125 bytes: wait until the whole frame is here.
        if (inBuffer < len) break
        this.control(opcode, buf.subarray(payloadStart, payloadStart + len))
        i = payloadStart + len
        continue
      }
      if (this.mode === 'count') {
        // Classify by the first two payload bytes (the first fragment carries them).
        if (opcode !== OP_CONT) {
          const at = payloadStart + this.prefix.length
          const need = Math.min(len, this.prefix.length + 2)
          if (inBuffer < need) break
          if (len >= this.prefix.length + 2 && buf[at] === 0) {
            const sub = buf[at + 1]
            if (sub === 2) {
              this.updates++
              const hist = sinkLatency.hist
              if (hist !== null && inBuffer >= len) {
                const sentAt = embeddedSendTime(buf, payloadStart, payloadStart + len)
                if (sentAt > 0) {
                  if (readAt === 0) readAt = performance.timeOrigin + performance.now()
                  hist.record(readAt - sentAt)
                }
              }
            } else if (sub === 1) this.onSyncStep2()
            else this.others++
          } else {
            this.others++
          }
        }
        if (inBuffer >= len) {
          i = payloadStart + len
        } else {
          this.skip = len - inBuffer
          i = end
        }
      } else {
        if (opcode !== OP_CONT) {
          this.parts = []
          this.partsLength = 0
        }
        this.frameFin = fin
        if (inBuffer >= len) {
          this.parts.push(Buffer.from(buf.subarray(payloadStart, payloadStart + len)))
          this.partsLength += len
          i = payloadStart + len
          if (fin) this.deliver()
        } else {
          this.parts.push(Buffer.from(buf.subarray(payloadStart, end)))
          this.partsLength += inBuffer
          this.frameRemaining = len - inBuffer
          i = end
        }
      }
    }
    if (i < end && this.state === 'open') this.carry = Buffer.from(buf.subarray(i, end))
  }

  private onSyncStep2 (): void {
    this.step2s++
    if (this.onStep2 !== null) {
      const callback = this.onStep2
      this.onStep2 = null
      callback()
    }
  }

  private deliver (): void {
    const message = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLength)
    this.parts = []
    this.partsLength = 0
    const skip = Math.min(this.prefix.length, message.byteLength)
    const data = new Uint8Array(message.buffer, message.byteOffset + skip, message.byteLength - skip)
    if (data.length >= 2 && data[0] === 0) {
      if (data[1] === 2) this.updates++
      else if (data[1] === 1) this.step2s++
      else this.others++
    } else {
      this.others++
    }
    this.options.onMessage?.(data)
  }

  private control (opcode: number, payload: Buffer): void {
    if (opcode === OP_PING) {
      this.pings++
      this.socket.write(encodeFrame(OP_PONG, payload))
    } else if (opcode === OP_CLOSE) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
      this.closeReason = `closed by server (${this.closeCode}${payload.length > 2 ? ' ' + payload.subarray(2).toString() : ''})`
      const body = Buffer.alloc(2)
      body.writeUInt16BE(this.closeCode === 1005 ? 1000 : this.closeCode)
      this.socket.end(encodeFrame(OP_CLOSE, body))
      this.markClosed(this.closeReason)
    }
    // Pongs and reserved opcodes are ignored.
  }

  /** Reads the HTTP response head; returns the offset of the first WebSocket byte, or -1. */
  private readHttpHead (buf: Buffer, start: number, end: number): number {
    const chunk = buf.toString('latin1', start, end)
    this.httpHead += chunk
    const headEnd = this.httpHead.indexOf('\r\n\r\n')
    if (headEnd < 0) {
      if (this.httpHead.length > 64 * 1024) this.fail('oversized HTTP response head')
      return -1
    }
    const statusLine = this.httpHead.slice(0, this.httpHead.indexOf('\r\n'))
    const status = Number(statusLine.split(' ')[1])
    if (status !== 101) {
      this.closeCode = status
      this.fail(`upgrade refused: ${statusLine}`)
      return -1
    }
    // Bytes after the head in this read are WebSocket frames.
    const consumedFromChunk = headEnd + 4 - (this.httpHead.length - chunk.length)
    this.httpHead = ''
    this.state = 'open'
    // Hocuspocus opens the document on an authentication message (type 2, a token: none here).
    if (this.prefix.length > 0) this.send(Buffer.concat([Buffer.from([2, 0]), varString('')]))
    this.options.onOpen?.()
    return start + consumedFromChunk
  }
}

function encodeFrame (opcode: number, payload: Uint8Array): Buffer {
  const len = payload.length
  const headerLength = len < 126 ? 2 : len < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(headerLength + 4 + len)
  frame[0] = 0x80 | opcode
  if (len < 126) {
    frame[1] = 0x80 | len
  } else if (len < 65536) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(len, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeUInt32BE(Math.floor(len / 0x100000000), 2)
    frame.writeUInt32BE(len >>> 0, 6)
  }
  const maskAt = nextMask()
  const m0 = MASK_POOL[maskAt]!
  const m1 = MASK_POOL[maskAt + 1]!
  const m2 = MASK_POOL[maskAt + 2]!
  const m3 = MASK_POOL[maskAt + 3]!
  frame[headerLength] = m0
  frame[headerLength + 1] = m1
  frame[headerLength + 2] = m2
  frame[headerLength + 3] = m3
  const out = headerLength + 4
  for (let k = 0; k < len; k++) {
    const m = (k & 3) === 0 ? m0 : (k & 3) === 1 ? m1 : (k & 3) === 2 ? m2 : m3
    frame[out + k] = payload[k]! ^ m
  }
  return frame
}

/** y-websocket sync step 1 with an empty state vector: "send me the whole document". */
export const EMPTY_SYNC_STEP1 = new Uint8Array([0, 0, 1, 0])
