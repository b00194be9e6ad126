/**
 * Soak: storms of clients joining, editing, leaving and reconnecting across many documents for a
 * bounded time, against the built server. At the end every client is gone, every document must be
 * unloaded, every edit must be in the store, and the server's RSS must be back near where it
 * started. Writes bench/results/soak-<time>.json and rewrites bench/results/SOAK.md.
 *
 *   npm run soak -- [--duration 180] [--docs 200] [--clients 150] [--storm-ms 2000]
 *
 * Loopback only; bounded by --duration; stops every process it started.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { freePort } from '../scripts/free-port.js'
import { SERVER_ENTRY } from '../scripts/server-node-flags.js'
import { scrapeMetric } from './lib/server-metrics.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '180' },
    docs: { type: 'string', default: '200' },
    clients: { type: 'string', default: '150' },
    'storm-ms': { type: 'string', default: '2000' }
  }
})
const DURATION_MS = Number(flags.duration) * 1000
const DOCS = Number(flags.docs)
const CLIENTS = Number(flags.clients)
const STORM_MS = Number(flags['storm-ms'])
const SECRET = 'soak-secret-soak-secret-soak-secret-32b'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

function rssOf (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024
}

/** Full GC in the server (see gc-on-signal.mjs), then a moment for the allocator to settle. */
async function collectGarbage (pid: number): Promise<void> {
  process.kill(pid, 'SIGUSR2')
  await sleep(500)
  process.kill(pid, 'SIGUSR2')
  await sleep(500)
}

interface Client { doc: Y.Doc, provider: WebsocketProvider, docId: string }

async function main (): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'collab-soak-'))
  const port = await freePort()
  const server = spawn(process.execPath, ['--expose-gc', '--import', join(ROOT, 'bench/gc-on-signal.mjs'), join(ROOT, SERVER_ENTRY)], {
    env: {
      PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', JWT_SECRET: SECRET, DATA_DIR: dataDir,
      DOC_IDLE_UNLOAD_MS: '1000', FLUSH_INTERVAL_MS: '250'
    },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const stop = (): void => { if (server.exitCode === null) server.kill('SIGKILL') }
  process.on('exit', stop)
  process.on('SIGINT', () => { stop(); process.exit(130) })
  for (let attempt = 0; ; attempt++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break
    } catch {}
    if (attempt > 200 || server.exitCode !== null) throw new Error('server did not start')
    await sleep(50)
  }
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('soak').setExpirationTime('2h').sign(new TextEncoder().encode(SECRET))
  const url = `ws://127.0.0.1:${port}/ws/document`
  const connect = (docId: string): Client => {
    const doc = new Y.Doc()
    const provider = new WebsocketProvider(url, docId, doc, { params: { token }, WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket, disableBc: true, maxBackoffTime: 500 })
    return { doc, provider, docId }
  }
  const destroy = (c: Client): void => { c.provider.destroy(); c.doc.destroy() }
  const waitSynced = async (clients: Client[], timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs
    while (!clients.every(c => c.provider.synced)) {
      if (Date.now() > deadline) throw new Error('clients did not sync in time')
      await sleep(20)
    }
  }

  // Warm-up: one full cycle so the starting RSS includes the server's steady code paths.
  const warm = Array.from({ length: 20 }, (_, i) => connect(`warm-${i}`))
  await waitSynced(warm)
  warm.forEach(destroy)
  await sleep(2500)
  await collectGarbage(server.pid!)
  const rssStart = rssOf(server.pid!)
  const heapStart = await scrapeMetric(port, 'collab_nodejs_heap_size_used_bytes')

  const expected = new Map<string, number>()
  const random = (n: number): number => Math.floor(Math.random() * n)
  let rssPeak = rssStart
  let storms = 0
  let joins = 0
  let edits = 0
  let reconnects = 0
  const started = Date.now()
  while (Date.now() - started < DURATION_MS) {
    storms++
    const clients = Array.from({ length: CLIENTS }, () => connect(`doc-${random(DOCS)}`))
    joins += clients.length
    await waitSynced(clients)
    const stormEnd = Date.now() + STORM_MS
    while (Date.now() < stormEnd) {
      for (const c of clients) {
        if (random(4) === 0) {
          c.doc.getArray('log').push([`${storms}-${edits}`])
          expected.set(c.docId, (expected.get(c.docId) ?? 0) + 1)
          edits++
        }
      }
      // A few clients drop and come back mid-storm (their edits while away sync on reconnect).
      for (const c of clients.slice(0, 5)) {
        if (random(10) === 0 && c.provider.wsconnected) {
          c.provider.disconnect()
          c.doc.getArray('log').push([`offline-${storms}-${edits}`])
          expected.set(c.docId, (expected.get(c.docId) ?? 0) + 1)
          edits++
          c.provider.connect()
          reconnects++
        }
      }
      await sleep(100)
    }
    await waitSynced(clients)
    // Let the last edits reach the server before the storm leaves.
    await sleep(300)
    clients.forEach(destroy)
    rssPeak = Math.max(rssPeak, rssOf(server.pid!))
    process.stderr.write(`storm ${storms}: ${joins} joins, ${edits} edits, RSS ${(rssOf(server.pid!) / 1048576).toFixed(1)} MiB\n`)
  }

  // Every document unloads once idle.
  const unloadDeadline = Date.now() + 30_000
  while ((await scrapeMetric(port, 'collab_documents_loaded')) !== 0) {
    if (Date.now() > unloadDeadline) throw new Error('documents did not unload')
    await sleep(200)
  }
  await sleep(1000)
  await collectGarbage(server.pid!)
  const rssEnd = rssOf(server.pid!)
  const heapEnd = await scrapeMetric(port, 'collab_nodejs_heap_size_used_bytes')

  // Every edit is in the store: each document, loaded fresh, holds exactly its edits.
  let missing = 0
  for (const [docId, count] of expected) {
    const c = connect(docId)
    await waitSynced([c])
    if (c.doc.getArray('log').length !== count) missing += Math.abs(count - c.doc.getArray('log').length)
    destroy(c)
  }
  server.kill('SIGTERM')
  await new Promise(resolve => server.once('exit', resolve))
  rmSync(dataDir, { recursive: true, force: true })

  const result = {
    scenario: 'soak',
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    documents: DOCS,
    clientsPerStorm: CLIENTS,
    storms,
    joins,
    edits,
    reconnects,
    editsMissing: missing,
    rssStartMiB: +(rssStart / 1048576).toFixed(1),
    rssPeakMiB: +(rssPeak / 1048576).toFixed(1),
    rssEndMiB: +(rssEnd / 1048576).toFixed(1),
    rssEndOverStart: +(rssEnd / rssStart).toFixed(2),
    heapUsedStartMiB: +(heapStart / 1048576).toFixed(1),
    heapUsedEndMiB: +(heapEnd / 1048576).toFixed(1)
  }
  const resultsDir = join(ROOT, 'bench/results')
  mkdirSync(resultsDir, { recursive: true })
  const stamp = result.date.replace(/[-:]/g, '').replace('T', '-').slice(0, 15)
  writeFileSync(join(resultsDir, `soak-${stamp}.json`), JSON.stringify(result, null, 2) + '\n')
  writeFileSync(join(resultsDir, 'SOAK.md'), [
    '# Soak (latest run)',
    '',
    `Run on ${result.date} with \`npm run soak -- --duration ${flags.duration} --docs ${DOCS} --clients ${CLIENTS}\`: storms of`,
    `${CLIENTS} stock y-websocket clients joining random documents out of ${DOCS}, editing for ${STORM_MS} ms (some dropping`,
    'and reconnecting mid-storm with offline edits), then leaving; documents unload 1 s after their last client.',
    '',
    '| figure | value |',
    '| --- | --- |',
    `| duration | ${result.durationSeconds} s |`,
    `| storms / joins / edits / mid-storm reconnects | ${storms} / ${joins} / ${edits} / ${reconnects} |`,
    `| edits missing after reload from the store | ${missing} |`,
    `| server RSS at start (after warm-up) | ${result.rssStartMiB} MiB |`,
    `| server RSS peak | ${result.rssPeakMiB} MiB |`,
    `| server RSS at the end (all documents unloaded) | ${result.rssEndMiB} MiB (${result.rssEndOverStart}x start) |`,
    `| V8 heap used, start / end (after a full GC) | ${result.heapUsedStartMiB} / ${result.heapUsedEndMiB} MiB |`,
    '',
    'Start and end are measured after a full garbage collection (the soak preloads',
    '`bench/gc-on-signal.mjs` and sends SIGUSR2), so they compare live memory, not GC timing.',
    'Live JavaScript memory (V8 heap used) is what a leak would grow; RSS also holds memory that',
    'V8, glibc and LevelDB keep reserved after a peak (heap pages, allocator arenas, LevelDB\'s',
    'block cache and memtable) and give back slowly, so RSS settles between the start and the peak.',
    `Heap used grew by ${(result.heapUsedEndMiB - result.heapUsedStartMiB).toFixed(1)} MiB over ${joins} joins and ${edits} edits.`,
    ''
  ].join('\n'))
  console.log(JSON.stringify(result, null, 2))
  if (missing > 0) process.exitCode = 1
}

await main()
