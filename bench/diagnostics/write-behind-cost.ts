/**
 * CPU per update of the write-behind alone, in one process: 200 documents, a flush after every
 * round of updates, through LevelDbStore with fsync (the embedded store as shipped). The figures
 * quoted in bench/README.md ("Findings", session 3) and in src/persistence/entry-value.ts come from
 * this script.
 *
 *   node --import tsx --max-semi-space-size=4 --no-allocation-site-pretenuring \
 *     bench/diagnostics/write-behind-cost.ts
 *
 * PER=1.25 (default) updates per document per flush, about steady 200 x 10 at the default
 * FLUSH_INTERVAL_MS; PER=5 is 1 x 500's. ROUNDS sets the length (default 1000 / PER).
 * Main-thread user CPU is the event loop's share; other threads are LevelDB's and V8's helpers.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import * as Y from 'yjs'
import { LevelDbStore } from '../../src/persistence/leveldb-store.js'
import { WriteBehind } from '../../src/persistence/write-behind.js'
import { readThreadCpu } from '../lib/proc.js'

const DOCS = 200
const WARMUP_ROUNDS = 20
const PER = Number(process.env.PER ?? 1.25)
const ROUNDS = Number(process.env.ROUNDS ?? Math.round(1000 / PER))

// Real Yjs updates, generated before measuring: one timestamped insert each, as the bench's writers send.
const writers = Array.from({ length: DOCS }, (_, i) => ({ id: `doc-${i}`, doc: new Y.Doc() }))
const rounds: Array<Array<[string, Uint8Array]>> = []
for (let r = 0; r < ROUNDS; r++) {
  const round: Array<[string, Uint8Array]> = []
  writers.forEach(({ id, doc }, i) => {
    // Spread the fraction: with PER = 1.25 every fourth document gets a second update.
    const count = Math.floor(PER) + ((r + i) % 4 < (PER % 1) * 4 ? 1 : 0)
    for (let k = 0; k < count; k++) {
      const before = Y.encodeStateVector(doc)
      doc.getText('log').insert(0, `${Date.now()}.123456;`)
      round.push([id, Y.encodeStateAsUpdate(doc, before)])
    }
  })
  rounds.push(round)
}

const dir = mkdtempSync(join(tmpdir(), 'write-behind-cost-'))
const store = new LevelDbStore(dir)
await store.open()
const writeBehind = new WriteBehind(store, { intervalMs: 1e9, retryMaxMs: 1000 }, pino({ level: 'silent' }))

async function run (batch: typeof rounds): Promise<number> {
  let updates = 0
  for (const round of batch) {
    for (const [id, update] of round) writeBehind.enqueue(id, update)
    updates += round.length
    await writeBehind.flush()
  }
  return updates
}

await run(rounds.slice(0, WARMUP_ROUNDS))
const before = readThreadCpu(process.pid)
const updates = await run(rounds.slice(WARMUP_ROUNDS))
const after = readThreadCpu(process.pid)
let other = 0
for (const [tid, cpu] of after) {
  const used = cpu.user - (before.get(tid)?.user ?? 0)
  if (tid === process.pid) console.log(`main thread user CPU: ${(used * 1e6 / updates).toFixed(2)} µs per update`)
  else other += used
}
console.log(`other threads user CPU: ${(other * 1e6 / updates).toFixed(2)} µs per update (${updates} updates, ${PER} per document per flush)`)
await store.close()
rmSync(dir, { recursive: true, force: true })
