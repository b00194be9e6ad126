/** Messages between the coordinator (bench/run.ts) and its generator worker processes. */
import type { Endpoint } from './wsraw.js'

/** presence: a client that moves its cursor (awareness) on the writers' schedule and echoes others' states. */
export type Role = 'writer' | 'observer' | 'sink' | 'presence'

export interface ClientSpec {
  id: number
  role: Role
  docId: string
  endpoint: Endpoint
}

export interface ConnectResult {
  id: number
  ok: boolean
  /** Connect start to sync step 2 received, ms. */
  ms: number
  error?: string
  /** More than one when the connection was dropped and retried. */
  attempts?: number
  firstError?: string
}

export interface WorkerSnapshot {
  /** Cumulative edits sent per document by this worker's writers. */
  sentByDoc: Record<string, number>
  /** Cumulative sync updates received by sinks and by observers. */
  sinkUpdates: number
  observerUpdates: number
  /** Clients of this worker currently open / closed since connecting. */
  open: number
  closed: number
  closeReasons: Record<string, number>
  /** Cumulative process CPU, µs. */
  cpuUserUs: number
  cpuSystemUs: number
  wallMs: number
  /** Event-loop delay since the last reset, ms. */
  eldP50Ms: number
  eldP99Ms: number
  eldMaxMs: number
  /** Largest writer backlog (edits due but not yet sent when a tick ran) since the last reset. */
  writerLagMax: number
  /** Largest outgoing buffer of a writer, bytes, since the last reset. */
  writerBufferedMax: number
  /** Observer samples (send time, latency) flattened, when requested. */
  samples?: Float64Array
  /** Latency histogram of the updates sinks received since the last take (arrival time - send time). */
  sinkLatency?: { counts: Uint32Array; count: number; max: number }
  /** Presence clients: cumulative moves sent, others' new states received, echoes sent back. */
  presence: { moves: number; deliveries: number; echoes: number }
  /** Latency histogram of the states presence clients received since the last take. */
  presenceLatency?: { counts: Uint32Array; count: number; max: number }
  rssBytes: number
}

/** A client bringing a document made offline, watched by another client of the same document. */
export interface UploadResult {
  ok: boolean
  /** The uploader's connect start to the observer holding the whole document, ms. */
  ms: number
  /** The uploader's sync step 2 (its whole document in one message). */
  bytes: number
  error?: string
}

export interface JoinResult {
  ok: boolean
  /** Connect start to sync step 2 applied, ms. */
  ms: number
  /** Connect start to sync step 2 received (before applying it), ms. */
  receivedMs: number
  step2Bytes: number
  error?: string
}

export interface DocDigest {
  docId: string
  role: 'writer' | 'observer'
  length: number
  stateVector: string
  sum: number
  errors: string[]
}

export type Request =
  | { type: 'connect'; clients: ClientSpec[]; concurrency: number; timeoutMs: number }
  /** Writers edit, and presence clients move their cursor, `rate` times a second each. */
  | { type: 'start-writers'; rate: number }
  | { type: 'stop-writers' }
  | { type: 'record'; on: boolean }
  | { type: 'snapshot'; resetLoopDelay: boolean; takeSamples: boolean }
  | { type: 'digest' }
  | { type: 'close-all' }
  /** Every writer of the worker appends `entries` timestamp entries and `textBytes` of text (in chunks), then waits until its socket flushed. */
  /** scatter: the text goes in as chunk-sized edits at random places, as people write, not appended. */
  | { type: 'fill'; entries: number; textBytes: number; chunkBytes: number; scatter?: boolean }
  /** A fresh Y.Doc client connects, syncs, disconnects. */
  | { type: 'join'; endpoint: Endpoint; timeoutMs: number }
  | { type: 'upload'; endpoint: Endpoint; observer: Endpoint; textBytes: number; chunkBytes: number; timeoutMs: number }

export type Reply =
  | { type: 'connect'; results: ConnectResult[] }
  | { type: 'snapshot'; snapshot: WorkerSnapshot }
  | { type: 'digest'; digests: DocDigest[] }
  | { type: 'join'; result: JoinResult }
  | { type: 'upload'; result: UploadResult }
  | { type: 'ok' }

export interface Envelope<T> {
  seq: number
  body: T
  error?: string
}
