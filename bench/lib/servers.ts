/**
 * Starting and stopping the servers under test: ours (one node or a Redis-bridged cluster), the
 * reference y-websocket server, and redis-server. Every process started here is killed by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freeClusterPort, freePort } from '../../scripts/free-port.js'
import { SERVER_ENTRY, SERVER_NODE_FLAGS } from '../../scripts/server-node-flags.js'

export { freePort }
import type { Endpoint } from './wsraw.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const HOST = '127.0.0.1'
export const BENCH_SECRET = 'bench-secret-that-is-at-least-32-bytes-long!!'

const running = new Set<ChildProcess>()
process.on('exit', () => { for (const proc of running) proc.kill('SIGKILL') })

async function httpStatus (port: number, path: string): Promise<number> {
  return await new Promise(resolve => {
    const req = request({ host: HOST, port, path, timeout: 1000 }, res => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', () => resolve(0))
    req.on('timeout', () => { req.destroy(); resolve(0) })
    req.end()
  })
}

async function waitHttpReady (port: number, path: string, proc: ChildProcess, output: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`server exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${output.join('').slice(-4000)}`)
    }
    if (await httpStatus(port, path) === 200) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`server not ready on port ${port} within ${timeoutMs} ms:\n${output.join('').slice(-4000)}`)
}

export interface ServerProcess {
  label: string
  pid: number
  port: number
  proc: ChildProcess
  output: string[]
  /** Our server's embedded store (kept by `stop(true)` for a restart). */
  dataDir?: string
  stop: (keepData?: boolean) => Promise<void>
}

function spawnTracked (command: string, args: string[], env: Record<string, string>, cwd = ROOT): { proc: ChildProcess; output: string[] } {
  const proc = spawn(command, args, { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(proc)
  proc.on('exit', () => running.delete(proc))
  const output: string[] = []
  // BENCH_SERVER_OUTPUT=FILE keeps everything the servers print (e.g. with --node-flags=--trace-gc).
  const copyTo = process.env.BENCH_SERVER_OUTPUT
  const keep = (chunk: Buffer): void => {
    if (copyTo !== undefined) appendFileSync(copyTo, chunk)
    output.push(chunk.toString())
    if (output.length > 200) output.splice(0, output.length - 200)
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  return { proc, output }
}

async function stopProcess (proc: ChildProcess, timeoutMs = 20_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  await exited
  clearTimeout(timer)
}

// ---------------------------------------------------------------------------------------------
// Our server

/** Which build of our server to run. */
export type OursBuild = 'head' | 'worktree' | 'src' | `entry:${string}` | `rev:${string}`

export interface OursBinary {
  build: OursBuild
  commit: string
  /** Uncommitted changes under src/ (only meaningful for 'worktree' and 'src'). */
  dirty: boolean
  command: string
  args: string[]
  /** The node flags this build ships with: a commit's own, so that a change of flags can be measured as a before/after. */
  nodeFlags: readonly string[]
}

function git (args: string[]): string {
  return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
}

/** How `commit` ran the server: its node flags and its entry point, relative to the build. */
interface ShippedCommand {
  flags: string[]
  entry: string
}

/**
 * How `commit` shipped the server, read from its Dockerfile's exec-form CMD (JSON, kept in step
 * with SERVER_NODE_FLAGS and SERVER_ENTRY by test/server-command.test.ts):
 * `["node", ...flags, "dist/....js"]`. A commit without a Dockerfile ran dist/main.js with no
 * flags; a CMD of another shape is an error, not a guess.
 */
function shippedCommandAt (commit: string): ShippedCommand {
  const exists = git(['ls-tree', '--name-only', commit, 'Dockerfile']) !== ''
  if (!exists) return { flags: [], entry: 'dist/main.js' }
  const cmd = git(['show', `${commit}:Dockerfile`]).split('\n').filter(line => line.startsWith('CMD ')).pop()
  let argv: unknown
  try {
    argv = cmd === undefined ? undefined : JSON.parse(cmd.slice('CMD '.length))
  } catch {
    argv = undefined
  }
  const entry: unknown = Array.isArray(argv) ? argv.at(-1) : undefined
  // A path inside the build's dist/: no empty, `.` or `..` segment.
  if (!Array.isArray(argv) || argv[0] !== 'node' || typeof entry !== 'string' || !/^dist(\/[\w-][\w.-]*)+\.js$/.test(entry) || !argv.every(a => typeof a === 'string' && a !== '')) {
    throw new Error(`cannot read how ${commit} runs the server: its Dockerfile's CMD is not ["node", ...flags, "dist/....js"]`)
  }
  const flags = argv.slice(1, -1) as string[]
  if (!flags.every(flag => flag.startsWith('--'))) throw new Error(`unexpected node arguments in ${commit}'s Dockerfile CMD: ${flags.join(' ')}`)
  return { flags, entry }
}

/** Files `npm run build` needs to build the server of a commit (those it has), besides src/. */
const BUILD_FILES = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/bundle-server.mjs']

/**
 * Prepares our server. 'head' builds the committed HEAD into node_modules/.cache (someone else's
 * uncommitted work in the tree does not leak into the figures); 'worktree' runs `npm run build`
 * and runs what it built (SERVER_ENTRY); 'src' runs src/main.ts through tsx (for the smoke test,
 * not for figures); 'entry:/path/main.js' runs that file (to measure an experimental build).
 */
export function prepareOurs (build: OursBuild): OursBinary {
  // 'rev:REV' builds that commit like HEAD (the baseline of a before/after comparison).
  const commit = git(['rev-parse', build.startsWith('rev:') ? `${build.slice('rev:'.length)}^{commit}` : 'HEAD'])
  const dirty = git(['status', '--porcelain', '--', 'src', 'scripts/server-node-flags.ts', 'scripts/bundle-server.mjs']) !== ''
  const nodeFlags = SERVER_NODE_FLAGS
  if (build.startsWith('entry:')) {
    // An already built entry point, e.g. an experimental copy of dist/ with a proposed fix applied.
    return { build, commit, dirty: true, command: process.execPath, args: [build.slice('entry:'.length)], nodeFlags }
  }
  if (build === 'src') {
    return { build, commit, dirty, command: process.execPath, args: ['--import', 'tsx', join(ROOT, 'src/main.ts')], nodeFlags }
  }
  if (build === 'worktree') {
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' })
    return { build, commit, dirty, command: process.execPath, args: [join(ROOT, SERVER_ENTRY)], nodeFlags }
  }
  const shipped = shippedCommandAt(commit)
  const dir = join(ROOT, 'node_modules/.cache/yjs-uws-bench', commit)
  const entry = join(dir, shipped.entry)
  if (!existsSync(entry)) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    // Node resolves packages from the cache dir upwards, reaching the project's node_modules.
    const files = BUILD_FILES.filter(file => git(['ls-tree', '--name-only', commit, file]) !== '')
    execFileSync('sh', ['-c', `git archive ${commit} src ${files.join(' ')} | tar -x -C "${dir}"`], { cwd: ROOT })
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.build.json')], { cwd: dir, stdio: 'inherit' })
    if (files.includes('scripts/bundle-server.mjs')) execFileSync(process.execPath, [join(dir, 'scripts/bundle-server.mjs')], { cwd: dir, stdio: 'inherit', env: { ...process.env, npm_config_loglevel: 'silent' } })
  }
  return { build, commit, dirty: false, command: process.execPath, args: [entry], nodeFlags: shipped.flags }
}

export interface OursOptions {
  binary: OursBinary
  label?: string
  redisUrl?: string
  env?: Record<string, string>
  /** Extra node flags, e.g. --cpu-prof. */
  nodeFlags?: string[]
  cwd?: string
  /** A restart: the port and embedded store of the node stopped with `keepData`. */
  port?: number
  dataDir?: string
}

export async function startOurs (options: OursOptions): Promise<ServerProcess> {
  const port = options.port ?? await freePort()
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'yjs-bench-data-'))
  const env: Record<string, string> = {
    HOST,
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    JWT_SECRET: BENCH_SECRET,
    // Every simulated client comes from this one host, which the per-address upgrade limit (a
    // defence against one host's floods) would throttle.
    UPGRADE_RATE_LIMIT_PER_SECOND: '0',
    ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }),
    ...options.env
  }
  // The flags the build ships with (npm start, Dockerfile), then the run's own: the last one wins.
  const args = [...options.binary.nodeFlags, ...(options.nodeFlags ?? []), ...options.binary.args]
  const { proc, output } = spawnTracked(options.binary.command, args, env, options.cwd)
  try {
    await waitHttpReady(port, '/readyz', proc, output)
  } catch (err) {
    proc.kill('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
    throw err
  }
  return {
    label: options.label ?? 'ours',
    pid: proc.pid!,
    port,
    proc,
    output,
    dataDir,
    stop: async (keepData = false) => {
      await stopProcess(proc)
      if (!keepData) rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The reference server (y-websocket 1.x bin/server.js, no auth, no persistence)

export const REFERENCE_SCRIPT = join(ROOT, 'node_modules/y-websocket-v1/bin/server.js')

export function referenceVersion (): string {
  try {
    const pkg = execFileSync(process.execPath, ['-p', "require('./node_modules/y-websocket-v1/package.json').version + ' (ws ' + require('./node_modules/y-websocket-v1/node_modules/ws/package.json').version + ')'"], { cwd: ROOT, encoding: 'utf8' })
    return `y-websocket ${pkg.trim()}`
  } catch {
    return 'y-websocket 1.x'
  }
}

export async function startReference (options: { nodeFlags?: string[]; cwd?: string } = {}): Promise<ServerProcess> {
  const port = await freePort()
  const { proc, output } = spawnTracked(process.execPath, [...(options.nodeFlags ?? []), REFERENCE_SCRIPT], { HOST, PORT: String(port) }, options.cwd)
  try {
    await waitHttpReady(port, '/', proc, output)
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  return { label: 'reference', pid: proc.pid!, port, proc, output, stop: async () => { await stopProcess(proc) } }
}

// ---------------------------------------------------------------------------------------------
// Hocuspocus (@hocuspocus/server, with @hocuspocus/extension-redis on several nodes), no auth

export const HOCUSPOCUS_SCRIPT = join(ROOT, 'bench/peers/hocuspocus-server.mjs')

export function hocuspocusVersion (): string {
  try {
    const version = execFileSync(process.execPath, ['-p', "require('./node_modules/@hocuspocus/server/package.json').version"], { cwd: ROOT, encoding: 'utf8' })
    return `Hocuspocus ${version.trim()}`
  } catch {
    return 'Hocuspocus (not installed)'
  }
}

/** One Hocuspocus node; with `redisUrl` it joins the others through the Redis extension. */
export async function startHocuspocus (options: { label?: string, redisUrl?: string, nodeFlags?: string[] } = {}): Promise<ServerProcess> {
  const port = await freePort()
  const env: Record<string, string> = { HOST, PORT: String(port), ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }) }
  const { proc, output } = spawnTracked(process.execPath, [...(options.nodeFlags ?? []), HOCUSPOCUS_SCRIPT], env)
  try {
    await waitHttpReady(port, '/', proc, output)
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  return { label: options.label ?? 'hocuspocus', pid: proc.pid!, port, proc, output, stop: async () => { await stopProcess(proc) } }
}

// ---------------------------------------------------------------------------------------------
// redis-server for the cluster scenario

export interface RedisProcess {
  pid: number
  /** Every redis-server process (a Redis Cluster has several); [pid] otherwise. */
  pids: number[]
  port: number
  url: string
  /** REDIS_CLUSTER_NODES for a Redis Cluster. */
  clusterNodes?: string
  stop: () => Promise<void>
}

export async function startRedis (options: { port?: number, extraArgs?: string[] } = {}): Promise<RedisProcess> {
  const port = options.port ?? await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'yjs-bench-redis-'))
  const { proc, output } = spawnTracked('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.extraArgs ?? [])], {})
  const deadline = Date.now() + 10_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${output.join('')}`)
    if (await redisPing(port)) break
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`redis-server did not start: ${output.join('')}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    pid: proc.pid!,
    pids: [proc.pid!],
    port,
    url: `redis://${HOST}:${port}`,
    stop: async () => {
      await stopProcess(proc, 5000)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** A Redis Cluster of `masters` masters without replicas, slots spread by redis-cli --cluster create. */
export async function startRedisCluster (masters: number): Promise<RedisProcess> {
  const nodes: RedisProcess[] = []
  const stopAll = async (): Promise<void> => { for (const node of nodes) await node.stop() }
  try {
    const ports: number[] = []
    for (let i = 0; i < masters; i++) {
      const port = await freeClusterPort(ports)
      ports.push(port)
      nodes.push(await startRedis({ port, extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`] }))
    }
    execFileSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `${HOST}:${p}`), '--cluster-yes'], { stdio: 'ignore', timeout: 30_000 })
    const deadline = Date.now() + 20_000
    while (!ports.every(p => /cluster_state:ok/.test(execFileSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' })))) {
      if (Date.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  } catch (err) {
    await stopAll()
    throw err
  }
  return {
    pid: nodes[0]!.pid,
    pids: nodes.map(n => n.pid),
    port: nodes[0]!.port,
    url: nodes[0]!.url,
    clusterNodes: nodes.map(n => `${HOST}:${n.port}`).join(','),
    stop: stopAll
  }
}

async function redisPing (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection({ host: HOST, port })
    socket.setTimeout(500)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', data => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.on('error', () => resolve(false))
    socket.on('timeout', () => { socket.destroy(); resolve(false) })
  })
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/**
 * ours: the build measured; baseline: another commit of ours (--baseline); reference: y-websocket;
 * hocuspocus: Hocuspocus, alone or with its Redis extension (--hocuspocus).
 */
export type ServerKind = 'ours' | 'baseline' | 'reference' | 'hocuspocus'

/** A build of our server (it wants tokens and has /metrics), not a peer. */
export function isOurs (kind: ServerKind): boolean {
  return kind === 'ours' || kind === 'baseline'
}

/** The request a client of `kind` makes for `docId`. */
export function endpointFor (kind: ServerKind, port: number, docId: string, token: string): Endpoint {
  if (kind === 'hocuspocus') return { host: HOST, port, path: '/', multiplexName: docId }
  const path = kind !== 'reference'
    ? `/ws/document/${encodeURIComponent(docId)}?token=${token}`
    : `/${encodeURIComponent(docId)}`
  return { host: HOST, port, path }
}
