/**
 * A generator worker process: hosts writers, observers and lean sinks, and answers the
 * coordinator over IPC. Started by pool.ts with child_process.fork.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import * as Y from 'yjs'
import type { ClientSpec, ConnectResult, DocDigest, Envelope, JoinResult, Reply, Request, UploadResult, WorkerSnapshot } from './ipc.js'
import { LatencyHistogram } from './stats.js'
import { EMPTY_SYNC_STEP1, RawWebSocket, sinkLatency } from './wsraw.js'
import { fillBody, now, Observer, Writer, YClient } from './yclient.js'
import { PresenceClient, presenceLatency } from './presence-client.js'

const TICK_MS = 5

const sinks: RawWebSocket[] = []
const writers: Writer[] = []
const observers: Observer[] = []
const presenceClients: PresenceClient[] = []
let closedCount = 0
const closeReasons: Record<string, number> = {}

const loopDelay = monitorEventLoopDelay({ resolution: 5 })
loopDelay.enable()

const sinkHistogram = new LatencyHistogram()
const presenceHistogram = new LatencyHistogram()
let writerLagMax = 0
let writerBufferedMax = 0
let ticker: NodeJS.Timeout | null = null

function noteClose (reason: string): void {
  closedCount++
  const key = reason.replace(/\d{4,}/g, 'N').slice(0, 120)
  closeReasons[key] = (closeReasons[key] ?? 0) + 1
}

async function connectAll (specs: ClientSpec[], concurrency: number, timeoutMs: number): Promise<ConnectResult[]> {
  const results: ConnectResult[] = []
  let next = 0
  const one = async (spec: ClientSpec): Promise<ConnectResult> => {
    const started = now()
    return await new Promise<ConnectResult>(resolve => {
      let done = false
      let open = false
      /** Drops a client that never synced, so retries do not leave dead clients behind. */
      let discard = (): void => {}
      const finish = (ok: boolean, error?: string): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        if (!ok) discard()
        resolve({ id: spec.id, ok, ms: now() - started, ...(error === undefined ? {} : { error }) })
      }
      const onClose = (reason: string): void => {
        if (done) { if (open) noteClose(reason) } else finish(false, reason)
      }
      const timer = setTimeout(() => finish(false, 'timed out before sync'), timeoutMs)
      if (spec.role === 'sink') {
        const sink = new RawWebSocket(spec.endpoint, {
          mode: 'count',
          onOpen: () => { open = true; sink.send(EMPTY_SYNC_STEP1) },
          onClose
        })
        sink.onStep2 = () => finish(true)
        sinks.push(sink)
        discard = () => {
          sink.destroy()
          sinks.splice(sinks.indexOf(sink), 1)
        }
      } else if (spec.role === 'presence') {
        const client = new PresenceClient({ endpoint: spec.endpoint, onSynced: () => { open = true; finish(true) }, onClose })
        presenceClients.push(client)
        discard = () => {
          client.close()
          presenceClients.splice(presenceClients.indexOf(client), 1)
        }
      } else {
        const options = { endpoint: spec.endpoint, onSynced: () => { open = true; finish(true) }, onClose }
        const client: YClient = spec.role === 'writer' ? new Writer(options) : new Observer(options)
        clientDoc.set(client, spec.docId)
        const list: YClient[] = client instanceof Writer ? writers : observers
        list.push(client)
        discard = () => {
          client.close()
          list.splice(list.indexOf(client), 1)
          clientDoc.delete(client)
        }
      }
    })
  }

  // A refused upgrade (HTTP status) is final; a dropped TCP connection is retried twice, as a real
  // client would reconnect. The result counts the attempts, so retries stay visible.
  const withRetries = async (spec: ClientSpec): Promise<ConnectResult> => {
    let result = await one(spec)
    for (let attempt = 2; attempt <= 3 && !result.ok && !/upgrade refused/.test(result.error ?? ''); attempt++) {
      await new Promise(resolve => setTimeout(resolve, 100 * attempt))
      const retry = await one(spec)
      result = { ...retry, attempts: attempt, ...(retry.ok ? { firstError: result.error } : {}) }
    }
    return result
  }
  const lanes = Array.from({ length: Math.max(1, Math.min(concurrency, specs.length)) }, async () => {
    while (next < specs.length) {
      const spec = specs[next++]!
      results.push(await withRetries(spec))
    }
  })
  await Promise.all(lanes)
  return results
}

const clientDoc = new Map<YClient, string>()

/** A client acting on the schedule: a writer's edit, a presence client's cursor move. */
interface Actor {
  ws: RawWebSocket
  act: () => void
}

interface Schedule {
  rate: number
  actors: Actor[]
  /** Per-actor start (epoch ms, with a random phase) and actions taken under this schedule. */
  starts: number[]
  done: number[]
}
let schedule: Schedule | null = null

function startWriters (rate: number): void {
  stopWriters()
  const actors: Actor[] = [
    ...writers.map(writer => ({ ws: writer.ws, act: () => { writer.write() } })),
    ...presenceClients.map(client => ({ ws: client.ws, act: () => { client.move() } }))
  ]
  if (rate <= 0 || actors.length === 0) return
  const t0 = now()
  const period = 1000 / rate
  schedule = {
    rate,
    actors,
    // A random phase per actor: 200 writers at 5/s must not all fire in the same millisecond.
    starts: actors.map(() => t0 + Math.random() * period),
    done: actors.map(() => 0)
  }
  ticker = setInterval(tick, TICK_MS)
}

function tick (): void {
  const s = schedule
  if (s === null) return
  const t = now()
  for (let w = 0; w < s.actors.length; w++) {
    const actor = s.actors[w]!
    if (actor.ws.state !== 'open') continue
    const due = Math.floor((t - s.starts[w]!) * s.rate / 1000) + 1
    const backlog = due - s.done[w]!
    if (backlog <= 0) continue
    if (backlog > writerLagMax) writerLagMax = backlog
    actor.ws.cork()
    for (let k = 0; k < backlog; k++) actor.act()
    actor.ws.uncork()
    s.done[w] = due
    const buffered = actor.ws.bufferedBytes
    if (buffered > writerBufferedMax) writerBufferedMax = buffered
  }
}

function stopWriters (): void {
  if (ticker !== null) clearInterval(ticker)
  ticker = null
  schedule = null
}

function snapshot (resetLoopDelay: boolean, takeSamples: boolean): WorkerSnapshot {
  const sentByDoc: Record<string, number> = {}
  for (const writer of writers) {
    const docId = clientDoc.get(writer)!
    sentByDoc[docId] = (sentByDoc[docId] ?? 0) + writer.sent
  }
  let sinkUpdates = 0
  let open = 0
  for (const sink of sinks) {
    sinkUpdates += sink.updates
    if (sink.state === 'open') open++
  }
  let observerUpdates = 0
  for (const observer of observers) {
    observerUpdates += observer.ws.updates
    if (observer.ws.state === 'open') open++
  }
  for (const writer of writers) if (writer.ws.state === 'open') open++
  const presence = { moves: 0, deliveries: 0, echoes: 0 }
  for (const client of presenceClients) {
    presence.moves += client.moves
    presence.deliveries += client.deliveries
    presence.echoes += client.echoes
    if (client.ws.state === 'open') open++
  }
  const cpu = process.cpuUsage()
  const result: WorkerSnapshot = {
    sentByDoc,
    sinkUpdates,
    observerUpdates,
    open,
    closed: closedCount,
    closeReasons: { ...closeReasons },
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    wallMs: now(),
    eldP50Ms: loopDelay.percentile(50) / 1e6,
    eldP99Ms: loopDelay.percentile(99) / 1e6,
    eldMaxMs: loopDelay.max / 1e6,
    writerLagMax,
    writerBufferedMax,
    presence,
    rssBytes: process.memoryUsage.rss()
  }
  if (takeSamples) {
    const all: number[] = []
    for (const observer of observers) {
      const samples = observer.takeSamples()
      for (let k = 0; k < samples.length; k++) all.push(samples[k]!)
    }
    result.samples = Float64Array.from(all)
  }
  if (takeSamples && sinks.length > 0) {
    result.sinkLatency = { counts: sinkHistogram.counts.slice(), count: sinkHistogram.count, max: sinkHistogram.max }
    sinkHistogram.reset()
  }
  if (takeSamples && presenceClients.length > 0) {
    result.presenceLatency = { counts: presenceHistogram.counts.slice(), count: presenceHistogram.count, max: presenceHistogram.max }
    presenceHistogram.reset()
  }
  if (resetLoopDelay) {
    loopDelay.reset()
    writerLagMax = 0
    writerBufferedMax = 0
  }
  return result
}

function digests (): DocDigest[] {
  const out: DocDigest[] = []
  for (const client of [...writers, ...observers]) {
    out.push({
      docId: clientDoc.get(client)!,
      role: client instanceof Writer ? 'writer' : 'observer',
      ...client.digest(),
      errors: client.errors
    })
  }
  return out
}

function closeAll (): void {
  stopWriters()
  for (const client of uploads) client.close()
  uploads.length = 0
  for (const sink of sinks) sink.close()
  for (const client of [...writers, ...observers, ...presenceClients]) client.close()
  sinks.length = 0
  presenceClients.length = 0
  writers.length = 0
  observers.length = 0
  clientDoc.clear()
}

async function fill (entries: number, textBytes: number, chunkBytes: number, scatter: boolean): Promise<void> {
  for (const writer of writers) {
    for (let i = 0; i < entries; i++) writer.write()
    if (textBytes > 0) writer.fillText(textBytes, chunkBytes, scatter)
  }
  await Promise.all(writers.map(async w => { await w.flushed() }))
}

/** Clients of uploads, kept connected until close-all so that the document stays loaded. */
const uploads: YClient[] = []

async function upload (endpoint: ClientSpec['endpoint'], observerEndpoint: ClientSpec['endpoint'], textBytes: number, chunkBytes: number, timeoutMs: number): Promise<UploadResult> {
  const deadline = now() + timeoutMs
  const observer = new YClient({ endpoint: observerEndpoint })
  uploads.push(observer)
  while (!observer.synced) {
    if (now() > deadline) return { ok: false, ms: 0, bytes: 0, error: 'observer did not sync' }
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const offline = new Y.Doc()
  fillBody(offline, textBytes, chunkBytes)
  const bytes = Y.encodeStateAsUpdate(offline).length
  const started = now()
  const uploader = new YClient({ endpoint, doc: offline })
  uploads.push(uploader)
  const body = observer.doc.getText('body')
  while (body.length < textBytes) {
    if (now() > deadline) return { ok: false, ms: now() - started, bytes, error: `observer has ${body.length} of ${textBytes} characters` }
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  return { ok: true, ms: now() - started, bytes }
}

async function join (endpoint: ClientSpec['endpoint'], timeoutMs: number): Promise<JoinResult> {
  return await new Promise<JoinResult>(resolve => {
    let done = false
    const finish = (ok: boolean, error?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      const t = now()
      resolve({
        ok,
        ms: (ok ? client.syncedAt : t) - client.startedAt,
        receivedMs: client.step2ReceivedAt === 0 ? -1 : client.step2ReceivedAt - client.startedAt,
        step2Bytes: client.step2Bytes,
        ...(error === undefined ? {} : { error })
      })
      client.close()
    }
    const client = new YClient({ endpoint, onSynced: () => finish(true), onClose: reason => finish(false, reason) })
    const timer = setTimeout(() => finish(false, 'timed out before sync'), timeoutMs)
  })
}

async function handle (request: Request): Promise<Reply> {
  switch (request.type) {
    case 'connect':
      return { type: 'connect', results: await connectAll(request.clients, request.concurrency, request.timeoutMs) }
    case 'start-writers':
      startWriters(request.rate)
      return { type: 'ok' }
    case 'stop-writers':
      stopWriters()
      return { type: 'ok' }
    case 'record':
      for (const observer of observers) observer.recording = request.on
      sinkLatency.hist = request.on ? sinkHistogram : null
      presenceLatency.hist = request.on ? presenceHistogram : null
      return { type: 'ok' }
    case 'snapshot':
      return { type: 'snapshot', snapshot: snapshot(request.resetLoopDelay, request.takeSamples) }
    case 'digest':
      return { type: 'digest', digests: digests() }
    case 'close-all':
      closeAll()
      return { type: 'ok' }
    case 'fill':
      await fill(request.entries, request.textBytes, request.chunkBytes, request.scatter === true)
      return { type: 'ok' }
    case 'join':
      return { type: 'join', result: await join(request.endpoint, request.timeoutMs) }
    case 'upload':
      return { type: 'upload', result: await upload(request.endpoint, request.observer, request.textBytes, request.chunkBytes, request.timeoutMs) }
  }
}

process.on('message', (message: Envelope<Request>) => {
  handle(message.body).then(
    body => process.send?.({ seq: message.seq, body } satisfies Envelope<Reply>),
    (err: Error) => process.send?.({ seq: message.seq, body: { type: 'ok' }, error: err.stack ?? err.message } satisfies Envelope<Reply>)
  )
})
// The coordinator going away ends the worker: no orphaned load.
process.on('disconnect', () => process.exit(0))
