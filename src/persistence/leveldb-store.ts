import { mkdirSync } from 'node:fs'
import { ClassicLevel } from 'classic-level'
import { DocumentDeletedError, NOTHING_LOST, type AppendEntry, type AppendOutcome, type DocumentStore, type StoredDocument, type VersionMeta } from './document-store.js'
import { decodeVersionMeta, encodeVersionMeta } from './version-meta.js'
import { decodeEntryValue } from './entry-value.js'

/** A batch's values are copied into it (by LevelDB, on the event loop) at most this much per turn. */
const COPY_PER_TURN_BYTES = 4 * 1024 * 1024
/** A value this large is written with a put of its own, not in a batch. */
const OWN_PUT_BYTES = 1024 * 1024

/**
 * The embedded store: LevelDB (classic-level) in DATA_DIR, the engine y-leveldb uses, used
 * directly because y-leveldb swallows write errors (its transaction queue logs and resolves), which
 * would let the write-behind batcher believe a failed write had succeeded.
 *
 * Layout: one key per log entry, `u\0{docId}\0{seq}` with seq as fixed-width hex so keys sort by
 * sequence; values as in entry-value.ts. Versions: `vm\0{docId}\0{id}` (metadata, JSON) and
 * `vs\0{docId}\0{id}` (state), the state first. Document ids never contain \0 (see documents/document-id.ts),
 * so ranges cannot overlap.
 * This process owns the directory (LevelDB holds a lock), so sequence numbers live in memory.
 */
export class LevelDbStore implements DocumentStore {
  readonly name = 'leveldb'
  private readonly db: ClassicLevel<string, Uint8Array>
  private readonly nextSeq = new Map<string, number>()
  /** Sequence number of each document's last entry known to be written (loaded or appended). */
  private readonly lastWritten = new Map<string, number>()
  private readonly seqLookups = new Map<string, Promise<void>>()
  private readonly compactions = new Map<string, Promise<void>>()
  /** Each document's version writes and deletion in progress, one after another (inTurn). */
  private readonly versionWrites = new Map<string, Promise<void>>()

  constructor (private readonly dir: string, private readonly fsync = true) {
    this.db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
  }

  async open (): Promise<void> {
    mkdirSync(this.dir, { recursive: true })
    await this.db.open()
  }

  async load (docId: string): Promise<StoredDocument> {
    const tombstone = await this.db.get(tombstoneKey(docId))
    if (tombstone !== undefined && Number(new TextDecoder().decode(tombstone)) > Date.now()) throw new DocumentDeletedError(docId)
    const updates: Uint8Array[] = []
    let lastKey: string | null = null
    let bytes = 0
    for await (const [key, value] of this.db.iterator(docRange(docId))) {
      for (const update of decodeEntryValue(value)) updates.push(update)
      bytes += value.length
      lastKey = key
    }
    if (!this.nextSeq.has(docId)) {
      this.nextSeq.set(docId, lastKey === null ? 0 : seqOf(lastKey) + 1)
    }
    if (lastKey !== null) this.noteWritten(docId, seqOf(lastKey))
    return { updates, cursor: lastKey, bytes }
  }

  async exists (docId: string): Promise<boolean> {
    return (await this.db.keys({ ...docRange(docId), limit: 1 }).all()).length > 0
  }

  async append (entries: AppendEntry[]): Promise<AppendOutcome> {
    if (entries.length === 0) return NOTHING_LOST
    // Usually every document's sequence is known already: skip the promises then.
    if (entries.some(entry => !this.nextSeq.has(entry.docId))) {
      await Promise.all(entries.map(entry => this.ensureSeq(entry.docId)))
    }
    // Sequence numbers are taken synchronously, so concurrent appends never share a key.
    const seqs: number[] = []
    for (const entry of entries) {
      const seq = this.nextSeq.get(entry.docId) ?? 0
      this.nextSeq.set(entry.docId, seq + 1)
      seqs.push(seq)
    }
    // Written in their order, so that a crash leaves every document a complete prefix of its
    // entries: small ones in chained batches (abstract-level's array form copies and re-validates
    // every operation), filled over several turns when large; a value of OWN_PUT_BYTES or more with
    // a put of its own, since classic-level copies a put's value once on the event loop and a
    // batch's twice (and again as the batch grows). A failure part way leaves entries that the
    // write-behind's retry writes again: duplicates, which Yjs merges away.
    let batch = this.db.batch()
    let copied = 0
    try {
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!
        const key = entryKey(entry.docId, seqs[i]!)
        if (entry.value.length >= OWN_PUT_BYTES) {
          if (batch.length > 0) {
            await batch.write({ sync: this.fsync })
            batch = this.db.batch()
            copied = 0
          }
          await this.db.put(key, entry.value, { sync: this.fsync })
          continue
        }
        if (copied >= COPY_PER_TURN_BYTES) {
          copied = 0
          await new Promise(resolve => setImmediate(resolve))
        }
        batch.put(key, entry.value)
        copied += entry.value.length
      }
      if (batch.length > 0) await batch.write({ sync: this.fsync })
    } finally {
      // One left open would stay attached to the database; closing a written one does nothing.
      await batch.close()
    }
    for (let i = 0; i < entries.length; i++) this.noteWritten(entries[i]!.docId, seqs[i]!)
    // This process holds the directory's lock: nothing else removes a document's entries.
    return NOTHING_LOST
  }

  /**
   * Only a written entry may serve as the cursor: compacting onto the key of an append still in
   * flight could let that append land afterwards and overwrite the snapshot.
   */
  lastCursor (docId: string): string | null {
    const seq = this.lastWritten.get(docId)
    return seq === undefined ? null : entryKey(docId, seq)
  }

  /** Documents whose sequence numbers are held in memory (tests and diagnostics). */
  get trackedDocuments (): number {
    return new Set([...this.nextSeq.keys(), ...this.lastWritten.keys()]).size
  }

  forget (docId: string): void {
    this.nextSeq.delete(docId)
    this.lastWritten.delete(docId)
  }

  async compact (docId: string, snapshot: Uint8Array, cursor: string): Promise<void> {
    const previous = this.compactions.get(docId) ?? Promise.resolve()
    const run = previous.catch(() => {}).then(async () => {
      const range = docRange(docId)
      const obsolete: string[] = []
      for await (const key of this.db.keys({ gte: range.gte, lt: cursor })) obsolete.push(key)
      const batch = this.db.batch()
      for (const key of obsolete) batch.del(key)
      batch.put(cursor, snapshot)
      await batch.write({ sync: this.fsync })
    })
    this.compactions.set(docId, run)
    try {
      await run
    } finally {
      if (this.compactions.get(docId) === run) this.compactions.delete(docId)
    }
  }

  async saveVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void> {
    await this.inTurn(docId, async () => { await this.writeVersion(docId, meta, state) })
  }

  /**
   * Runs `write` after the document's earlier version writes and deletions have finished: a
   * version is two writes, which a deletion must not come between.
   */
  private async inTurn (docId: string, write: () => Promise<void>): Promise<void> {
    const previous = this.versionWrites.get(docId) ?? Promise.resolve()
    const run = previous.catch(() => {}).then(write)
    this.versionWrites.set(docId, run)
    try {
      await run
    } finally {
      if (this.versionWrites.get(docId) === run) this.versionWrites.delete(docId)
    }
  }

  private async writeVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void> {
    // Not for a document deleted meanwhile: its content must not come back through a version.
    const tombstone = await this.db.get(tombstoneKey(docId))
    if (tombstone !== undefined && Number(new TextDecoder().decode(tombstone)) > Date.now()) throw new DocumentDeletedError(docId)
    // The state first, with a put of its own (a batch copies a large state twice on the event
    // loop): the metadata is never listed without its state. A crash between the two leaves a
    // state nobody lists, removed with the document.
    await this.db.put(versionKey('vs', docId, meta.id), state, { sync: this.fsync })
    await this.db.put(versionKey('vm', docId, meta.id), new TextEncoder().encode(encodeVersionMeta(meta)), { sync: this.fsync })
  }

  async listVersions (docId: string, options: { limit: number, before?: string }): Promise<VersionMeta[]> {
    const range = versionRange('vm', docId)
    const metas: VersionMeta[] = []
    const upper = options.before === undefined ? range.lt : versionKey('vm', docId, options.before)
    for await (const value of this.db.values({ gte: range.gte, lt: upper, reverse: true, limit: options.limit })) {
      metas.push(decodeVersionMeta(new TextDecoder().decode(value)))
    }
    return metas
  }

  async loadVersion (docId: string, id: string): Promise<Uint8Array | null> {
    return (await this.db.get(versionKey('vs', docId, id))) ?? null
  }

  async deleteVersions (docId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return
    // Metadata first in the batch order does not matter: the batch is atomic.
    await this.db.batch(ids.flatMap(id => [
      { type: 'del' as const, key: versionKey('vm', docId, id) },
      { type: 'del' as const, key: versionKey('vs', docId, id) }
    ]), { sync: this.fsync })
  }

  async delete (docId: string, tombstoneSeconds = 0): Promise<void> {
    await this.inTurn(docId, async () => {
      await this.db.clear(versionRange('vm', docId))
      await this.db.clear(versionRange('vs', docId))
      await this.db.clear(docRange(docId))
      this.lastWritten.delete(docId)
      if (tombstoneSeconds > 0) {
        await this.db.put(tombstoneKey(docId), new TextEncoder().encode(String(Date.now() + tombstoneSeconds * 1000)), { sync: this.fsync })
      }
    })
  }

  async ping (): Promise<void> {
    if (this.db.status !== 'open') throw new Error(`leveldb is ${this.db.status}`)
    await this.db.get('ping\0')
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  private noteWritten (docId: string, seq: number): void {
    if ((this.lastWritten.get(docId) ?? -1) < seq) this.lastWritten.set(docId, seq)
  }

  private async ensureSeq (docId: string): Promise<void> {
    if (this.nextSeq.has(docId)) return
    let lookup = this.seqLookups.get(docId)
    if (lookup === undefined) {
      lookup = (async () => {
        const range = docRange(docId)
        const last = await this.db.keys({ ...range, reverse: true, limit: 1 }).all()
        if (!this.nextSeq.has(docId)) {
          this.nextSeq.set(docId, last[0] === undefined ? 0 : seqOf(last[0]) + 1)
        }
      })().finally(() => this.seqLookups.delete(docId))
      this.seqLookups.set(docId, lookup)
    }
    await lookup
  }
}

const SEQ_WIDTH = 13 // hex digits: room for 2^52 entries, within Number's exact range

function entryKey (docId: string, seq: number): string {
  return `u\0${docId}\0${seq.toString(16).padStart(SEQ_WIDTH, '0')}`
}

function seqOf (key: string): number {
  return parseInt(key.slice(key.length - SEQ_WIDTH), 16)
}

function tombstoneKey (docId: string): string {
  return `t\0${docId}`
}

function versionKey (kind: 'vm' | 'vs', docId: string, id: string): string {
  return `${kind}\0${docId}\0${id}`
}

function versionRange (kind: 'vm' | 'vs', docId: string): { gte: string; lt: string } {
  return { gte: `${kind}\0${docId}\0`, lt: `${kind}\0${docId}\x01` }
}

function docRange (docId: string): { gte: string; lt: string } {
  return { gte: `u\0${docId}\0`, lt: `u\0${docId}\x01` }
}
