/** The coordinator's side of the generator: worker processes and request/reply over IPC. */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ClientSpec, ConnectResult, DocDigest, Envelope, JoinResult, Reply, Request, UploadResult, WorkerSnapshot } from './ipc.js'
import type { Endpoint } from './wsraw.js'

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url))

export class GeneratorWorker {
  private seq = 0
  private readonly pending = new Map<number, { resolve: (reply: Reply) => void; reject: (err: Error) => void }>()
  readonly exited: Promise<void>

  constructor (readonly index: number, readonly proc: ChildProcess) {
    proc.on('message', (message: Envelope<Reply>) => {
      const waiter = this.pending.get(message.seq)
      if (waiter === undefined) return
      this.pending.delete(message.seq)
      if (message.error !== undefined) waiter.reject(new Error(`worker ${index}: ${message.error}`))
      else waiter.resolve(message.body)
    })
    this.exited = new Promise(resolve => {
      proc.on('exit', code => {
        for (const waiter of this.pending.values()) waiter.reject(new Error(`worker ${index} exited (${code})`))
        this.pending.clear()
        resolve()
      })
    })
  }

  get pid (): number {
    return this.proc.pid ?? -1
  }

  async request (body: Request): Promise<Reply> {
    const seq = ++this.seq
    return await new Promise<Reply>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      this.proc.send({ seq, body } satisfies Envelope<Request>)
    })
  }

  async connect (clients: ClientSpec[], concurrency: number, timeoutMs: number): Promise<ConnectResult[]> {
    const reply = await this.request({ type: 'connect', clients, concurrency, timeoutMs })
    return reply.type === 'connect' ? reply.results : []
  }

  async snapshot (resetLoopDelay: boolean, takeSamples: boolean): Promise<WorkerSnapshot> {
    const reply = await this.request({ type: 'snapshot', resetLoopDelay, takeSamples })
    if (reply.type !== 'snapshot') throw new Error('unexpected reply')
    return reply.snapshot
  }

  async join (endpoint: Endpoint, timeoutMs: number): Promise<JoinResult> {
    const reply = await this.request({ type: 'join', endpoint, timeoutMs })
    if (reply.type !== 'join') throw new Error('unexpected reply')
    return reply.result
  }

  async upload (endpoint: Endpoint, observer: Endpoint, textBytes: number, chunkBytes: number, timeoutMs: number): Promise<UploadResult> {
    const reply = await this.request({ type: 'upload', endpoint, observer, textBytes, chunkBytes, timeoutMs })
    if (reply.type !== 'upload') throw new Error('unexpected reply')
    return reply.result
  }

  async digest (): Promise<DocDigest[]> {
    const reply = await this.request({ type: 'digest' })
    return reply.type === 'digest' ? reply.digests : []
  }
}

export class GeneratorPool {
  private constructor (readonly workers: GeneratorWorker[]) {}

  static async start (count: number): Promise<GeneratorPool> {
    const workers: GeneratorWorker[] = []
    for (let i = 0; i < count; i++) {
      const proc = fork(WORKER, [], {
        execArgv: ['--import', 'tsx'],
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc']
      })
      workers.push(new GeneratorWorker(i, proc))
    }
    const pool = new GeneratorPool(workers)
    // A first round trip proves each worker loaded.
    await Promise.all(workers.map(async w => await w.snapshot(true, false)))
    return pool
  }

  async all<T> (fn: (worker: GeneratorWorker) => Promise<T>): Promise<T[]> {
    return await Promise.all(this.workers.map(fn))
  }

  async broadcast (body: Request): Promise<void> {
    await Promise.all(this.workers.map(async w => await w.request(body)))
  }

  async stop (): Promise<void> {
    for (const worker of this.workers) {
      try {
        await Promise.race([worker.request({ type: 'close-all' }), new Promise(resolve => setTimeout(resolve, 2000))])
      } catch {}
      worker.proc.disconnect()
    }
    await Promise.race([
      Promise.all(this.workers.map(async w => await w.exited)),
      new Promise(resolve => setTimeout(resolve, 3000))
    ])
    for (const worker of this.workers) if (worker.proc.exitCode === null) worker.proc.kill('SIGKILL')
  }
}
