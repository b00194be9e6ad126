import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TEST_SECRET } from './tokens.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface ServerProcess {
  proc: ChildProcess
  port: number
  url: string
  output: string[]
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>
  kill: (signal?: NodeJS.Signals) => void
}

const running = new Set<ChildProcess>()
process.on('exit', () => { for (const proc of running) proc.kill('SIGKILL') })

/** Runs the real server entry point (src/main.ts) as a child process and waits until it listens. */
export async function spawnServer (env: Record<string, string>): Promise<ServerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: '0',
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'info',
      ...env
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  running.add(proc)
  const output: string[] = []
  const exited = new Promise<number | string>(resolve => {
    proc.on('exit', (code, signal) => {
      running.delete(proc)
      resolve(code ?? signal ?? -1)
    })
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output.join('')}`)), 20_000)
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString()
      output.push(text)
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue
        try {
          const entry = JSON.parse(line) as { msg?: string; port?: number }
          if (entry.msg === 'listening' && typeof entry.port === 'number') {
            clearTimeout(timer)
            resolve(entry.port)
          }
        } catch {}
      }
    }
    proc.stdout.on('data', onData)
    proc.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()))
    void exited.then(code => { clearTimeout(timer); reject(new Error(`server exited (${code}) before listening:\n${output.join('')}`)) })
  })
  return {
    proc,
    port,
    url: `ws://127.0.0.1:${port}/ws/document`,
    output,
    exited,
    kill: (signal = 'SIGTERM') => { if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal) }
  }
}
