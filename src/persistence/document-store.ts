/**
 * Where document state lives between processes. Implementations: the embedded LevelDB store
 * (default) and, in cluster mode, a Redis store.
 *
 * The model is an append-only log of Yjs updates per document. Yjs updates commute and are
 * idempotent, so the state is simply all entries applied in any order; compaction replaces a
 * prefix of the log by one merged snapshot without touching entries appended after it.
 */
export interface StoredDocument {
  /** Every update of every entry, in log order (an entry may hold several). */
  updates: Uint8Array[]
  /** Opaque position of the last entry returned; pass it to compact(). Null for an empty log. */
  cursor: string | null
  /** Total bytes of the returned updates, for compaction decisions. */
  bytes: number
}

/** One log entry: updates of one document, stored together. */
export interface AppendEntry {
  docId: string
  /** At least one update, encoded as in entry-value.ts (EntryBuilder / encodeEntryValue). */
  value: Uint8Array
}

export interface AppendOutcome {
  /** Documents whose stored state vanished; none of their entries were written. */
  lost: string[]
}

export const NOTHING_LOST: AppendOutcome = Object.freeze({ lost: [] }) as AppendOutcome

/** Why a version was taken (README "Version history"). */
export type VersionReason = 'auto' | 'named' | 'before-restore' | 'before-offline-merge'

/** What is listed of a version; its state (one Yjs update) is read separately. */
export interface VersionMeta {
  /** Unique per document, sorts by creation time (versions/version-id.ts). */
  id: string
  /** ISO 8601. */
  createdAt: string
  reason: VersionReason
  /** Given for named versions, null otherwise. */
  label: string | null
  /** Size of the version's state. */
  bytes: number
  /** Verified user ids whose edits went into the document since the previous version. */
  authors: string[]
}

/**
 * Version history of documents, in the same store as the documents. A version is written with its
 * state atomically (a crash never leaves a listed version whose state cannot be read) and durably
 * (once the promise resolves, it survives a crash of this process).
 */
export interface VersionStore {
  saveVersion (docId: string, meta: VersionMeta, state: Uint8Array): Promise<void>
  /** Newest first; `before`: only versions whose id sorts before it (paging). */
  listVersions (docId: string, options: { limit: number, before?: string }): Promise<VersionMeta[]>
  /** The version's state, or null when there is no such version. */
  loadVersion (docId: string, id: string): Promise<Uint8Array | null>
  deleteVersions (docId: string, ids: string[]): Promise<void>
}

export interface DocumentStore extends VersionStore {
  readonly name: string
  open (): Promise<void>
  load (docId: string): Promise<StoredDocument>
  /** Whether the store holds any content of the document, without reading it. */
  exists (docId: string): Promise<boolean>
  /**
   * Appends updates of one or more documents in one atomic, durable write: when the promise
   * resolves, every entry survives a crash of this process; when it rejects, none is assumed to.
   * A shared store may find that a document it held is gone (Redis flushed, evicted or expired its
   * keys, or lost them in a failover): its entries are then not written, since they depend on
   * content no longer stored, and the document is named in `lost` so that the caller writes the
   * document's full state instead.
   */
  append (entries: AppendEntry[]): Promise<AppendOutcome>
  /**
   * Atomically replaces every entry up to and including `cursor` by `snapshot`, which must contain
   * (at least) all of them. Entries appended after `cursor` are kept.
   */
  compact (docId: string, snapshot: Uint8Array, cursor: string): Promise<void>
  /**
   * The cursor of the document's last entry when this process is the store's only writer (the
   * embedded store: it holds the directory's lock), so every entry was loaded or appended here and
   * the in-memory document contains them all; compaction then snapshots memory without reading
   * the log back. Null for shared stores, where another node may have appended entries this node
   * has not applied yet, and for documents this process has not loaded or written.
   */
  lastCursor (docId: string): string | null
  /**
   * The document left this process's memory (unloaded after its last flush, or deleted): drops
   * whatever the store keeps per document (the embedded store's sequence numbers), which a later
   * load rebuilds. Without it a long-running node would hold an entry for every document it ever
   * served.
   */
  forget (docId: string): void
  /**
   * Removes every entry and every version of the document. With `tombstoneSeconds`, loads of the document fail with
   * DocumentDeletedError for that long, so clients reconnecting right away cannot resurrect it.
   */
  delete (docId: string, tombstoneSeconds?: number): Promise<void>
  /** Resolves when the store answers; rejects when it is unusable. */
  ping (): Promise<void>
  close (): Promise<void>
}

/** The document was deleted recently; it cannot be opened until its tombstone expires. */
export class DocumentDeletedError extends Error {
  constructor (readonly docId: string) {
    super(`document ${docId} was deleted`)
  }
}
