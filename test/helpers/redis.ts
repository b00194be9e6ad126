import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { tempDir } from './server.js'
import { freeClusterPort, freePort } from './ports.js'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'
import { sleep, waitFor } from './wait.js'

export interface RedisProcess {
  port: number
  url: string
  readonly pid: number | undefined
  /** Stops the process (SIGKILL by default) and waits for it to exit. */
  stop: (signal?: NodeJS.Signals) => Promise<void>
  /** Starts it again on the same port and data directory. */
  start: () => Promise<void>
  cleanup: () => Promise<void>
}

const running = new Set<ChildProcess>()
process.on('exit', () => { for (const proc of running) proc.kill('SIGKILL') })

async function launch (args: string[]): Promise<ChildProcess> {
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(proc)
  proc.on('exit', () => running.delete(proc))
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000)
    proc.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    })
    proc.on('exit', code => { clearTimeout(timer); reject(new Error(`redis-server exited (${code}): ${output}`)) })
  })
  return proc
}

async function stopProcess (proc: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise(resolve => proc.once('exit', resolve))
  proc.kill(signal)
  await exited
}

/**
 * A real redis-server on a free port, persisting with an fsync-always AOF into its own temp
 * directory, so a stop and start keeps the data as a production Redis with AOF would.
 */
export async function startRedis (options: { port?: number; extraArgs?: string[] } = {}): Promise<RedisProcess> {
  const port = options.port ?? await freePort()
  const dir = tempDir('collab-redis-')
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes',
    '--appendfsync', 'always', '--protected-mode', 'no', ...(options.extraArgs ?? [])]
  let proc: ChildProcess | null = await launch(args)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid () { return proc?.pid },
    stop: async (signal = 'SIGKILL') => {
      await stopProcess(proc, signal)
      proc = null
    },
    start: async () => {
      // The port may linger briefly after a kill; retry the bind for a moment.
      for (let attempt = 0; ; attempt++) {
        try {
          proc = await launch(args)
          return
        } catch (err) {
          if (attempt > 20) throw err
          await sleep(100)
        }
      }
    },
    cleanup: async () => {
      await stopProcess(proc, 'SIGKILL')
      proc = null
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export interface RedisCluster {
  nodes: RedisProcess[]
  /** REDIS_CLUSTER_NODES value. */
  nodeList: string
  cleanup: () => Promise<void>
}

/** `masters` masters with `replicas` replicas each, slots spread by redis-cli --cluster create. */
export async function startRedisCluster (masters = 3, replicas = 0): Promise<RedisCluster> {
  const ports: number[] = []
  while (ports.length < masters * (1 + replicas)) ports.push(await freeClusterPort(ports))
  const nodes: RedisProcess[] = []
  for (const port of ports) {
    nodes.push(await startRedis({ port, extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'] }))
  }
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout} ${created.stderr}`)
  await waitFor(() => ports.every(p => /cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout)), 'cluster state ok', 20_000)
  // A replica can take over only once it has synced with its master.
  const role = (p: number): string => spawnSync('redis-cli', ['-p', String(p), 'info', 'replication'], { encoding: 'utf8' }).stdout
  if (replicas > 0) {
    await waitFor(() => ports.filter(p => /role:slave/.test(role(p))).length === masters * replicas && ports.every(p => !/role:slave/.test(role(p)) || /master_link_status:up/.test(role(p))), 'replicas in sync', 30_000)
  }
  return {
    nodes,
    nodeList: ports.map(p => `127.0.0.1:${p}`).join(','),
    cleanup: async () => { for (const node of nodes) await node.cleanup() }
  }
}

export interface SentinelSetup {
  master: RedisProcess
  replica: RedisProcess
  sentinelPort: number
  /** REDIS_SENTINELS value. */
  sentinels: string
  /** The address the sentinel currently reports as master. */
  masterPort: () => number
  /**
   * The proxy the replica replicates through (`replicationThroughProxy`), whose `partition()`
   * stops replication while master and replica both carry on as if nothing happened; else null.
   */
  replicationLink: TcpProxy | null
  cleanup: () => Promise<void>
}

/**
 * A master, one replica and one sentinel (quorum 1) that fails over a second after the master dies;
 * `replicationThroughProxy`: the replica reaches its master through a TCP proxy the test can cut.
 */
export async function startSentinelSetup (options: { replicationThroughProxy?: boolean } = {}): Promise<SentinelSetup> {
  const master = await startRedis()
  const replicationLink = options.replicationThroughProxy === true ? await startTcpProxy(master.port) : null
  const replica = await startRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(replicationLink?.port ?? master.port)] })
  const sentinelPort = await freePort()
  const dir = tempDir('collab-sentinel-')
  const conf = `${dir}/sentinel.conf`
  const { writeFileSync } = await import('node:fs')
  writeFileSync(conf, [
    `port ${sentinelPort}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
    'sentinel down-after-milliseconds mymaster 1000',
    // Also how long the sentinel lets a replica replicate from an address other than the master's
    // before it points the replica at the master itself (+fix-slave-config): through the proxy,
    // that would bypass the link the test cuts, and replication would quietly go on.
    `sentinel failover-timeout mymaster ${options.replicationThroughProxy === true ? 600_000 : 5000}`,
    'sentinel parallel-syncs mymaster 1',
    ''
  ].join('\n'))
  const sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(sentinel)
  sentinel.on('exit', () => running.delete(sentinel))
  const masterPort = (): number => {
    const out = spawnSync('redis-cli', ['-p', String(sentinelPort), 'sentinel', 'get-master-addr-by-name', 'mymaster'], { encoding: 'utf8' }).stdout
    return Number(out.trim().split('\n')[1] ?? 0)
  }
  await waitFor(() => masterPort() === master.port, 'sentinel monitoring the master', 10_000)
  // The replica must have caught up before anyone relies on a failover.
  await waitFor(() => /master_link_status:up/.test(spawnSync('redis-cli', ['-p', String(replica.port), 'info', 'replication'], { encoding: 'utf8' }).stdout), 'replica in sync', 10_000)
  // The sentinel learns of replicas from the master's INFO, read every 10 s: one that connected
  // after the sentinel's first read would be unknown to it, and a failover would find no replica.
  // A reset makes it read the master again now.
  const sentinelCli = (...args: string[]): string => spawnSync('redis-cli', ['-p', String(sentinelPort), 'sentinel', ...args], { encoding: 'utf8' }).stdout
  const knowsReplica = (): boolean => {
    const lines = sentinelCli('replicas', 'mymaster').split('\n').map(line => line.trim())
    const port = lines.indexOf('port')
    const flags = lines.indexOf('flags')
    return port >= 0 && lines[port + 1] === String(replica.port) && flags >= 0 && lines[flags + 1] === 'slave'
  }
  if (!knowsReplica()) sentinelCli('reset', 'mymaster')
  await waitFor(knowsReplica, 'sentinel knows the replica', 10_000)
  return {
    master,
    replica,
    sentinelPort,
    sentinels: `127.0.0.1:${sentinelPort}`,
    masterPort,
    replicationLink,
    cleanup: async () => {
      await stopProcess(sentinel, 'SIGKILL')
      await master.cleanup()
      await replica.cleanup()
      await replicationLink?.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
