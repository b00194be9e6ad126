/**
 * Reproduces, in one process and without sockets, the garbage-collector behaviour described in
 * bench/README.md ("Findings", steady load): the server's shape of work (200 documents, 1,000
 * Yjs edits/s applied to LiveDocuments, the write-behind flushing to the LevelDB store every
 * 250 ms) and V8's own account of each young-generation GC.
 *
 *   node --import tsx --max-semi-space-size=4 --trace-gc-nvp bench/diagnostics/gc-survival.ts \
 *     | grep 'gc=s' | grep -oE '(average_survival_ratio|promoted)=[^ ]+'
 *
 * STORE=leveldb (default) writes through LevelDbStore; STORE=none keeps the write-behind but
 * drops its writes. Compare `average_survival_ratio` (the share of young objects that outlive a
 * scavenge) between them, and with and without --no-allocation-site-pretenuring: a few percent is
 * the Yjs documents growing, ~35% means short-lived objects (Yjs transactions) are kept alive by
 * pretenured old-space objects and promoted.
 */
import pino from 'pino'
import * as Y from 'yjs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LiveDocument } from '../../src/documents/live-document.js'
import type { DocumentStore } from '../../src/persistence/document-store.js'
import { LevelDbStore } from '../../src/persistence/leveldb-store.js'
import { WriteBehind } from '../../src/persistence/write-behind.js'

const DOCS = 200
const EDITS_PER_SECOND = 1000
const SECONDS = Number(process.env.SECONDS ?? 15)

const dir = mkdtempSync(join(tmpdir(), 'gc-survival-'))
const leveldb = new LevelDbStore(dir)
await leveldb.open()
const store: DocumentStore = process.env.STORE === 'none'
  ? { ...leveldb, name: 'none', append: async () => {}, lastCursor: () => null } as unknown as DocumentStore
  : leveldb
const writeBehind = new WriteBehind(store, { intervalMs: 250, retryMaxMs: 5000 }, pino({ level: 'silent' }))
writeBehind.start()

const docs = Array.from({ length: DOCS }, (_, i) => new LiveDocument(`doc-${i}`))
// Nothing is loaded first: the store's first append looks up 200 sequence numbers while edits
// keep arriving, the kind of burst after which V8's allocation-site pretenuring went wrong.
const writers = docs.map(() => new Y.Doc())

let edits = 0
const started = Date.now()
const timer = setInterval(() => {
  for (let k = 0; k < EDITS_PER_SECOND / 100; k++) {
    const i = edits++ % DOCS
    let update: Uint8Array | null = null
    const capture = (u: Uint8Array): void => { update = u }
    writers[i]!.on('update', capture)
    writers[i]!.getText('log').insert(0, `${(performance.timeOrigin + performance.now()).toFixed(3)};`)
    writers[i]!.off('update', capture)
    docs[i]!.apply(update!, null)
    writeBehind.enqueue(docs[i]!.id, update!)
  }
  if (Date.now() - started > SECONDS * 1000) {
    clearInterval(timer)
    writeBehind.stop()
    void writeBehind.flush().finally(async () => {
      await leveldb.close()
      rmSync(dir, { recursive: true, force: true })
      console.log(`${edits} edits applied and stored`)
    })
  }
}, 10)
