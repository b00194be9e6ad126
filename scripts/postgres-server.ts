import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from './free-port.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** The superuser's password of these throwaway servers. */
export const POSTGRES_PASSWORD = 'collab-test-password'

export interface PostgresProcess {
  port: number
  /** postgres://postgres:…@127.0.0.1:port/postgres */
  url: string
  /** The same server, another database or user: `urlFor({ database: 'x' })`. */
  urlFor: (options: { database?: string, user?: string, password?: string }) => string
  readonly pid: number | undefined
  /** Stops the server (SIGINT: fast shutdown; SIGKILL: a crash) and waits for it to exit. */
  stop: (signal?: NodeJS.Signals) => Promise<void>
  /** Starts it again on the same port and data directory. */
  start: () => Promise<void>
  /** With `tls`: the server's self-signed certificate (for 127.0.0.1), to give as sslrootcert. */
  caFile: string | null
  /** Runs SQL as the superuser. */
  sql: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  cleanup: () => Promise<void>
}

const running = new Set<ChildProcess>()
process.on('exit', () => { for (const proc of running) killGroup(proc, 'SIGKILL') })

/** initdb and postgres refuse to run as root: as root, run them as the postgres user. */
function runAs (): { uid?: number, gid?: number } {
  if (process.getuid?.() !== 0) return {}
  const result = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error('running as root and there is no postgres user to run PostgreSQL as')
  return { uid: Number(result.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

export function postgresBinDir (): string {
  const configured = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' })
  const candidates = [configured.status === 0 ? configured.stdout.trim() : '', '/usr/lib/postgresql/15/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/17/bin']
  for (const dir of candidates) if (dir !== '' && existsSync(join(dir, 'initdb'))) return dir
  throw new Error('PostgreSQL server binaries (initdb, postgres) not found: install postgresql')
}

function killGroup (proc: ChildProcess, signal: NodeJS.Signals): void {
  // The postmaster's children must go with it, or a restart finds its shared memory in use.
  try { process.kill(-proc.pid!, signal) } catch {}
}

/**
 * A real PostgreSQL server this process owns (tests, `npm run cluster`): a fresh cluster (initdb) in a temporary directory, on a
 * free port of 127.0.0.1, with password authentication for the superuser `postgres`. fsync is off
 * (for tests and development only: a killed server still finds its writes in the page cache, a
 * crashed machine would not).
 */
export async function startPostgres (options: { tls?: boolean } = {}): Promise<PostgresProcess> {
  const bin = postgresBinDir()
  const owner = runAs()
  const dir = mkdtempSync(join(tmpdir(), 'collab-pg-'))
  const data = join(dir, 'data')
  const passwordFile = join(dir, 'password')
  writeFileSync(passwordFile, POSTGRES_PASSWORD)
  if (owner.uid !== undefined) {
    chownSync(dir, owner.uid, owner.gid!)
    chownSync(passwordFile, owner.uid, owner.gid!)
  }
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${passwordFile}`, '-E', 'UTF8', '--no-sync', '--locale=C'], { ...owner, encoding: 'utf8' })
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`)
  const port = await freePort()
  const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=200', '-c', 'shared_buffers=32MB']
  const caFile = options.tls === true ? selfSignedCertificate(dir, owner) : null
  if (caFile !== null) args.push('-c', 'ssl=on', '-c', `ssl_cert_file=${caFile}`, '-c', `ssl_key_file=${join(dir, 'server.key')}`)
  let proc: ChildProcess | null = null

  const launch = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const child = spawn(join(bin, 'postgres'), args, { ...owner, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      running.add(child)
      child.on('exit', () => running.delete(child))
      let output = ''
      const started = await new Promise<boolean>(resolve => {
        const timer = setTimeout(() => resolve(false), 20_000)
        const onData = (chunk: Buffer): void => {
          output += chunk.toString()
          if (output.includes('ready to accept connections')) { clearTimeout(timer); resolve(true) }
        }
        child.stdout!.on('data', onData)
        child.stderr!.on('data', onData)
        child.on('exit', () => { clearTimeout(timer); resolve(false) })
      })
      if (started) { proc = child; return }
      killGroup(child, 'SIGKILL')
      if (attempt >= 20) throw new Error(`postgres did not start: ${output}`)
      await sleep(250)
    }
  }
  const stop = async (signal: NodeJS.Signals = 'SIGINT'): Promise<void> => {
    const current = proc
    proc = null
    if (current === null || current.exitCode !== null || current.signalCode !== null) return
    const exited = new Promise(resolve => current.once('exit', resolve))
    if (signal === 'SIGKILL') killGroup(current, 'SIGKILL')
    else current.kill(signal)
    await exited
    if (signal === 'SIGKILL') await sleep(200) // the backends notice the postmaster's death
  }
  await launch()

  const urlFor = (options: { database?: string, user?: string, password?: string }): string =>
    `postgres://${encodeURIComponent(options.user ?? 'postgres')}:${encodeURIComponent(options.password ?? POSTGRES_PASSWORD)}@127.0.0.1:${port}/${options.database ?? 'postgres'}`
  const url = urlFor({})
  return {
    port,
    url,
    urlFor,
    get pid () { return proc?.pid },
    stop,
    start: launch,
    caFile,
    sql: async (text, values) => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        return await client.query(text, values)
      } finally {
        await client.end()
      }
    },
    cleanup: async () => {
      await stop('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** A certificate for 127.0.0.1 and localhost signed by itself (so it is its own CA); returns its file. */
function selfSignedCertificate (dir: string, owner: { uid?: number, gid?: number }): string {
  const cert = join(dir, 'server.crt')
  const key = join(dir, 'server.key')
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr}`)
  // PostgreSQL refuses a key that others can read, or that another user owns.
  chmodSync(key, 0o600)
  if (owner.uid !== undefined) for (const file of [cert, key]) chownSync(file, owner.uid, owner.gid!)
  return cert
}

/** A fresh database on the server (a test that must not see another's tables). */
export async function createDatabase (server: PostgresProcess, name: string): Promise<string> {
  await server.sql(`CREATE DATABASE ${name}`)
  return server.urlFor({ database: name })
}

