import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SERVER_ENTRY, SERVER_NODE_FLAGS } from '../../scripts/server-node-flags.js'
import { mergeEnv, type TestEnv } from './env.js'
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

function processEnv (env: TestEnv): Record<string, string> {
  return mergeEnv({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOST: '127.0.0.1', PORT: '0', JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'info' }, env)
}

export interface SpawnOptions {
  /**
   * Run the server as it ships (`npm start`, the Docker image): the bundle `npm run build` made,
   * with the shipped node flags, instead of src/main.ts through tsx.
   */
  shipped?: boolean
}

/**
 * Runs the real server entry point (src/main.ts, or the shipped bundle with `shipped`) as a child
 * process and waits until it listens. `env` overlays the defaults; `undefined` removes one (see
 * TestEnv).
 */
export async function spawnServer (env: TestEnv, options: SpawnOptions = {}): Promise<ServerProcess> {
  const args = options.shipped === true ? [...SERVER_NODE_FLAGS, SERVER_ENTRY] : ['--import', 'tsx', 'src/main.ts']
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: processEnv(env),
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

/**
 * Runs src/main.ts with `env` (over the same defaults as spawnServer) until it exits on its own,
 * for start-up refusals. A process still running after `limitMs` is killed and reported as such.
 */
export async function runUntilExit (env: TestEnv, limitMs = 20_000): Promise<{ code: number | string, stdout: string, stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: processEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(proc)
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  proc.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs)
  const code = await new Promise<number | string>(resolve => proc.on('exit', (exitCode, signal) => {
    clearTimeout(timer)
    running.delete(proc)
    resolve(exitCode ?? signal ?? -1)
  }))
  return { code, stdout, stderr }
}
