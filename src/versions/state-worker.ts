import { Worker, type ResourceLimits } from 'node:worker_threads'
import type { ChunkSize } from '../documents/state-chunks.js'

/** What the state worker's thread is asked to compute (state-worker-thread.ts). */
export type StateTask =
  | { id: number, kind: 'restore', current: Uint8Array, version: Uint8Array, size: ChunkSize }
  | { id: number, kind: 'diff', from: Uint8Array, to: Uint8Array }
  | { id: number, kind: 'json', state: Uint8Array }

export type StateTaskReply =
  | { id: number, ok: true, kind: 'restore', updates: Uint8Array[], current: Uint8Array }
  | { id: number, ok: true, kind: 'diff' | 'json', json: string }
  | { id: number, ok: false, message: string }

/** The worker thread failed or stopped before it answered (the server itself is unharmed). */
export class StateWorkerError extends Error {
  override readonly name: string = 'StateWorkerError'
}

/** MAX_QUEUED_TASKS tasks wait already: refused at once (each holds its states in memory). */
export class StateWorkerBusyError extends StateWorkerError {
  override readonly name = 'StateWorkerBusyError'
}

/** A restore's result, with the current state it was computed from handed back. */
export interface RestoreResult {
  /** The restore as updates of about a chunk each, to be applied in order (restoreStateChunks). */
  updates: Uint8Array[]
  current: Uint8Array
}

/** The thread is stopped after this long without work: an idle server keeps no second V8 heap. */
const IDLE_STOP_MS = 30_000

/** Tasks waiting or running at once; more are refused (StateWorkerBusyError). */
export const MAX_QUEUED_TASKS = 8

interface Pending {
  resolve: (reply: StateTaskReply) => void
  reject: (err: Error) => void
}

/**
 * Work on whole document states that would otherwise hold the event loop for as long as a large
 * document takes to decode (a restore's computation, a diff, a version as JSON): done on one worker
 * thread, one task at a time (at most MAX_QUEUED_TASKS waiting), while every client's messages
 * keep flowing. The states go to the thread and large results come back without being copied
 * (their buffers are transferred).
 *
 * The thread starts on first use and stops when idle. If it dies (an exception, or a computation
 * that ran out of memory: V8 ends only that thread), the tasks in flight fail with
 * StateWorkerError and the next task starts a new thread.
 */
export class StateWorker {
  private worker: Worker | null = null
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private idleTimer: NodeJS.Timeout | null = null
  private closed = false

  /** `resourceLimits`: the thread's heap limits (tests provoke running out of memory with them). */
  constructor (private readonly resourceLimits?: ResourceLimits) {}

  /**
   * The updates that restore the version's content on top of `current`, in chunks of `size`
   * (versions/restore.ts). Both states are handed over: the caller must not use them afterwards,
   * except `current` as returned in the result.
   */
  async restore (current: Uint8Array, version: Uint8Array, size: ChunkSize): Promise<RestoreResult> {
    const reply = await this.run(id => ({ id, kind: 'restore', current: owned(current), version: owned(version), size }))
    if (!reply.ok || reply.kind !== 'restore') throw new StateWorkerError('unexpected reply from the state worker')
    return { updates: reply.updates, current: reply.current }
  }

  /** diffStates(from, to) as JSON text. Both states are handed over. */
  async diffJson (from: Uint8Array, to: Uint8Array): Promise<string> {
    return await this.runJson(id => ({ id, kind: 'diff', from: owned(from), to: owned(to) }))
  }

  /** documentToJson(state) as JSON text. The state is handed over. */
  async documentJson (state: Uint8Array): Promise<string> {
    return await this.runJson(id => ({ id, kind: 'json', state: owned(state) }))
  }

  /** Stops the thread; tasks in flight fail. */
  async close (): Promise<void> {
    this.closed = true
    await this.stop()
  }

  private async runJson (task: (id: number) => StateTask): Promise<string> {
    const reply = await this.run(task)
    if (!reply.ok || reply.kind === 'restore') throw new StateWorkerError('unexpected reply from the state worker')
    return reply.json
  }

  private async run (make: (id: number) => StateTask): Promise<StateTaskReply & { ok: true }> {
    if (this.closed) throw new StateWorkerError('the server is shutting down')
    if (this.pending.size >= MAX_QUEUED_TASKS) throw new StateWorkerBusyError(`${MAX_QUEUED_TASKS} computations on document states are queued on this node`)
    const worker = this.started()
    const task = make(this.nextId++)
    const reply = await new Promise<StateTaskReply>((resolve, reject) => {
      this.pending.set(task.id, { resolve, reject })
      if (this.pending.size === 1) worker.ref()
      worker.postMessage(task, transferList(task))
    })
    if (!reply.ok) throw new StateWorkerError(reply.message)
    return reply
  }

  private started (): Worker {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
    if (this.worker !== null) return this.worker
    const worker = new Worker(threadBootstrap(), { eval: true, ...(this.resourceLimits === undefined ? {} : { resourceLimits: this.resourceLimits }) })
    worker.unref()
    worker.on('message', (reply: StateTaskReply) => { this.settle(worker, reply) })
    worker.on('error', err => { this.fail(worker, new StateWorkerError(`the state worker failed: ${err.message}`)) })
    worker.on('exit', code => { this.fail(worker, new StateWorkerError(`the state worker stopped (exit code ${code})`)) })
    this.worker = worker
    return worker
  }

  private settle (worker: Worker, reply: StateTaskReply): void {
    const waiting = this.pending.get(reply.id)
    if (waiting === undefined) return
    this.pending.delete(reply.id)
    if (this.pending.size === 0) this.becameIdle(worker)
    waiting.resolve(reply)
  }

  private becameIdle (worker: Worker): void {
    worker.unref()
    this.idleTimer = setTimeout(() => { void this.stop() }, IDLE_STOP_MS)
    this.idleTimer.unref()
  }

  private fail (worker: Worker, err: Error): void {
    if (this.worker !== worker) return
    this.worker = null
    for (const waiting of this.pending.values()) waiting.reject(err)
    this.pending.clear()
  }

  private async stop (): Promise<void> {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
    const worker = this.worker
    if (worker === null) return
    this.fail(worker, new StateWorkerError('the state worker was stopped'))
    await worker.terminate()
  }
}

/**
 * The thread's first code: it imports the thread's module. Run from the sources (`npm run dev`,
 * the tests) that module is TypeScript, which the thread can load only once tsx is registered in
 * it too (loaders registered with --import do not reach worker threads in Node 20).
 */
function threadBootstrap (): string {
  const fromSources = import.meta.url.endsWith('.ts')
  const thread = new URL(`./state-worker-thread${fromSources ? '.ts' : '.js'}`, import.meta.url).href
  const load = `import(${JSON.stringify(thread)})`
  return fromSources ? `import('tsx/esm/api').then(tsx => { tsx.register(); return ${load} })` : load
}

/**
 * `bytes` itself when it is the whole of its buffer (then the buffer is transferred, not copied);
 * otherwise a copy of just its bytes: a view into a larger buffer (Node's pool, a network read)
 * must neither detach what it shares nor send the rest along.
 */
function owned (bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer) ? bytes : bytes.slice()
}

function transferList (task: StateTask): ArrayBuffer[] {
  const states = task.kind === 'restore' ? [task.current, task.version] : task.kind === 'diff' ? [task.from, task.to] : [task.state]
  // The same buffer listed twice is an error: a caller may pass one state as both.
  return [...new Set(states.map(state => state.buffer as ArrayBuffer))]
}
