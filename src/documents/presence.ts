import type { Awareness } from 'y-protocols/awareness'
import type { AwarenessEntry, AwarenessStateLimits } from '../protocol/awareness-entries.js'
import { PresenceLimitError } from '../protocol/awareness-entries.js'

export interface PresenceLimits extends AwarenessStateLimits {
  /** Distinct awareness client ids one connection may announce (the stock provider uses one). */
  maxClientsPerConnection: number
  /** Awareness entries one document holds, from every connection and node. */
  maxEntriesPerDocument: number
  /** Bytes of all presence states of one document together: what every join receives. */
  maxBytesPerDocument: number
}

/** Released ids remembered per document with the user that held them (oldest forgotten first). */
const FORMER_OWNERS_KEPT = 10_000

/**
 * Whoever applies awareness updates as origin: a connection, or a peer node standing for all of
 * its clients. It learns which awareness client ids it owns (the set is created on the first).
 */
export interface AwarenessOwner {
  awarenessClients: Set<number> | null
  /** The verified user the ids belong to (null when unknown: a peer of an older version). */
  readonly userId: string | null
  /**
   * A peer node: it owns an id until it removes that entry (its client left) or the entry times
   * out. A local connection owns its ids until it closes.
   */
  readonly remote?: boolean
}

/**
 * Who announced each awareness client id of one document. An id belongs to the first live owner
 * that announced it; entries for ids owned by another user are dropped, so nobody can forge or
 * remove another person's presence. The same verified user may take its own id over (a
 * reconnecting tab, on this node or another, before its old connection is known to be gone), and
 * an id that was released stays that user's: nobody else can claim it while its owner is away.
 * The states' bytes are counted, so that what every join receives stays bounded.
 */
export class PresenceOwners {
  /** Who holds each id and the bytes of its state: one map, as most documents hold one or two ids. */
  private readonly holdings = new Map<number, Holding>()
  /** Made on the first release: most documents never see anyone leave while loaded. */
  private formerOwners: Map<number, string | null> | null = null
  private totalBytes = 0

  get size (): number {
    return this.holdings.size
  }

  /**
   * The entries `owner` may apply, in order: its own ids, and new ids while the document has room.
   * Entries the awareness would ignore as stale are dropped first: the stock provider sends back
   * every state it receives (with the clock it received), and such echoes must neither claim an
   * id nor travel further. Throws PresenceLimitError when a connection announces more ids than it
   * may.
   */
  admit (entries: AwarenessEntry[], owner: AwarenessOwner, awareness: Awareness, limits: PresenceLimits): AwarenessEntry[] {
    // Decided whole before anything changes: an update refused for the cap claims nothing.
    const admitted: AwarenessEntry[] = []
    const takeovers: number[] = []
    // New ids, in order of announcement (a Set: an update may carry thousands of entries).
    const claims = new Set<number>()
    const held = owner.awarenessClients?.size ?? 0
    const capped = owner.remote !== true
    for (const entry of entries) {
      const current = this.holdings.get(entry.clientId)?.owner
      if (current !== undefined && current !== owner && current.userId !== null && current.userId === owner.userId &&
          this.mayTakeOver(owner, takeovers.length + claims.size)) {
        // The same user took its id over (a reconnect, perhaps to another node, while its old
        // connection's presence is in its grace period). Kept even when stale: relayed, it moves
        // the id on the other nodes too, and the old connection's delayed removal then spares it.
        takeovers.push(entry.clientId)
        admitted.push(entry)
        continue
      }
      if (isStale(entry, awareness)) continue
      if (current === owner) {
        admitted.push(entry)
        continue
      }
      // Another user's id, or a removal of an id nobody holds: dropped, not relayed.
      if (current !== undefined || entry.state === null || claims.has(entry.clientId)) continue
      // An id released by another user stays theirs.
      if (this.formerOwners?.has(entry.clientId) === true && this.formerOwners.get(entry.clientId) !== owner.userId) continue
      claims.add(entry.clientId)
      admitted.push(entry)
      // Refused as soon as the cap is crossed: a flood is not read to its end.
      if (capped && held + takeovers.length + claims.size > limits.maxClientsPerConnection) {
        throw new PresenceLimitError(`more than ${limits.maxClientsPerConnection} awareness clients on one connection`)
      }
    }
    for (const id of takeovers) {
      this.release([id])
      this.claim(id, owner, 0)
    }
    const room = Math.max(0, limits.maxEntriesPerDocument - this.holdings.size)
    const refused = new Set([...claims].slice(room))
    const accepted: AwarenessEntry[] = []
    for (const entry of admitted) {
      if (refused.has(entry.clientId)) continue
      // A state that would take the document's presence past its byte budget is dropped (a
      // removal always fits); a new id that does not fit is not claimed.
      const bytes = entry.state === null ? 0 : entry.json.length
      const holding = this.holdings.get(entry.clientId)
      const delta = bytes - (holding?.bytes ?? 0)
      if (delta > 0 && this.totalBytes + delta > limits.maxBytesPerDocument) {
        refused.add(entry.clientId)
        continue
      }
      this.totalBytes += delta
      // A new id is claimed on its first accepted entry, in the order ids were announced.
      if (holding === undefined) this.claim(entry.clientId, owner, bytes)
      else holding.bytes = bytes
      accepted.push(entry)
    }
    return accepted
  }

  /**
   * Whether `owner` may take over an id its user holds elsewhere. The stock provider announces its
   * own id first on every connection and then echoes every state it receives, the states of the
   * same user's other tabs included: only the first id a connection announces is a takeover, so
   * echoes do not move ids between one user's tabs. The old connection may still look open here (a
   * network cut the server has not noticed yet): the reconnect wins all the same. A peer relays
   * only the takeovers its own connections made.
   */
  private mayTakeOver (owner: AwarenessOwner, earlierInUpdate: number): boolean {
    if (owner.remote === true) return true
    return (owner.awarenessClients?.size ?? 0) === 0 && earlierInUpdate === 0
  }

  private claim (clientId: number, owner: AwarenessOwner, bytes: number): void {
    this.holdings.set(clientId, { owner, bytes })
    owner.awarenessClients ??= new Set()
    owner.awarenessClients.add(clientId)
  }

  /** The ids are no longer held by their owner (it closed, or a peer removed them). */
  release (clientIds: Iterable<number>): void {
    for (const id of [...clientIds]) {
      const holding = this.holdings.get(id)
      if (holding === undefined) continue
      const owner = holding.owner
      this.holdings.delete(id)
      owner.awarenessClients?.delete(id)
      this.totalBytes -= holding.bytes
      const former = (this.formerOwners ??= new Map())
      former.delete(id)
      former.set(id, owner.userId)
      if (former.size > FORMER_OWNERS_KEPT) {
        const oldest = former.keys().next().value
        if (oldest !== undefined) former.delete(oldest)
      }
    }
  }

  ownerOf (clientId: number): AwarenessOwner | undefined {
    return this.holdings.get(clientId)?.owner
  }
}

interface Holding {
  readonly owner: AwarenessOwner
  /** Bytes of the id's current state (0 once removed): counted against the document's budget. */
  bytes: number
}

/** y-protocols' own rule: an entry applies if its clock is newer, or it removes at the same clock. */
function isStale (entry: AwarenessEntry, awareness: Awareness): boolean {
  const clock = awareness.meta.get(entry.clientId)?.clock ?? 0
  if (clock < entry.clock) return false
  return !(clock === entry.clock && entry.state === null && awareness.states.has(entry.clientId))
}
