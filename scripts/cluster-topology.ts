import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './free-port.js'
import { startPostgres } from './postgres-server.js'
import { SERVER_ENTRY, SERVER_NODE_FLAGS } from './server-node-flags.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

export interface ClusterNode {
  nodeId: string
  port: number
  proc: ChildProcess | null
  /** Resolves when the current process exits. */
  exited: Promise<number | string>
}

export interface LocalCluster {
  /** The load balancer's port: clients connect here. */
  port: number
  redisPort: number
  nodes: ClusterNode[]
  /** SIGTERM (graceful) or SIGKILL one node and wait for it to exit. */
  stopNode: (index: number, signal?: NodeJS.Signals) => Promise<void>
  /** Starts a stopped node again on its port and waits until it is ready. */
  startNode: (index: number) => Promise<void>
  /** Stops everything this topology started; safe to call twice. */
  stop: () => Promise<void>
}

export interface LocalClusterOptions {
  nodes?: number
  /** Load balancer port; 0 picks a free one. */
  port?: number
  /** Environment for every node (JWT_SECRET etc.). */
  env?: Record<string, string>
  /** Start a PostgreSQL server too and keep the documents in it (CLUSTER_POSTGRES=true). */
  postgres?: boolean
  /** Node entry point; defaults to the built server (npm run build). */
  entry?: string[]
  log?: (line: string) => void
}

async function waitUntil (check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function redisAnswers (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'))
    socket.setTimeout(1_000, () => { socket.destroy(); resolve(false) })
    socket.on('data', data => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.on('error', () => resolve(false))
  })
}

async function isReady (port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1_000) })
  await res.body?.cancel()
  return res.status === 200
}

function haproxyConfig (lbPort: number, nodes: ClusterNode[]): string {
  // No global maxconn: HAProxy derives it from the file-descriptor limit it is given.
  return `defaults
  mode http
  option redispatch
  retries 3
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  # WebSocket connections live in the tunnel state after the upgrade.
  timeout tunnel 1h
  timeout client-fin 5s

frontend collab
  bind 127.0.0.1:${lbPort}
  default_backend nodes

backend nodes
  balance leastconn
  # uWebSockets.js answers HTTP/1.0 with 505: health checks must speak HTTP/1.1 with a Host.
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host collab
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
${nodes.map(n => `  server ${n.nodeId} 127.0.0.1:${n.port} check`).join('\n')}
`
}

/**
 * redis-server, N server nodes and HAProxy (Debian's package) on loopback: the topology of
 * docker-compose.yml without Docker, for development (`npm run cluster`) and tests.
 */
export async function startLocalCluster (options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {})
  const count = options.nodes ?? 3
  const dir = mkdtempSync(join(tmpdir(), 'collab-cluster-'))
  const children = new Set<ChildProcess>()
  const entry = options.entry ?? [...SERVER_NODE_FLAGS, join(ROOT, SERVER_ENTRY)]
  if (options.entry === undefined && !existsSync(entry.at(-1)!)) throw new Error(`${SERVER_ENTRY} is missing: run \`npm run build\` first`)

  const track = (proc: ChildProcess): Promise<number | string> => {
    children.add(proc)
    // A command that cannot be spawned at all emits 'error' and no 'exit'.
    proc.once('error', () => children.delete(proc))
    return new Promise(resolve => proc.on('exit', (code, signal) => {
      children.delete(proc)
      resolve(code ?? signal ?? -1)
    }))
  }

  // Documents in PostgreSQL (Redis then carries only the bridge, participants and presence).
  const postgres = options.postgres === true ? await startPostgres() : null
  const databaseEnv: Record<string, string> = postgres === null ? {} : { DATABASE_URL: postgres.url }
  if (postgres !== null) log(`PostgreSQL ${postgres.url.replace(/:[^:@/]+@/, ':***@')}`)
  const redisPort = await freePort()
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir], { stdio: 'ignore' })
  void track(redis)

  const nodes: ClusterNode[] = []
  for (let i = 1; i <= count; i++) nodes.push({ nodeId: `node-${i}`, port: await freePort(), proc: null, exited: Promise.resolve(0) })

  const startNode = async (index: number): Promise<void> => {
    const node = nodes[index]!
    const proc = spawn(process.execPath, entry, {
      cwd: ROOT,
      env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...databaseEnv, ...options.env, PORT: String(node.port), NODE_ID: node.nodeId, REDIS_URL: `redis://127.0.0.1:${redisPort}` },
      stdio: ['ignore', 'inherit', 'inherit']
    })
    node.proc = proc
    node.exited = track(proc)
    await waitUntil(async () => await isReady(node.port), `${node.nodeId} ready`, 20_000)
    log(`${node.nodeId} ready on 127.0.0.1:${node.port}`)
  }

  const stopNode = async (index: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const node = nodes[index]!
    if (node.proc === null) return
    node.proc.kill(signal)
    await node.exited
    node.proc = null
    log(`${node.nodeId} stopped (${signal})`)
  }

  // Whatever fails while starting (no haproxy installed, a node that never gets ready), nothing
  // this function started may outlive it.
  const waitForChildren = async (ms: number): Promise<void> => {
    const deadline = Date.now() + ms
    while (children.size > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  }
  const killAll = async (): Promise<void> => {
    for (const child of children) child.kill('SIGKILL')
    await waitForChildren(5_000)
    rmSync(dir, { recursive: true, force: true })
    await postgres?.cleanup()
  }
  let haproxy: ChildProcess
  let port: number
  try {
    await waitUntil(async () => await redisAnswers(redisPort), 'redis-server', 10_000)
    for (let i = 0; i < count; i++) await startNode(i)

    port = options.port === undefined || options.port === 0 ? await freePort() : options.port
    const cfg = join(dir, 'haproxy.cfg')
    writeFileSync(cfg, haproxyConfig(port, nodes))
    haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', options.log === undefined ? 'ignore' : 'inherit'] })
    const missing = new Promise<never>((_resolve, reject) => haproxy.once('error', err => {
      reject(new Error(`haproxy could not be started (${err.message}): install Debian's haproxy package`))
    }))
    missing.catch(() => {}) // an error after startup is reported by the health checks instead
    void track(haproxy)
    await Promise.race([missing, waitUntil(async () => await isReady(port), 'haproxy', 10_000)])
    log(`haproxy on 127.0.0.1:${port}`)
  } catch (err) {
    await killAll()
    throw err
  }

  let stopped = false
  return {
    port,
    redisPort,
    nodes,
    stopNode,
    startNode,
    stop: async () => {
      if (stopped) return
      stopped = true
      haproxy.kill('SIGTERM')
      for (let i = 0; i < nodes.length; i++) await stopNode(i, 'SIGTERM')
      redis.kill('SIGTERM')
      await waitForChildren(10_000)
      await killAll()
    }
  }
}
