import { Worker, type ResourceLimits } from 'node:worker_threads'

/** What the state worker's thread is asked to compute (state-worker-thread.ts). */
export type StateTask =
  | { id: number, kind: 'restore', current: Uint8Array[], version: Uint8Array }
  | { id: number, kind: 'state', pieces: Uint8Array[] }
  | { id: number, kind: 'diff', from: Uint8Array, to: Uint8Array }
  | { id: number, kind: 'json', state: Uint8Array }

export type StateTaskReply =
  | { id: number, ok: true, kind: 'restore', update: Uint8Array, current: Uint8Array }
  | { id: number, ok: true, kind: 'state', state: Uint8Array }
  | { id: number, ok: true, kind: 'diff' | 'json', json: string }
  | { id: number, ok: false, message: string }

/** A computation failed, or the thread stopped before it answered (the server itself is unharmed). */
export class StateWorkerError extends Error {
  override readonly name: string = 'StateWorkerError'
}

/** Too many computations of this kind wait already: refused at once (each holds its states). */
export class StateWorkerBusyError extends StateWorkerError {
  override readonly name = 'StateWorkerBusyError'
}

/** A place among the computations under way (StateWorker.withSlot); its tasks pass it along. */
export interface StateWorkerSlot {
  release (): void
}

/** A restore's result, with the current state it was computed from as one update. */
export interface RestoreResult {
  update: Uint8Array
  current: Uint8Array
}

/** The thread is stopped after this long without work: an idle server keeps no second V8 heap. */
const IDLE_STOP_MS = 30_000

/** Computations waiting, running or gathering their states at once; more are refused (StateWorkerBusyError). */
export const MAX_QUEUED_TASKS = 8

/**
 * Of those, at most this many may be reads (diffs, versions as JSON), which any reader can ask
 * for: the rest stay free for restores and versions, which need write access.
 */
export const MAX_QUEUED_READS = 4

/** A computation still running after this long is given up: the thread is stopped and replaced. */
export const TASK_DEADLINE_MS = 120_000

interface Queued {
  task: StateTask
  resolve: (reply: StateTaskReply) => void
  reject: (err: Error) => void
}

/**
 * Work on whole document states that would otherwise hold the event loop for as long as a large
 * document takes to decode (a restore's computation, merging a state encoded in pieces, a diff, a
 * version as JSON): done on one worker thread, one task at a time, while every client's messages
 * keep flowing. The queue stays here, so a task that kills the thread (an exception, V8's heap
 * limit, the deadline) fails alone and the next one gets a new thread. States go to the thread
 * and large results come back without being copied (their buffers are transferred).
 *
 * The thread starts on first use and stops when idle.
 */
export class StateWorker {
  private worker: Worker | null = null
  private readonly queue: Queued[] = []
  private running: Queued | null = null
  private nextId = 1
  private idleTimer: NodeJS.Timeout | null = null
  private deadline: NodeJS.Timeout | null = null
  private closed = false
  /** Places taken (withSlot, or a task run without one), and how many of them by reads. */
  private slots = 0
  private readSlots = 0

  /** `resourceLimits`: the thread's heap limits (tests provoke running out of memory with them). */
  constructor (private readonly resourceLimits?: ResourceLimits, private readonly deadlineMs = TASK_DEADLINE_MS) {}

  /**
   * The update that restores the version's content on top of the current state, given in pieces
   * (StateChunks.forSnapshot) (versions/restore.ts); the current state comes back as one.
   * Everything given is handed over: the caller must not use it afterwards.
   */
  async restore (current: Uint8Array[], version: Uint8Array, slot?: StateWorkerSlot): Promise<RestoreResult> {
    const reply = await this.run(id => ({ id, kind: 'restore', current: current.map(owned), version: owned(version) }), slot)
    if (!reply.ok || reply.kind !== 'restore') throw new StateWorkerError('unexpected reply from the state worker')
    return { update: reply.update, current: reply.current }
  }

  /** A state given in pieces (StateChunks.forSnapshot), as one. The pieces are handed over. */
  async mergeState (pieces: Uint8Array[], slot?: StateWorkerSlot): Promise<Uint8Array> {
    const reply = await this.run(id => ({ id, kind: 'state', pieces: pieces.map(owned) }), slot)
    if (!reply.ok || reply.kind !== 'state') throw new StateWorkerError('unexpected reply from the state worker')
    return reply.state
  }

  /** diffStates(from, to) as JSON text. Both states are handed over. */
  async diffJson (from: Uint8Array, to: Uint8Array, slot?: StateWorkerSlot): Promise<string> {
    return await this.runJson(id => ({ id, kind: 'diff', from: owned(from), to: owned(to) }), slot)
  }

  /** documentToJson(state) as JSON text. The state is handed over. */
  async documentJson (state: Uint8Array, slot?: StateWorkerSlot): Promise<string> {
    return await this.runJson(id => ({ id, kind: 'json', state: owned(state) }), slot)
  }

  /**
   * A place among the computations this node takes at once, held by `use` from before it gathers
   * the states (loading a version, encoding the document) until its computations are done: a busy
   * node refuses (StateWorkerBusyError) before it spends memory on them. Reads (diffs, versions as
   * JSON), which any reader can ask for, get at most MAX_QUEUED_READS of the places.
   */
  async withSlot<T> (kind: 'read' | 'write', use: (slot: StateWorkerSlot) => Promise<T>): Promise<T> {
    const slot = this.reserve(kind)
    try {
      return await use(slot)
    } finally {
      slot.release()
    }
  }

  /** Stops the thread; tasks running or queued fail. */
  async close (): Promise<void> {
    this.closed = true
    const failure = new StateWorkerError('the server is shutting down')
    for (const queued of this.queue.splice(0)) queued.reject(failure)
    await this.stop(failure)
  }

  private async runJson (task: (id: number) => StateTask, slot?: StateWorkerSlot): Promise<string> {
    const reply = await this.run(task, slot)
    if (!reply.ok || (reply.kind !== 'diff' && reply.kind !== 'json')) throw new StateWorkerError('unexpected reply from the state worker')
    return reply.json
  }

  private async run (make: (id: number) => StateTask, slot?: StateWorkerSlot): Promise<StateTaskReply & { ok: true }> {
    const task = make(this.nextId++)
    const own = slot ?? this.reserve(isRead(task) ? 'read' : 'write')
    try {
      if (this.closed) throw new StateWorkerError('the server is shutting down')
      // A state is never empty: an empty view is a buffer detached by an earlier hand-over.
      if (statesOf(task).some(state => state.byteLength === 0)) throw new StateWorkerError('an empty or already handed-over state')
      const reply = await new Promise<StateTaskReply>((resolve, reject) => {
        this.queue.push({ task, resolve, reject })
        this.next()
      })
      if (!reply.ok) throw new StateWorkerError(reply.message)
      return reply
    } finally {
      if (slot === undefined) own.release()
    }
  }

  private reserve (kind: 'read' | 'write'): StateWorkerSlot {
    if (this.closed) throw new StateWorkerError('the server is shutting down')
    if (this.slots >= MAX_QUEUED_TASKS) throw new StateWorkerBusyError(`${MAX_QUEUED_TASKS} computations on document states are under way on this node`)
    if (kind === 'read' && this.readSlots >= MAX_QUEUED_READS) throw new StateWorkerBusyError(`${MAX_QUEUED_READS} diffs or exports are under way on this node`)
    this.slots++
    if (kind === 'read') this.readSlots++
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.slots--
        if (kind === 'read') this.readSlots--
      }
    }
  }

  /** Posts the next queued task if none is running. */
  private next (): void {
    if (this.running !== null) return
    const queued = this.queue.shift()
    if (queued === undefined) {
      this.becameIdle()
      return
    }
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
    const worker = this.started()
    this.running = queued
    worker.ref()
    this.deadline = setTimeout(() => {
      void this.stop(new StateWorkerError(`the computation took longer than ${this.deadlineMs} ms and was stopped`))
    }, this.deadlineMs)
    try {
      worker.postMessage(queued.task, transferListOf(statesOf(queued.task)))
    } catch (err) {
      this.settle(null, err as Error)
    }
  }

  private started (): Worker {
    if (this.worker !== null) return this.worker
    const worker = new Worker(threadBootstrap(), { eval: true, ...(this.resourceLimits === undefined ? {} : { resourceLimits: this.resourceLimits }) })
    worker.unref()
    worker.on('message', (reply: StateTaskReply) => {
      if (this.worker === worker && this.running?.task.id === reply.id) this.settle(reply, null)
    })
    const failed = (err: Error): void => {
      if (this.worker !== worker) return
      this.worker = null
      void worker.terminate()
      this.settle(null, err)
    }
    worker.on('error', err => { failed(new StateWorkerError(`the state worker failed: ${err.message}`)) })
    worker.on('messageerror', err => { failed(new StateWorkerError(`the state worker could not read a message: ${err.message}`)) })
    worker.on('exit', code => { failed(new StateWorkerError(`the state worker stopped (exit code ${code})`)) })
    this.worker = worker
    return worker
  }

  /** Ends the running task with its reply or `err`, and goes on with the queue. */
  private settle (reply: StateTaskReply | null, err: Error | null): void {
    const running = this.running
    this.running = null
    if (this.deadline !== null) clearTimeout(this.deadline)
    this.deadline = null
    this.worker?.unref()
    if (running !== null) {
      if (reply !== null) running.resolve(reply)
      else running.reject(err ?? new StateWorkerError('the state worker stopped'))
    }
    if (!this.closed) this.next()
  }

  private becameIdle (): void {
    if (this.worker === null || this.idleTimer !== null) return
    this.idleTimer = setTimeout(() => { void this.stop(null) }, IDLE_STOP_MS)
    this.idleTimer.unref()
  }

  /** Stops the thread; the running task, if any, fails with `err`. */
  private async stop (err: Error | null): Promise<void> {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = null
    const worker = this.worker
    this.worker = null
    if (this.running !== null) this.settle(null, err ?? new StateWorkerError('the state worker was stopped'))
    await worker?.terminate()
  }
}

function isRead (task: StateTask): boolean {
  return task.kind === 'diff' || task.kind === 'json'
}

function statesOf (task: StateTask): Uint8Array[] {
  switch (task.kind) {
    case 'restore': return [...task.current, task.version]
    case 'state': return task.pieces
    case 'diff': return [task.from, task.to]
    case 'json': return [task.state]
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

/** Smaller buffers are copied between the threads, never moved. */
const TRANSFER_FROM_BYTES = 64 * 1024

/**
 * Whether the buffer under `bytes` may be moved to the other thread (which detaches it here): it
 * must be all of that buffer, and large. A view into a larger buffer (Node's pool, a network read)
 * shares it; a small one may be a module's constant (StateChunks' empty update).
 */
function transferable (bytes: Uint8Array): boolean {
  return bytes.byteLength >= TRANSFER_FROM_BYTES && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer)
}

/** The buffers of `states` that may be moved to the other thread, each once. */
export function transferListOf (states: readonly Uint8Array[]): ArrayBuffer[] {
  return [...new Set(states.filter(transferable).map(state => state.buffer as ArrayBuffer))]
}

/**
 * `bytes` itself when it is all of its buffer, otherwise a copy of just its bytes: a view is
 * cloned with the whole buffer under it.
 */
function owned (bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice()
}
